//! How a process reaches its client without knowing the session that owns
//! it: the session hands each process a [`Notifier`], the narrow handle
//! through which the pump sends its notifications and reports its end.

use super::Process;
use crate::protocol::Notification;
use crate::rpc::Queued;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a process needs of its owner.
pub trait Notifier: Send + Sync + 'static {
    /// The queue of the connection attached now; `None` while detached (a
    /// detached session's notifications are dropped, PROTOCOL.md §5).
    fn queue(&self) -> Option<mpsc::Sender<Queued>>;

    /// The process has sent its last notification: from now on it is only
    /// kept for `process/read`, within the owner's bounds.
    fn retire(&self, process: &Arc<Process>);
}

/// A request's answer, serialized, and the queue of the connection that
/// asked.
pub struct Answer {
    pub queue: mpsc::Sender<Queued>,
    pub text: String,
}

impl Answer {
    /// Queues it on its own.
    pub async fn send(self) {
        let _ = self.queue.send(Queued::One(self.text)).await;
    }
}

/// Messages kept to go out together: an answer and what follows it.
struct Batch {
    answer: Answer,
    texts: Vec<String>,
}

/// Where a message goes now.
enum Route {
    /// Into the open batch.
    Batch,
    /// To the attached connection.
    Queue(mpsc::Sender<Queued>),
}

/// Sends notifications through a [`Notifier`]. While a batch is open they
/// are kept, and go out together (one write) when it is flushed.
pub(super) struct Emitter {
    notifier: Arc<dyn Notifier>,
    batch: std::sync::Mutex<Option<Batch>>,
}

impl Emitter {
    pub fn new(notifier: Arc<dyn Notifier>) -> Self {
        Self { notifier, batch: std::sync::Mutex::new(None) }
    }

    /// Keeps what is sent from now on, after `answer`, until [`Emitter::flush`].
    pub fn open_batch(&self, answer: Answer) {
        *self.batch() = Some(Batch { answer, texts: Vec::new() });
    }

    /// Sends what the open batch holds, if there is one: together, when
    /// the answer's connection is the one notifications go to now (else
    /// the answer on its own first).
    pub async fn flush(&self) {
        let Some(Batch { answer, mut texts }) = self.batch().take() else { return };
        let queue = self.notifier.queue();
        match &queue {
            Some(q) if q.same_channel(&answer.queue) => texts.insert(0, answer.text),
            _ => answer.send().await,
        }
        if let (Some(q), false) = (queue, texts.is_empty()) {
            let _ = q.send(Queued::Batch(texts)).await;
        }
    }

    /// Sends a notification already serialized (see
    /// [`crate::protocol::process_output_json`]).
    pub async fn send_text(&self, text: String) {
        if let Some(route) = self.route() {
            self.deliver(route, text).await;
        }
    }

    /// Serializes and sends a notification.
    pub async fn send<P: Serialize>(&self, method: &str, params: P) {
        // Detached: nothing to serialize for.
        let Some(route) = self.route() else { return };
        match serde_json::to_string(&Notification { method, params }) {
            Ok(text) => self.deliver(route, text).await,
            Err(e) => tracing::error!(error = %e, "could not serialize a notification"),
        }
    }

    /// Where a message goes now; `None` while detached, with no batch open.
    fn route(&self) -> Option<Route> {
        if self.batch().is_some() {
            return Some(Route::Batch);
        }
        self.notifier.queue().map(Route::Queue)
    }

    async fn deliver(&self, route: Route, text: String) {
        match route {
            Route::Queue(tx) => {
                let _ = tx.send(Queued::One(text)).await;
            }
            Route::Batch => {
                if let Some(batch) = self.batch().as_mut() {
                    batch.texts.push(text);
                }
            }
        }
    }

    fn batch(&self) -> std::sync::MutexGuard<'_, Option<Batch>> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notifier whose attached connection is `queue`.
    struct Attached(Option<mpsc::Sender<Queued>>);

    impl Notifier for Attached {
        fn queue(&self) -> Option<mpsc::Sender<Queued>> {
            self.0.clone()
        }
        fn retire(&self, _: &Arc<Process>) {}
    }

    fn texts(q: Queued) -> Vec<String> {
        match q {
            Queued::One(t) => vec![format!("one:{t}")],
            Queued::Batch(ts) => ts,
        }
    }

    #[tokio::test]
    async fn a_batch_goes_out_as_one_item_with_its_answer_first() {
        let (tx, mut rx) = mpsc::channel(8);
        let emitter = Emitter::new(Arc::new(Attached(Some(tx.clone()))));
        emitter.send_text("before".into()).await;
        emitter.open_batch(Answer { queue: tx, text: "answer".into() });
        emitter.send_text("output".into()).await;
        emitter.send("process/closed", serde_json::json!({})).await;
        assert!(matches!(rx.try_recv(), Ok(Queued::One(t)) if t == "before"));
        assert!(rx.try_recv().is_err(), "nothing of the batch goes out before the flush");
        emitter.flush().await;
        let batch = texts(rx.try_recv().expect("the batch"));
        assert_eq!(batch.len(), 3, "{batch:?}");
        assert_eq!((batch[0].as_str(), batch[1].as_str()), ("answer", "output"));
        assert!(batch[2].contains("process/closed"), "{batch:?}");
        assert!(rx.try_recv().is_err());
        // Closed: what follows goes out at once again.
        emitter.send_text("after".into()).await;
        assert!(matches!(rx.try_recv(), Ok(Queued::One(t)) if t == "after"));
    }

    #[tokio::test]
    async fn an_answer_for_another_connection_goes_there_on_its_own() {
        let (asked, mut asked_rx) = mpsc::channel(8);
        let (now, mut now_rx) = mpsc::channel(8);
        let emitter = Emitter::new(Arc::new(Attached(Some(now))));
        emitter.open_batch(Answer { queue: asked, text: "answer".into() });
        emitter.send_text("output".into()).await;
        emitter.flush().await;
        assert_eq!(texts(asked_rx.try_recv().expect("answer")), ["one:answer"]);
        assert_eq!(texts(now_rx.try_recv().expect("output")), ["output"]);
        // Detached: the answer still reaches the connection that asked.
        let (asked, mut asked_rx) = mpsc::channel(8);
        let emitter = Emitter::new(Arc::new(Attached(None)));
        emitter.open_batch(Answer { queue: asked, text: "answer".into() });
        emitter.send_text("output".into()).await;
        emitter.flush().await;
        assert_eq!(texts(asked_rx.try_recv().expect("answer")), ["one:answer"]);
    }
}
