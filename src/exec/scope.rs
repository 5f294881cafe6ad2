//! The scope of one command: what all the parts of one command line (its
//! wasm instances, its pipeline stages, its nested shells) share wherever
//! they run. [`CommandStats`] collects what they use; [`with_scope`] sets
//! it for a command's task, [`spawn_part`] carries it into the tasks a
//! command starts, and [`run_demotable`] moves a command that has used its
//! share of CPU from the interactive pool to its tenant's batch pool.
//!
//! The scope travels in a task-local, so the shell and anything else between
//! the session and the guests need not pass it along.

use super::engine::EPOCH_TICK;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What one command (all the wasm instances of one command line) used, for
/// accounting and metrics. Recorded through a task-local, so the shell and
/// anything else between the session and the guests need not pass it along.
#[derive(Debug, Default)]
pub struct CommandStats {
    /// Epoch ticks the guests ran for: CPU time in units of [`EPOCH_TICK`].
    pub epoch_ticks: AtomicU64,
    /// The largest linear memory any one instance grew to, in bytes.
    pub peak_memory: AtomicU64,
    /// Wasm instances started.
    pub instances: AtomicU64,
    /// An instance trapped.
    pub trapped: AtomicBool,
    /// An instance hit the memory cap.
    pub memory_limit_hit: AtomicBool,
    /// The command used up its CPU budget.
    pub cpu_limit_hit: AtomicBool,
    /// The command has run long enough to move to the batch pool.
    pub demoted: AtomicBool,
}

/// Runs a command's future where it is polled until it has used
/// [`Tuning::demote_ticks`](crate::config::Tuning) of CPU, then moves the rest of it to `batch` (a guest
/// notices at an epoch tick, where it yields). Dropping this future stops
/// the command wherever it runs. A future that panics on the batch pool
/// gives `None`.
pub async fn run_demotable<F, T>(
    fut: F,
    stats: Arc<CommandStats>,
    batch: tokio::runtime::Handle,
) -> Option<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut fut = Box::pin(fut);
    let done = std::future::poll_fn(|cx| {
        if stats.demoted.load(Ordering::Relaxed) {
            return std::task::Poll::Ready(None);
        }
        fut.as_mut().poll(cx).map(Some)
    })
    .await;
    if let Some(out) = done {
        return Some(out);
    }
    /// Aborts the moved task if the command is dropped (stopped).
    struct Abort(tokio::task::AbortHandle);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let task = batch.spawn(fut);
    let _abort = Abort(task.abort_handle());
    task.await.ok()
}

impl CommandStats {
    /// Approximate CPU time of the guests, from epoch ticks.
    pub fn cpu(&self) -> std::time::Duration {
        EPOCH_TICK * self.epoch_ticks.load(Ordering::Relaxed) as u32
    }
}

/// What the parts of one command share, wherever they run: its stats, and
/// the pool it moves to once demoted.
#[derive(Clone)]
struct Scope {
    stats: Arc<CommandStats>,
    batch: tokio::runtime::Handle,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs `f` with `stats` collecting what its guests use; tasks it spawns
/// through [`spawn_part`] move to `batch` once the command is demoted.
pub async fn with_scope<F: Future>(
    stats: Arc<CommandStats>,
    batch: tokio::runtime::Handle,
    f: F,
) -> F::Output {
    SCOPE.scope(Scope { stats, batch }, f).await
}

/// The stats of the command being run on this task, if any.
pub(crate) fn current_stats() -> Option<Arc<CommandStats>> {
    SCOPE.try_with(|s| s.stats.clone()).ok()
}

/// Runs part of the current command (a pipeline stage, a nested shell on a
/// fresh stack) as a task of its own on the current runtime, so that the
/// parts of a pipeline use every core. The task keeps the command's stats
/// and moves to the batch pool with the rest of the command
/// ([`run_demotable`]); dropping the returned future aborts it. `None` if
/// it panicked.
pub fn spawn_part<F>(fut: F) -> impl Future<Output = Option<F::Output>> + Send
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let scope = SCOPE.try_with(Clone::clone).ok();
    let task = tokio::spawn(async move {
        match scope {
            // The scope goes inside what may move: a task-local set around
            // `run_demotable` would stay behind when the part moves to the
            // batch pool.
            Some(scope) => {
                let (stats, batch) = (scope.stats.clone(), scope.batch.clone());
                run_demotable(SCOPE.scope(scope, fut), stats, batch).await
            }
            None => Some(fut.await),
        }
    });
    let task = tokio_util::task::AbortOnDropHandle::new(task);
    async move { task.await.ok().flatten() }
}
