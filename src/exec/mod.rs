//! Running commands as WebAssembly. The exec layer knows nothing of
//! JSON-RPC or of shell syntax: it takes argv, environment, a working
//! directory and streams, runs one tool, and returns a status.
//!
//! - [`engine`]: the shared wasmtime engine, module cache, tool registry and
//!   guest thread pools.
//! - [`executor`]: [`Executor`], what a workspace's commands run with, and
//!   one tool run turned into an exit status.
//! - [`guest`]: one wasm instance, from its WASI context to its outcome.
//! - [`guard`]: the write guard under the guests' WASI calls (read-only
//!   areas, the disk quota).
//! - [`stdio`]: in-memory standard streams and pipes.
//! - [`scope`]: what the parts of one command share ([`CommandStats`]), and
//!   its move from the interactive to the batch pool.
//! - [`state`]: the data of one guest's store.
//! - [`quirks`]: tool-specific argument fixes.
//!
//! Dependencies inside: `executor → guest → {engine, guard, state}`,
//! `engine → {guard, state}`, `state → guard`; [`scope`] and [`stdio`] are
//! leaves every part may use.

pub mod engine;
pub mod executor;
pub mod guard;
pub mod guest;
mod quirks;
mod readdir;
pub mod scope;
pub mod state;
pub mod stdio;

pub use engine::{EngineError, GuestPool, Runtime, Tool, ToolSource};
pub use executor::{
    CommandSpec, Executor, STATUS_INTERRUPTED, STATUS_KILLED, STATUS_NOT_FOUND, STATUS_TRAP,
    command_name, sandbox_env,
};
pub use guest::{GuestOutcome, GuestRequest};
pub use scope::{
    BlockingMeter, CommandStats, TenantInstances, run_demotable, spawn_part, with_scope,
};
pub use stdio::{OutputChunk, PipeReader, Sink, Stdin, StreamKind, pipe};
