//! wasm-exec-server: a Codex exec-server that runs every command as a
//! WebAssembly (WASI) module under wasmtime, confined to a workspace.
//!
//! # Layout
//!
//! - [`server`]: axum router (`/` upgrade, `/readyz`, `/metrics`), accept
//!   loop, shutdown.
//! - [`connection`]: frames ⇄ messages, one writer task, keepalive.
//! - [`session`]: per-connection protocol state, the sessions clients own,
//!   the router and one handler per method.
//! - [`process`]: the process engine: one running command, its numbered
//!   events, its stdin and terminal, how it is stopped.
//! - [`shell`]: the host-side bash interpreter that runs command lines as
//!   wasm instances.
//! - [`hostcmd`]: the programs the host serves in place of a tool (`git`,
//!   `stat`/`du`/`chmod`, `apply_patch`), behind a narrow context; the shell
//!   runs them.
//! - [`exec`]: wasmtime engine, module cache, tool registry, one guest run.
//! - [`fs`]: the workspace capability and path mapping.
//! - [`tenant`]: tenants, bearer-token auth, the config file.
//! - [`worker`]: the second wall: the front process, one confined worker
//!   process per tenant, and the control socket between them.
//! - [`pattern`]: bash wildcard patterns, for the shell and `git tag -l`.
//! - [`rpc`]: the JSON-RPC envelope and the one mapping of errors to codes.
//! - [`protocol`]: wire types of the exec-server protocol, nothing else.
//! - [`config`]: validated configuration (limits, tuning, tenant specs).
//! - [`metrics`]: Prometheus metrics for `GET /metrics`.
//! - [`client`]: a protocol client (tests, benchmark, embedding).
//!
//! Dependencies point one way: `main → worker → server → connection → session →
//! {process, shell → hostcmd, exec, fs, tenant} → protocol`, with
//! `shell → exec`, `process → exec`, `tenant → exec → fs`, and `config`,
//! `metrics`, `pattern`, `b64` at the bottom. Only `session` and `rpc`
//! build JSON-RPC responses and errors; `exec`, `fs`, `shell`, `hostcmd`
//! and `process` return typed results.
//!
//! # One command, end to end
//!
//! A `process/start` frame is decoded by `connection` and routed by
//! `session`, which checks `cwd` against the workspace, builds the
//! environment, wires the process's stdout/stderr into a channel and starts
//! a [`process::Process`]. Its pump runs the command through `shell` (a
//! `bash -lc` line is interpreted on the host; any other argv, and every
//! command of a line, runs as a tool in `exec`), numbers what the guests
//! write and sends it as `process/output`, then `process/exited` and
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
pub mod process;
pub mod protocol;
pub mod release;
pub mod rpc;
pub mod server;
pub mod session;
pub mod shell;
pub mod tenant;
pub mod worker;

include!(concat!(env!("OUT_DIR"), "/guest_examples.rs"));
