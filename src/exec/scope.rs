//! The scope of one command: what all the parts of one command line (its
//! wasm instances, its pipeline stages, its nested shells) share wherever
//! they run. [`CommandStats`] collects what they use; [`with_scope`] sets
//! it for a command's task, [`spawn_part`] carries it into the tasks a
//! command starts, and [`run_demotable`] moves a command that has used its
//! share of CPU from the interactive pool to its tenant's batch pool.
//!
//! The scope travels in a task-local, so the shell and anything else between
//! the session and the guests need not pass it along.
//!
//! Host work is metered like guest work. Every task of a command is polled
//! through a meter that times each poll and subtracts the time spent inside
//! guests (which their epoch ticks count): what remains is the server's own
//! work for the command (the shell's loops and expansions, host commands).
//! It counts in the command's usage, moves the command to the batch pool
//! like guest CPU does, and has a budget of its own (max-cpu, as a process's
//! own CPU limit is separate from its children's on Linux): past it the
//! command ends at its next poll. The shell yields at least every few
//! milliseconds of work, so the meter sees it often.
//!
//! A poll's wall time is a cheap estimate of its CPU time (two reads of a
//! vDSO clock), but a loaded machine inflates it: a thread preempted in the
//! middle of a poll is charged for the time it waited. So once a command's
//! estimate passes [`EXACT_AFTER`] (which almost no command's host work
//! does), its polls are measured with the thread's real CPU clock instead
//! (a system call each, negligible for commands that long), and only that
//! counts towards its budget from then on.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

/// Estimated host time after which a command's host work is measured with
/// the thread's CPU clock (see the module's opening comment).
pub const EXACT_AFTER: Duration = Duration::from_millis(10);

/// Wasm instances one command may have alive at once: the engine's slots
/// (1,024) are shared by every tenant, and a pipeline of many stages would
/// otherwise take them all.
pub const MAX_LIVE_INSTANCES: u64 = 64;

/// The instances a tenant has alive, against its max-instances: shared by
/// all its commands.
#[derive(Debug, Clone)]
pub struct TenantInstances {
    pub live: Arc<AtomicU64>,
    pub max: u64,
}

/// One live instance of a command, counted (for the command and for its
/// tenant) until dropped.
pub(crate) struct LiveInstance(Arc<CommandStats>);

/// Takes one from `counter` unless it is at `max`.
fn take_one(counter: &AtomicU64, max: u64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        .is_ok()
}

impl LiveInstance {
    /// Counts one more instance of the command and of its tenant; the
    /// limit that refused it otherwise.
    pub(crate) fn take(stats: &Arc<CommandStats>) -> Result<Self, String> {
        if !take_one(&stats.live, MAX_LIVE_INSTANCES) {
            return Err(format!(
                "too many wasm instances at once in one command (at most {MAX_LIVE_INSTANCES})"
            ));
        }
        if let Some(t) = &stats.tenant_instances {
            if !take_one(&t.live, t.max) {
                stats.live.fetch_sub(1, Ordering::AcqRel);
                return Err(format!(
                    "too many wasm instances at once for this tenant (max-instances is {})",
                    t.max
                ));
            }
        }
        Ok(Self(stats.clone()))
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
        if let Some(t) = &self.0.tenant_instances {
            t.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What one command (all the wasm instances of one command line) used, for
/// accounting and metrics. Recorded through a task-local, so the shell and
/// anything else between the session and the guests need not pass it along.
#[derive(Debug)]
pub struct CommandStats {
    /// Epoch ticks the guests ran for: CPU time in units of
    /// [`EPOCH_TICK`](super::engine::EPOCH_TICK).
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
    /// Time the command's tasks ran on the host outside guests, in
    /// nanoseconds: the server's own work for the command.
    pub host_ns: AtomicU64,
    /// The host work used up its budget: the command ends.
    pub host_limit_hit: AtomicBool,
    /// Host work is measured with the thread's CPU clock from now on.
    host_exact: AtomicBool,
    /// Wasm instances of the command alive now.
    live: AtomicU64,
    /// The tenant's count of live instances, when the command has one.
    tenant_instances: Option<TenantInstances>,
    /// Host time the command may take (max-cpu).
    max_host: Duration,
    /// CPU time (guests' and host's) after which the command moves to the
    /// batch pool.
    demote_after: Duration,
}

/// Runs a command's future where it is polled until it has used
/// [`Tuning::demote_ticks`](crate::config::Tuning) of CPU, then moves the
/// rest of it to `batch` (a guest notices at an epoch tick, host work at its
/// next poll, where both yield). Dropping this future stops the command
/// wherever it runs. A future that panics on the batch pool gives `None`.
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
    /// Stats for a command that may use `max_host` of host time and moves to
    /// the batch pool after `demote_after` of CPU time.
    pub fn new(max_host: Duration, demote_after: Duration) -> Self {
        Self {
            epoch_ticks: AtomicU64::new(0),
            peak_memory: AtomicU64::new(0),
            instances: AtomicU64::new(0),
            trapped: AtomicBool::new(false),
            memory_limit_hit: AtomicBool::new(false),
            cpu_limit_hit: AtomicBool::new(false),
            demoted: AtomicBool::new(false),
            host_ns: AtomicU64::new(0),
            host_limit_hit: AtomicBool::new(false),
            host_exact: AtomicBool::new(false),
            live: AtomicU64::new(0),
            tenant_instances: None,
            max_host,
            demote_after,
        }
    }

    /// Counts the command's instances against its tenant's too.
    pub fn with_tenant_instances(mut self, instances: TenantInstances) -> Self {
        self.tenant_instances = Some(instances);
        self
    }

    /// CPU time of the command: the guests' (from epoch ticks) and the
    /// host's own work for it.
    pub fn cpu(&self) -> Duration {
        self.guest_cpu() + self.host_cpu()
    }

    /// Approximate CPU time of the guests, from epoch ticks.
    pub fn guest_cpu(&self) -> Duration {
        super::engine::ticks(self.epoch_ticks.load(Ordering::Relaxed))
    }

    /// The host's own work for the command.
    pub fn host_cpu(&self) -> Duration {
        Duration::from_nanos(self.host_ns.load(Ordering::Relaxed))
    }

    /// Charges `ns` of host work: past the point of demotion the command
    /// moves to the batch pool, past the budget it ends.
    fn charge_host(&self, ns: u64) {
        let total = self.host_ns.fetch_add(ns, Ordering::Relaxed) + ns;
        if !self.host_exact.load(Ordering::Relaxed) && Duration::from_nanos(total) >= EXACT_AFTER {
            self.host_exact.store(true, Ordering::Relaxed);
        }
        if Duration::from_nanos(total) > self.max_host {
            self.host_limit_hit.store(true, Ordering::Relaxed);
            self.cpu_limit_hit.store(true, Ordering::Relaxed);
        }
        if !self.demoted.load(Ordering::Relaxed) && self.cpu() >= self.demote_after {
            self.demoted.store(true, Ordering::Relaxed);
        }
    }
}

/// Host work a command does on another thread (git, on the blocking pool),
/// charged to the command's host time like its own tasks' polls: made in
/// the command's task ([`BlockingMeter::current`]), then moved to the
/// thread that does the work.
pub struct BlockingMeter {
    stats: Option<Arc<CommandStats>>,
    /// The thread's CPU clock when last charged.
    last: Option<u64>,
}

impl BlockingMeter {
    /// A meter for the command whose task calls this (none outside one).
    pub fn current() -> Self {
        Self { stats: current_stats(), last: None }
    }

    /// Charges the thread's CPU time since the last call (the first call
    /// starts the clock); `false` once the command is over its CPU budget.
    pub fn charge(&mut self) -> bool {
        let Some(stats) = &self.stats else { return true };
        let now = thread_cpu_ns();
        if let (Some(now), Some(last)) = (now, self.last) {
            stats.charge_host(now.saturating_sub(last));
        }
        self.last = now;
        !stats.cpu_limit_hit.load(Ordering::Relaxed)
    }
}

impl Drop for BlockingMeter {
    fn drop(&mut self) {
        self.charge();
    }
}

/// CPU time of the calling thread, in nanoseconds.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// No thread CPU clock here: the wall-time estimate stays in use.
#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> Option<u64> {
    None
}

thread_local! {
    /// Nanoseconds this thread has spent inside guests (see [`in_guest`]).
    static GUEST_NS: Cell<u64> = const { Cell::new(0) };
}

/// Polls a guest's future, counting the time spent in it on this thread so
/// that the host meter around it does not count it again.
pub(crate) async fn in_guest<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let t0 = Instant::now();
        let r = fut.as_mut().poll(cx);
        let ns = t0.elapsed().as_nanos() as u64;
        GUEST_NS.with(|g| g.set(g.get().wrapping_add(ns)));
        r
    })
    .await
}

/// Polls a task of a command, charging each poll's time outside guests to
/// `stats`; `None`, without polling it again, once the host budget is spent.
async fn metered<F: Future>(stats: Arc<CommandStats>, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if stats.host_limit_hit.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        let exact = stats.host_exact.load(Ordering::Relaxed);
        let cpu0 = if exact { thread_cpu_ns() } else { None };
        let guest0 = GUEST_NS.with(Cell::get);
        let t0 = Instant::now();
        let r = fut.as_mut().poll(cx);
        let wall = t0.elapsed().as_nanos() as u64;
        let guest = GUEST_NS.with(Cell::get).wrapping_sub(guest0);
        // The guest's share is known as wall time only; taking it from the
        // CPU time errs towards too little host time, never too much.
        let busy = match (cpu0, cpu0.and_then(|_| thread_cpu_ns())) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => wall,
        };
        stats.charge_host(busy.saturating_sub(guest));
        r.map(Some)
    })
    .await
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

/// Runs `f` with `stats` collecting what its guests and its host work use;
/// tasks it spawns through [`spawn_part`] move to `batch` once the command
/// is demoted. `None` when the host work used up its budget (max-cpu).
pub async fn with_scope<F: Future>(
    stats: Arc<CommandStats>,
    batch: tokio::runtime::Handle,
    f: F,
) -> Option<F::Output> {
    let meter = stats.clone();
    SCOPE.scope(Scope { stats, batch }, metered(meter, f)).await
}

/// The stats of the command being run on this task, if any.
pub(crate) fn current_stats() -> Option<Arc<CommandStats>> {
    SCOPE.try_with(|s| s.stats.clone()).ok()
}

/// Runs part of the current command (a pipeline stage, a nested shell on a
/// fresh stack) as a task of its own on the current runtime, so that the
/// parts of a pipeline use every core. The task keeps the command's stats
/// and moves to the batch pool with the rest of the command
/// ([`run_demotable`]) and its host work is metered like the rest of the
/// command's; dropping the returned future aborts it. `None` if it panicked
/// or the command's host budget is spent.
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
                let part = SCOPE.scope(scope, metered(stats.clone(), fut));
                run_demotable(part, stats, batch).await.flatten()
            }
            None => Some(fut.await),
        }
    });
    let task = tokio_util::task::AbortOnDropHandle::new(task);
    async move { task.await.ok().flatten() }
}
