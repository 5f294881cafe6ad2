//! Sessions: the process table one client owns, which connection its
//! notifications go to, and detach/resume (PROTOCOL.md §5). The handlers of
//! the `process/*` methods live here because they act on the table.

use super::process::{self, Process, Stop};
use super::{AfterReply, Reply, ServerContext, env, lock};
use crate::exec::{CommandSpec, PipeReader, Sink, Stdin, StreamKind};
use crate::protocol::*;
use crate::rpc::{self, RpcError};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a closed process stays readable (and its id reserved).
const EXITED_TTL: Duration = Duration::from_secs(80);

/// A session: the processes one client started, and where their
/// notifications go. It outlives its connection for `detach_grace`, so a
/// client that reconnects with `resumeSessionId` finds its processes.
pub struct Session {
    pub id: String,
    ctx: Arc<ServerContext>,
    attachment: Mutex<Attachment>,
    processes: Mutex<HashMap<String, Arc<Process>>>,
    /// When closed processes were last pruned from the table.
    last_prune: Mutex<std::time::Instant>,
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
    outbound: Option<mpsc::Sender<String>>,
    /// Bumped on every attach, so a stale expiry timer does nothing.
    generation: u64,
    /// Ends the session when the grace period after a detach runs out.
    expiry: Option<tokio::task::JoinHandle<()>>,
    closed: bool,
}

impl Session {
    pub(super) fn new(ctx: Arc<ServerContext>, outbound: mpsc::Sender<String>) -> Arc<Self> {
        let s = Arc::new(Session {
            id: uuid::Uuid::new_v4().to_string(),
            ctx: ctx.clone(),
            attachment: Mutex::new(Attachment { outbound: Some(outbound), ..Default::default() }),
            processes: Mutex::new(HashMap::new()),
            last_prune: Mutex::new(std::time::Instant::now()),
            closed: Mutex::default(),
        });
        lock(&ctx.sessions).insert(s.id.clone(), s.clone());
        s
    }

    /// Reattaches a detached session to a new connection.
    pub(super) fn attach(&self, outbound: mpsc::Sender<String>) -> Result<(), RpcError> {
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
        let grace = self.ctx.executor.limits.detach_grace;
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

    /// Sends a notification to the attached connection, if any (dropped when
    /// detached, as PROTOCOL.md §5 specifies).
    pub(super) async fn notify<P: Serialize>(&self, method: &str, params: P) {
        let tx = lock(&self.attachment).outbound.clone();
        let Some(tx) = tx else { return };
        match serde_json::to_string(&Notification { method, params }) {
            Ok(text) => {
                let _ = tx.send(text).await;
            }
            Err(e) => tracing::error!(error = %e, "could not serialize a notification"),
        }
    }

    /// Sends a notification already serialized (see
    /// [`crate::protocol::process_output_json`]).
    pub(super) async fn notify_text(&self, text: String) {
        let tx = lock(&self.attachment).outbound.clone();
        if let Some(tx) = tx {
            let _ = tx.send(text).await;
        }
    }

    /// Counts a closed process against the session's bounds: past the
    /// bound on kept output, the oldest closed processes lose their output;
    /// past [`MAX_CLOSED_PROCESSES`], the oldest are forgotten.
    pub(super) fn retire(&self, proc: &Arc<Process>) {
        let cap = CLOSED_OUTPUT_FACTOR.saturating_mul(self.ctx.executor.limits.retained_output);
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

    /// The tenant's pool for long-running commands.
    pub(super) fn guests(&self) -> tokio::runtime::Handle {
        self.ctx.guests.handle()
    }

    /// The pool every command starts on.
    pub(super) fn interactive(&self) -> tokio::runtime::Handle {
        self.ctx.executor.runtime.interactive()
    }

    pub(super) fn tenant(&self) -> &str {
        &self.ctx.tenant
    }

    pub(super) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.ctx.executor.runtime.metrics
    }

    fn process(&self, id: &str) -> Option<Arc<Process>> {
        lock(&self.processes).get(id).cloned()
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
        lock(&self.ctx.sessions).remove(&self.id);
        let procs: Vec<_> = lock(&self.processes).drain().map(|(_, p)| p).collect();
        for p in procs {
            p.abort();
        }
        tracing::info!(session_id = %self.id, "session closed");
    }

    pub(super) fn process_start(
        self: &Arc<Self>,
        p: ProcessStartParams,
    ) -> Result<Reply, RpcError> {
        if p.argv.is_empty() {
            return Err(RpcError::invalid_params("argv must not be empty"));
        }
        let exec = &self.ctx.executor;
        let cwd = exec.workspace.resolve_cwd(&p.cwd).map_err(|e| match e {
            crate::fs::FsError::Uri(u) => RpcError::from(u),
            other => RpcError::internal(RpcError::from(other).message),
        })?;
        let limits = &exec.limits;
        let (stdin_tx, stdin) = if p.tty || p.pipe_stdin {
            let (tx, rx) = mpsc::channel(process::stdin_slots(limits.max_stdin_buffer));
            (Some(tx), Stdin::Pipe(PipeReader::from_channel(rx)))
        } else {
            (None, Stdin::Closed)
        };
        let proc = {
            let mut table = lock(&self.processes);
            // Forgetting expired entries scans the table: at most once a second.
            {
                let mut last = lock(&self.last_prune);
                if last.elapsed() >= Duration::from_secs(1) {
                    table.retain(|_, pr| !pr.expired(EXITED_TTL));
                    *last = std::time::Instant::now();
                }
            }
            if table.contains_key(&p.process_id) {
                return Err(RpcError::invalid_request(format!(
                    "process {} already exists",
                    p.process_id
                )));
            }
            let max = limits.max_processes;
            if let Err(running) =
                self.ctx.running_processes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
            {
                return Err(RpcError::invalid_request(format!(
                    "process limit reached: {running} processes are running \
                     (max-processes is {max})"
                )));
            }
            let proc = Process::new(
                p.process_id.clone(),
                p.tty,
                stdin_tx,
                limits.retained_output,
                limits.max_output,
            );
            table.insert(p.process_id.clone(), proc.clone());
            proc
        };
        let base = env::sandbox_base(exec.workspace.visible_root(), &self.ctx.env_info.shell.path);
        let envs = env::build(&p.env, p.env_policy.as_ref(), base);
        // 16 × 32 KiB (`OUTPUT_CHUNK`) of output waits for the session at most.
        let (out_tx, out_rx) = mpsc::channel(16);
        let (stdout, stderr) = if p.tty {
            let s = Sink::Output { tx: out_tx.clone(), stream: StreamKind::Pty };
            (s.clone(), s)
        } else {
            (
                Sink::Output { tx: out_tx.clone(), stream: StreamKind::Stdout },
                Sink::Output { tx: out_tx.clone(), stream: StreamKind::Stderr },
            )
        };
        let spec = CommandSpec {
            argv: p.argv,
            arg0: p.arg0,
            env: envs,
            cwd,
            stdin,
            stdout,
            stderr,
            tty: p.tty,
        };
        let executor = exec.clone();
        // Counted (above) as running until the command ends or is dropped.
        let running = RunningGuard(self.ctx.clone());
        // Boxed: moved several times before it first runs.
        let runner = Box::pin(async move {
            let _running = running;
            executor.run_command(spec).await
        });
        let (go_tx, go_rx) = oneshot::channel();
        let answer = rpc::to_value(ProcessStartResponse {
            process_id: p.process_id.clone(),
            sandbox_type: "none",
        });
        proc.spawn(self.clone(), runner, out_rx, out_tx, limits.max_wall, go_rx);
        self.metrics()
            .processes_started
            .get_or_create(&crate::metrics::Metrics::tenant(self.tenant()))
            .inc();
        tracing::debug!(session_id = %self.id, process_id = %p.process_id, "process started");
        Ok(Reply::Handoff(Box::new(move |responder| {
            let _ = go_tx.send((responder, answer));
        })))
    }

    pub(super) fn process_read(self: &Arc<Self>, p: ProcessReadParams) -> Result<Reply, RpcError> {
        let proc = self.process(&p.process_id).ok_or_else(|| {
            RpcError::invalid_request(format!("unknown process id {}", p.process_id))
        })?;
        let wait = Duration::from_millis(p.wait_ms.unwrap_or(0).min(300_000));
        let after = p.after_seq.unwrap_or(0);
        let fut = async move { rpc::to_value(proc.read(after, p.max_bytes, wait).await) };
        Ok(Reply::Later(Box::pin(fut)))
    }

    pub(super) fn process_write(&self, p: ProcessWriteParams) -> Result<Value, RpcError> {
        if p.write_id.is_empty() {
            return Err(RpcError::invalid_params("writeId must not be empty"));
        }
        let data = crate::b64::decode(p.chunk.as_bytes()).map_err(|e| {
            RpcError::invalid_params(format!("process/write requires valid base64 chunk: {e}"))
        })?;
        let status = match self.process(&p.process_id) {
            None => WriteStatus::UnknownProcess,
            Some(proc) => proc
                .write(Bytes::from(data), p.write_id, self.ctx.executor.limits.max_stdin_buffer)
                .map_err(RpcError::invalid_request)?,
        };
        rpc::to_value(ProcessWriteResponse { status })
    }

    pub(super) fn process_signal(&self, p: ProcessSignalParams) -> Reply {
        let SignalName::Interrupt = p.signal;
        let after: Option<AfterReply> = self.process(&p.process_id).map(|proc| {
            Box::new(move || {
                proc.request_stop(Stop::Interrupt);
            }) as AfterReply
        });
        Reply::Now(rpc::to_value(Empty {}), after)
    }

    pub(super) fn process_terminate(&self, p: ProcessTerminateParams) -> Reply {
        match self.process(&p.process_id) {
            Some(proc) if proc.is_running() => {
                let after: AfterReply = Box::new(move || {
                    proc.request_stop(Stop::Terminate);
                });
                Reply::Now(rpc::to_value(ProcessTerminateResponse { running: true }), Some(after))
            }
            _ => rpc::to_value(ProcessTerminateResponse { running: false }).into(),
        }
    }
}

/// Keeps a process counted in its tenant's `running_processes` while the
/// command future lives (it is dropped when the command ends or is killed).
struct RunningGuard(Arc<ServerContext>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running_processes.fetch_sub(1, Ordering::Relaxed);
    }
}
