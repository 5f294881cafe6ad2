//! The process engine: one running command of a session, from its start to
//! the last notification it sends, and what `process/read`, `process/write`
//! and the stop requests do to it. It knows nothing of the session that owns
//! it (it reports through a [`Notifier`]) and builds no JSON-RPC responses
//! (a start is acknowledged with a typed [`Started`]); its notifications are
//! protocol types.
//!
//! - [`handle`]: [`Process`], what the session keeps: stop requests,
//!   stdin, reads, the kept output.
//! - [`pump`]: the process's one task: runs the command, numbers and sends
//!   what it produces, answers the start, reports the exit.
//! - [`events`]: the numbered event stream and what reads replay.
//! - [`tty`]: the emulated terminal (line discipline, `\r\n`).
//! - [`notifier`]: the narrow handle to the owner.

pub mod events;
pub mod handle;
pub mod notifier;
pub mod pump;
pub mod tty;

pub use handle::{Process, Stop, stdin_slots, summary};
pub use notifier::{Answer, Notifier};
pub use pump::{Output, Owner, StartAck, Started};
