//! [`Session`]: the process table one client owns, which connection its
//! notifications go to, and detach/resume (PROTOCOL.md §5); and the
//! [`Registry`] of every live session, by id: where `initialize` finds the
//! session to resume, and what shutdown drains. The two are one unit (a
//! session enters the registry when it is made and leaves it when it
//! closes), hence one file. A session is found only by a connection of its
//! own tenant. The handlers of the `process/*` methods that act on the
//! table are in [`super::process`].

use super::lock;
use crate::process::{Notifier, Process, Stop};
use crate::rpc::RpcError;
use crate::tenant::Tenant;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a closed process stays readable (and its id reserved).
pub(super) const EXITED_TTL: Duration = Duration::from_secs(80);

/// A session: the processes one client started, and where their
/// notifications go. It outlives its connection for `detach_grace`, so a
/// client that reconnects with `resumeSessionId` finds its processes.
pub struct Session {
    pub id: String,
    pub(super) tenant: Arc<Tenant>,
    /// Every live session, where this one is found for a resume.
    registry: Arc<Registry>,
    attachment: Mutex<Attachment>,
    pub(super) processes: Mutex<HashMap<String, Arc<Process>>>,
    /// When closed processes were last pruned from the table.
    pub(super) last_prune: Mutex<std::time::Instant>,
    /// Closed processes and the output they keep, oldest first (see
    /// [`Session::retire`]).
    closed: Mutex<ClosedProcesses>,
}

/// Closed processes and the output they keep for `process/read`, bounded
/// per session: without a bound, a client running short commands would make
/// the server hold every one of them (about 1.7 KiB each, plus up to
/// `retained-output` of output) for [`EXITED_TTL`]: hundreds of MB at the
/// rates the benchmark reaches, gigabytes for commands that print a lot.
#[derive(Default)]
struct ClosedProcesses {
    /// Every closed process still remembered, oldest first.
    all: std::collections::VecDeque<std::sync::Weak<Process>>,
    /// Those still keeping output, with how much, oldest first.
    with_output: std::collections::VecDeque<(std::sync::Weak<Process>, usize)>,
    /// The output counted in `with_output`.
    bytes: usize,
}

/// Closed processes of one session keep this many times `retained-output`
/// of output between them; past it, the oldest lose theirs (their entry,
/// status and id stay until [`EXITED_TTL`]).
const CLOSED_OUTPUT_FACTOR: usize = 16;

/// Closed processes one session remembers at most; past it, the oldest are
/// forgotten before [`EXITED_TTL`] (their ids become unknown). The Codex
/// client reads output from notifications and only resumes a few recent
/// commands after a reconnect.
const MAX_CLOSED_PROCESSES: usize = 1024;

/// Which connection a session's notifications go to.
#[derive(Default)]
struct Attachment {
    /// The attached connection's queue; `None` while detached.
    outbound: Option<mpsc::Sender<crate::rpc::Queued>>,
    /// Bumped on every attach, so a stale expiry timer does nothing.
    generation: u64,
    /// Ends the session when the grace period after a detach runs out.
    expiry: Option<tokio::task::JoinHandle<()>>,
    closed: bool,
}

impl Session {
    pub(super) fn new(
        tenant: Arc<Tenant>,
        registry: Arc<Registry>,
        outbound: mpsc::Sender<crate::rpc::Queued>,
    ) -> Arc<Self> {
        let s = Arc::new(Session {
            id: uuid::Uuid::new_v4().to_string(),
            tenant,
            registry: registry.clone(),
            attachment: Mutex::new(Attachment { outbound: Some(outbound), ..Default::default() }),
            processes: Mutex::new(HashMap::new()),
            last_prune: Mutex::new(std::time::Instant::now()),
            closed: Mutex::default(),
        });
        registry.insert(s.clone());
        s
    }

    /// Reattaches a detached session to a new connection.
    pub(super) fn attach(
        &self,
        outbound: mpsc::Sender<crate::rpc::Queued>,
    ) -> Result<(), RpcError> {
        let mut a = lock(&self.attachment);
        if a.closed {
            return Err(RpcError::invalid_request(format!("unknown session id {}", self.id)));
        }
        if a.outbound.as_ref().is_some_and(|o| !o.is_closed()) {
            return Err(RpcError::new(
                crate::protocol::code::SESSION_ATTACHED,
                format!("session {} is already attached to another connection", self.id),
            ));
        }
        a.outbound = Some(outbound);
        a.generation += 1;
        if let Some(t) = a.expiry.take() {
            t.abort();
        }
        tracing::info!(session_id = %self.id, "session resumed");
        Ok(())
    }

    /// The connection is gone: keep the processes for the grace period (or
    /// end the session now when there is none).
    pub(super) fn detach(self: &Arc<Self>) {
        let grace = self.tenant.executor.limits.detach_grace;
        if grace.is_zero() {
            self.close();
            return;
        }
        let mut a = lock(&self.attachment);
        if a.closed {
            return;
        }
        a.outbound = None;
        let generation = a.generation;
        let this = self.clone();
        a.expiry = Some(tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let expired = lock(&this.attachment).generation == generation;
            if expired {
                tracing::info!(session_id = %this.id, "detached session expired");
                this.close();
            }
        }));
        tracing::info!(session_id = %self.id, grace_secs = grace.as_secs(), "session detached");
    }

    /// Counts a closed process against the session's bounds: past the
    /// bound on kept output, the oldest closed processes lose their output;
    /// past [`MAX_CLOSED_PROCESSES`], the oldest are forgotten.
    fn retire_process(&self, proc: &Arc<Process>) {
        let cap = CLOSED_OUTPUT_FACTOR.saturating_mul(self.tenant.executor.limits.retained_output);
        let mut closed = lock(&self.closed);
        let kept = proc.retained_bytes();
        closed.all.push_back(Arc::downgrade(proc));
        if kept > 0 {
            closed.with_output.push_back((Arc::downgrade(proc), kept));
            closed.bytes += kept;
        }
        // Past the count bound its oldest are forgotten anyway (below).
        while closed.bytes > cap || closed.with_output.len() > MAX_CLOSED_PROCESSES {
            let Some((old, counted)) = closed.with_output.pop_front() else { break };
            closed.bytes -= counted;
            // Already forgotten processes freed theirs.
            if let Some(old) = old.upgrade() {
                old.drop_retained();
            }
        }
        while closed.all.len() > MAX_CLOSED_PROCESSES {
            let Some(old) = closed.all.pop_front().and_then(|w| w.upgrade()) else { continue };
            let mut table = lock(&self.processes);
            if table.get(&old.id).is_some_and(|p| Arc::ptr_eq(p, &old)) {
                table.remove(&old.id);
            }
        }
    }

    pub(super) fn process(&self, id: &str) -> Option<Arc<Process>> {
        lock(&self.processes).get(id).cloned()
    }

    /// Process `id`, for the admin API.
    pub fn process_by_id(&self, id: &str) -> Option<Arc<Process>> {
        self.process(id)
    }

    /// Every process the session still tracks, for the admin API.
    pub fn processes_snapshot(&self) -> Vec<Arc<Process>> {
        lock(&self.processes).values().cloned().collect()
    }

    /// Whether a connection is attached now (else it waits for a resume).
    pub fn is_attached(&self) -> bool {
        lock(&self.attachment).outbound.is_some()
    }

    /// Processes that have not sent their last notification yet (for
    /// graceful shutdown).
    pub fn running(&self) -> usize {
        lock(&self.processes).values().filter(|p| !p.is_finished()).count()
    }

    /// Asks every running process to stop.
    pub fn stop_all(&self) {
        for p in lock(&self.processes).values() {
            p.request_stop(Stop::Terminate);
        }
    }

    /// Ends the session: stops every process and forgets the session.
    pub fn close(&self) {
        {
            let mut a = lock(&self.attachment);
            a.closed = true;
            a.outbound = None;
            if let Some(t) = a.expiry.take() {
                t.abort();
            }
        }
        self.registry.remove(&self.id);
        let procs: Vec<_> = lock(&self.processes).drain().map(|(_, p)| p).collect();
        for p in procs {
            p.abort();
        }
        tracing::info!(session_id = %self.id, "session closed");
    }
}

/// Processes reach their client through their session.
impl Notifier for Session {
    fn queue(&self) -> Option<mpsc::Sender<crate::rpc::Queued>> {
        lock(&self.attachment).outbound.clone()
    }

    fn retire(&self, process: &Arc<Process>) {
        self.retire_process(process);
    }
}

/// The live sessions, by id.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub(super) fn insert(&self, session: Arc<Session>) {
        lock(&self.sessions).insert(session.id.clone(), session);
    }

    pub(super) fn remove(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// `tenant`'s session `id`; another tenant's is not found, as if it did
    /// not exist.
    pub fn find(&self, tenant: &Arc<Tenant>, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(id).filter(|s| Arc::ptr_eq(&s.tenant, tenant)).cloned()
    }

    /// Every live session of `tenant`.
    pub fn of(&self, tenant: &Arc<Tenant>) -> Vec<Arc<Session>> {
        lock(&self.sessions).values().filter(|s| Arc::ptr_eq(&s.tenant, tenant)).cloned().collect()
    }

    /// Every live session.
    pub fn all(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions).values().cloned().collect()
    }
}
