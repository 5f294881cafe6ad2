//! What a handler gives back for the connection to send: the [`Reply`] to a
//! request (now, later, or by someone it hands a [`Responder`] to), and what
//! to do after a notification.

use crate::process::Answer;
use crate::rpc::{self, Queued, RpcError};
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;

/// Runs after the reply has been queued (delivers a stop), so that the reply
/// precedes the notifications it causes.
pub type AfterReply = Box<dyn FnOnce() + Send>;

/// Where the answer to one request goes, when it is sent by someone other
/// than the connection's request loop.
pub struct Responder {
    tx: mpsc::Sender<Queued>,
    id: crate::protocol::RequestId,
}

impl Responder {
    pub fn new(tx: mpsc::Sender<Queued>, id: crate::protocol::RequestId) -> Self {
        Self { tx, id }
    }

    /// The answer, serialized, for the connection that asked (dropped if it
    /// has gone, also when the session has moved to another connection
    /// since): sent on its own, or with what follows it.
    pub fn answer(self, result: Result<Value, RpcError>) -> Answer {
        Answer { queue: self.tx, text: rpc::response_text(self.id, result) }
    }
}

/// The answer to one request.
pub enum Reply {
    Now(Result<Value, RpcError>, Option<AfterReply>),
    /// Answered by whoever the function hands the [`Responder`] to: a
    /// process answers its own `process/start` after its first poll, so a
    /// command that finishes at once goes out with its answer in one write.
    Handoff(Box<dyn FnOnce(Responder) + Send>),
    /// A result already serialized as JSON text (`fs/readFile`: megabytes of
    /// base64 are written once, not copied into a `Value` and out again).
    Raw(Result<String, RpcError>),
    /// Answered later without holding up the connection (`process/read` waits).
    Later(BoxFuture<'static, Result<Value, RpcError>>),
}

impl From<Result<Value, RpcError>> for Reply {
    fn from(r: Result<Value, RpcError>) -> Self {
        Reply::Now(r, None)
    }
}

/// What the connection should do after a notification.
#[derive(Debug, PartialEq, Eq)]
pub enum NotificationOutcome {
    Continue,
    /// Protocol violation: close the connection (reference behaviour).
    Close(&'static str),
}
