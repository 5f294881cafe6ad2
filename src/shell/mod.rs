//! The shell: a host-side bash interpreter that runs agents' command lines
//! (`["/bin/bash", "-lc", "<line>"]`) as orchestrated wasm instances. WASI
//! cannot spawn processes, so the server itself parses the line, expands
//! words, wires pipes and redirections, runs builtins in the host and every
//! other command as a guest tool. No host process is ever spawned and every
//! file the shell opens goes through the workspace capability.
//!
//! What does not live here: running one guest (`exec`), path mapping and
//! the capability (`fs`), the protocol (`session`), and the programs the
//! host serves in place of a tool (`git`, `stat`, `apply_patch`, …: the
//! `hostcmd` module, which the shell runs and which knows nothing of it).
//!
//! Flow: [`parse`] (brush-parser, bash-style syntax errors) → [`interp`]
//! (lists, pipelines, compound commands) → [`simple`] (one command:
//! [`expand`] + [`param`] + [`arith`] + `crate::pattern` for words,
//! [`redirect`] for streams, then [`builtins`], [`printf`], [`cond`],
//! [`compose`], a nested shell from [`invoke`], a host command from
//! `crate::hostcmd`, or a tool). [`state`] holds variables and limits,
//! [`io`] the shared standard streams.
//!
//! Nine of these files import one another in a circle, and that is
//! intended: an interpreter is one recursive unit. A simple command runs
//! builtins, which run `eval`, `source`, functions, `xargs` and `timeout`,
//! which run lists again ([`interp`], [`simple`], [`builtins`],
//! [`compose`], [`invoke`]); expansion runs command substitutions, and
//! conditions and redirections expand words ([`expand`], [`param`],
//! [`cond`], [`redirect`]). Everything else sits below the circle and
//! depends on none of it: [`parse`], [`arith`], [`printf`], [`io`] and
//! [`state`], and outside the shell `pattern` and `hostcmd`.

pub mod arith;
pub mod builtins;
pub mod compose;
pub mod cond;
pub mod expand;
pub mod interp;
pub mod invoke;
pub mod io;
pub mod param;
pub mod parse;
pub mod printf;
pub mod redirect;
pub mod simple;
pub mod state;

pub use invoke::{Program, resolve, run, run_command, run_line, run_program};
pub use parse::Invocation;
