//! How a process reaches its client without knowing the session that owns
//! it: the session hands each process a [`Notifier`], the narrow handle
//! through which the pump sends its notifications and reports its end.

use super::Process;
use crate::protocol::Notification;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a process needs of its owner.
pub trait Notifier: Send + Sync + 'static {
    /// The queue of the connection attached now; `None` while detached (a
    /// detached session's notifications are dropped, PROTOCOL.md §5).
    fn queue(&self) -> Option<mpsc::Sender<String>>;

    /// The process has sent its last notification: from now on it is only
    /// kept for `process/read`, within the owner's bounds.
    fn retire(&self, process: &Arc<Process>);
}

/// Sends notifications through a [`Notifier`].
pub(super) struct Emitter(pub Arc<dyn Notifier>);

impl Emitter {
    /// Sends a notification already serialized (see
    /// [`crate::protocol::process_output_json`]).
    pub async fn send_text(&self, text: String) {
        if let Some(tx) = self.0.queue() {
            let _ = tx.send(text).await;
        }
    }

    /// Serializes and sends a notification.
    pub async fn send<P: Serialize>(&self, method: &str, params: P) {
        let Some(tx) = self.0.queue() else { return };
        match serde_json::to_string(&Notification { method, params }) {
            Ok(text) => {
                let _ = tx.send(text).await;
            }
            Err(e) => tracing::error!(error = %e, "could not serialize a notification"),
        }
    }
}
