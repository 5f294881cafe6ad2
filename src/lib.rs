//! wasm-exec-server: a Codex exec-server that runs every command as a
//! WebAssembly (WASI) module under wasmtime, confined to a workspace.
//!
//! # Layout
//!
//! - [`client`]: a protocol client (tests, benchmark, embedding).
//! - [`config`]: validated configuration (limits, workspace specs).
//! - [`protocol`]: wire types of the exec-server protocol, nothing else.
//! - [`rpc`]: the JSON-RPC envelope and the one mapping of errors to codes.
//! - [`server`]: axum router (`/` upgrade, `/readyz`), accept loop, shutdown.
//! - [`connection`]: frames ⇄ messages, one writer task, keepalive.
//! - [`session`]: handshake, the process table, one handler per method.
//! - [`tenant`]: tenants, bearer-token auth, the config file.
//! - [`exec`]: wasmtime engine, module cache, tool registry, one guest run.
//! - [`fs`]: the workspace capability and path mapping.
//! - [`metrics`]: Prometheus metrics for `GET /metrics`.
//! - [`shell`]: the host-side bash interpreter that runs command lines as
//!   wasm instances.
//! - [`hostcmd`]: the programs the host serves in place of a tool (`git`,
//!   `stat`/`du`/`chmod`, `apply_patch`), behind a narrow context; the shell
//!   runs them.
//! - [`pattern`]: bash wildcard patterns, for the shell and `git tag -l`.
//!
//! # One command, end to end
//!
//! A `process/start` frame is decoded by `connection`, routed by `session`,
//! which checks `cwd` against the workspace, builds the environment and
//! wires the process's stdout/stderr into a channel. `exec` resolves
//! `argv[0]` to a compiled tool and instantiates it with the workspace
//! preopened; the session's per-process pump numbers what the guest writes
//! and sends it as `process/output`, then `process/exited` and
//! `process/closed`.

pub mod b64;
pub mod client;
pub mod config;
pub mod connection;
pub mod exec;
pub mod fs;
pub mod hostcmd;
pub mod metrics;
pub mod pattern;
pub mod protocol;
pub mod rpc;
pub mod server;
pub mod session;
pub mod shell;
pub mod tenant;

include!(concat!(env!("OUT_DIR"), "/guest_examples.rs"));
