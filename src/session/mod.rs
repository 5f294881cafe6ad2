//! The session layer: per-connection protocol state, the sessions clients
//! own, and one handler per method (named after it). Wire types are
//! translated to domain calls here, and domain results and errors to wire
//! responses; `exec`, `fs`, `shell` and `process` never build JSON-RPC.
//!
//! - [`handler`]: [`Handler`], the protocol state of one connection (the
//!   handshake, the attached session).
//! - [`router`]: one request → the tenant's request budget → typed params →
//!   the method's handler.
//! - [`session`]: [`Session`], the process table one client owns, and
//!   detach/resume; [`Registry`], every live session, for resume and
//!   shutdown.
//! - [`process`] and [`fs`]: the handlers of `process/*` and `fs/*`.
//! - [`env`]: the environment of a new process.
//! - [`reply`]: what a handler gives the connection to send.
//!
//! The connection layer hands every decoded request to
//! [`Handler::request`] and sends back the [`Reply`].

mod env;
mod fs;
pub mod handler;
mod process;
pub mod reply;
mod router;
#[allow(clippy::module_inception, reason = "the file is named after the type it holds")]
pub mod session;

pub use handler::Handler;
pub use reply::{AfterReply, NotificationOutcome, Reply, Responder};
pub use session::{Registry, Session};

use std::sync::{Mutex, MutexGuard};

/// Locks, ignoring poisoning: the data behind these locks stays valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
