//! The pump: the one task per process that runs the command and delivers
//! what it produces. It bounds the command by stop requests and the
//! wall-clock limit, numbers and sends its output (coalesced, translated for
//! a terminal), answers the `process/start` after the command's first poll
//! and before its first notification, then sends the exit with the
//! command's usage and the close, and counts the outcome in the metrics.
//!
//! The whole pump (the command and the delivery of its output) moves to the
//! tenant's batch pool once the command has used its share of CPU
//! ([`crate::exec::run_demotable`]); the two stay on one thread either way.

use super::handle::{Process, Stop, lock, stream_name};
use super::notifier::{Answer, Emitter, Notifier};
use super::tty::crlf;
use crate::exec::{CommandStats, OutputChunk, STATUS_KILLED};
use crate::metrics::{Metrics, Outcome, OutcomeLabels};
use crate::protocol::ProcessUsage;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// The most output one `process/output` message carries.
const MAX_MESSAGE_OUTPUT: usize = 64 * 1024;

/// The engine's acknowledgment of a start: the process is running. The
/// session turns it into the wire response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub process_id: String,
}

/// Makes the start's answer (the session serializes it); the pump sends it
/// before anything the command produced, together with all of it when the
/// command finishes in its first poll.
pub type StartAck = Box<dyn FnOnce(Started) -> Answer + Send>;

/// Where a process runs and whom it reports to: given by its session.
pub struct Owner {
    pub notifier: Arc<dyn Notifier>,
    /// The session's id, for the process's span.
    pub session_id: String,
    /// Where every command starts (shared by all tenants).
    pub interactive: tokio::runtime::Handle,
    /// The tenant's pool for commands that have run long.
    pub batch: tokio::runtime::Handle,
    /// The tenant's label in the metrics.
    pub tenant: String,
    pub metrics: Arc<Metrics>,
    /// Wall-clock time the command may take (max-wall).
    pub max_wall: Duration,
    /// Host time the command's own work may take (max-cpu; its guests share
    /// a budget of the same size, counted by the engine).
    pub max_cpu: Duration,
    /// CPU time after which the command moves to the batch pool.
    pub demote_after: Duration,
    /// The tenant's live instances, against its max-instances.
    pub instances: crate::exec::TenantInstances,
}

/// The command's streams, as the pump sees them.
pub struct Output {
    /// What the command writes.
    pub rx: mpsc::Receiver<OutputChunk>,
    /// A sender on the same channel, for the pump's own notes (limits) and
    /// a terminal's echo.
    pub note: mpsc::Sender<OutputChunk>,
}

impl Process {
    /// Starts the pump. `runner` is the command; `go` brings the start's
    /// acknowledgment, which the pump sends after the command's first poll
    /// and before anything the command produced. The connection dropping
    /// `go` means it closed before the start was answered: the command runs
    /// anyway, a resumed session may still read its result.
    pub fn spawn<F>(
        self: &Arc<Self>,
        owner: Owner,
        runner: F,
        output: Output,
        go: oneshot::Receiver<StartAck>,
    ) where
        F: Future<Output = i32> + Send + 'static,
    {
        lock(&self.stdin).echo = if self.tty { Some(output.note.clone()) } else { None };
        let process = self.clone();
        let interactive = owner.interactive.clone();
        // One span per process, carrying its ids, around everything it does.
        // At debug level, like every event inside it: an info span costs its
        // fields' formatting on every command (3% of a short one's time).
        let span =
            tracing::debug_span!("process", session_id = %owner.session_id, process_id = %self.id);
        let handle = interactive.spawn(
            async move {
                let answer = go.await.ok();
                let stats = CommandStats::new(owner.max_cpu, owner.demote_after)
                    .with_tenant_instances(owner.instances.clone());
                let stats = Arc::new(stats);
                let _ = process.stats.set(stats.clone());
                let batch = owner.batch.clone();
                let pump = Pump { process, owner, output, stats: stats.clone(), answer };
                // Boxed where it is made: the pump is a large future (15 KB),
                // and every move of it would be a copy.
                let pump = Box::pin(pump.run(runner).instrument(tracing::Span::current()));
                crate::exec::run_demotable(pump, stats, batch).await;
            }
            .instrument(span),
        );
        *lock(&self.task) = Some(handle);
    }
}

/// The parts of one process's task, each moved in once.
struct Pump {
    process: Arc<Process>,
    owner: Owner,
    output: Output,
    stats: Arc<CommandStats>,
    answer: Option<StartAck>,
}

/// What the pump has delivered so far.
struct Delivery {
    /// Output bytes the command produced, against max-output and for usage.
    produced: u64,
    /// A terminal's `\r\n` translation state across chunks.
    last_was_cr: bool,
}

impl Pump {
    async fn run<F>(self, runner: F)
    where
        F: Future<Output = i32> + Send + 'static,
    {
        let Pump { process, owner, output, stats, mut answer } = self;
        let Output { mut rx, note } = output;
        let emitter = Emitter::new(owner.notifier.clone());
        let started = Instant::now();
        let scoped = crate::exec::with_scope(stats.clone(), owner.batch.clone(), runner);
        let (cpu_note, max_cpu) = (note.clone(), owner.max_cpu);
        let note_stream = process.note_stream();
        let runner = async move {
            // A panic in the command's host work (the shell, a host command)
            // ends this command, never the server or its other commands.
            match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(scoped)).await {
                Err(_) => {
                    tracing::error!("a command's host work panicked; the command was stopped");
                    let msg = "\ninternal error in the server's work for this command; \
                               command stopped\n";
                    let _ = cpu_note.send((note_stream, Bytes::from_static(msg.as_bytes()))).await;
                    crate::exec::STATUS_TRAP
                }
                Ok(Some(status)) => status,
                // The host work for the command used up max-cpu.
                Ok(None) => {
                    let msg = format!(
                        "\nCPU time limit exceeded (max-cpu is {max_cpu:?}); command stopped\n"
                    );
                    let _ = cpu_note.send((note_stream, Bytes::from(msg))).await;
                    STATUS_KILLED
                }
            }
        };
        let command = bounded(&process, runner, note, owner.max_wall);
        tokio::pin!(command);
        let mut rx_open = true;
        let mut exited = false;
        // After a stop or a limit, how long the stopped work may take to let
        // go of its output (its task is dropped, but dropping lands only
        // when its thread next runs, and a demoted command's thread may be
        // starved by the host's other load): the client hears `closed` then.
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut delivery = Delivery { produced: 0, last_was_cr: false };
        // The start's answer goes out after the command's first poll (the
        // `biased` order below polls it before the last branch), ahead of
        // anything the command produced: a command that finishes in its
        // first poll reaches the client in one write with its answer.
        let started_ack = || Started { process_id: process.id.clone() };
        let answer_first = async |answer: &mut Option<StartAck>| {
            if let Some(ack) = answer.take() {
                ack(started_ack()).send().await;
            }
        };
        loop {
            tokio::select! {
                biased;
                chunk = rx.recv(), if rx_open => match chunk {
                    Some(first) => {
                        answer_first(&mut answer).await;
                        // Output already queued behind this chunk goes out in
                        // the same message (fewer, larger frames when the
                        // command writes faster than the client reads).
                        let (batch, next) = coalesce(first, &mut rx);
                        for chunk in std::iter::once(batch).chain(next) {
                            deliver(&process, &emitter, &mut delivery, chunk, !exited).await;
                        }
                    }
                    None => {
                        rx_open = false;
                        if exited { break; }
                    }
                },
                (status, outcome) = &mut command, if !exited => {
                    // Finished in its first poll: the answer, the output,
                    // the exit and the close go to the client together.
                    if let Some(ack) = answer.take() {
                        emitter.open_batch(ack(started_ack()));
                    }
                    exited = true;
                    {
                        let mut stdin = lock(&process.stdin);
                        stdin.echo = None;
                        stdin.tx = None;
                    }
                    // Output already written precedes the exit.
                    while let Ok(chunk) = rx.try_recv() {
                        deliver(&process, &emitter, &mut delivery, chunk, false).await;
                    }
                    let outcome = outcome.unwrap_or_else(|| outcome_of(&stats));
                    let usage = ProcessUsage {
                        wall_ms: started.elapsed().as_millis() as u64,
                        cpu_ms: stats.cpu().as_millis() as u64,
                        peak_memory_bytes: stats.peak_memory.load(Ordering::Relaxed),
                        output_bytes: delivery.produced,
                        instances: stats.instances.load(Ordering::Relaxed),
                    };
                    record(&owner, &process, status, outcome, &usage, started.elapsed());
                    process.emit_exited(&emitter, status, usage).await;
                    // Its output has all been read (a finished command holds
                    // no sender): the close follows at once, in the batch.
                    if rx.is_closed() && rx.is_empty() {
                        rx_open = false;
                    }
                    if !rx_open { break; }
                    // Something may still write: what the batch holds goes now.
                    emitter.flush().await;
                    if matches!(outcome, Outcome::Terminated | Outcome::Interrupted) || outcome.is_limit() {
                        drain_until = Some(tokio::time::Instant::now() + STOP_DRAIN);
                    }
                }
                () = async {
                    match drain_until {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                }, if drain_until.is_some() => break,
                // The command's first poll did not finish it.
                () = answer_first(&mut answer), if answer.is_some() => {}
            }
        }
        // Every way out of the loop has sent it; this keeps it so.
        answer_first(&mut answer).await;
        // Counted as closed before the client hears so: a client that reads
        // right after the last `process/closed` sees the session's bounds
        // already applied.
        owner.notifier.retire(&process);
        process.emit_closed(&emitter).await;
        emitter.flush().await;
        process.mark_finished();
        // This task is ending: its handle (and the task's memory with it)
        // need not live as long as the entry.
        drop(lock(&process.task).take());
    }
}

/// How long a stopped command's output may still come after its exit.
const STOP_DRAIN: Duration = Duration::from_millis(250);

/// The command, bounded by stop requests and the wall-clock limit. The
/// outcome is known here for stops and limits (else it is read from the
/// stats); the note on why it stopped goes to `note`.
fn bounded<F>(
    process: &Process,
    runner: F,
    note: mpsc::Sender<OutputChunk>,
    max_wall: Duration,
) -> impl Future<Output = (i32, Option<Outcome>)> + Send + 'static
where
    F: Future<Output = i32> + Send + 'static,
{
    let mut stop_rx = process.stop.subscribe();
    let tty = process.tty;
    let note_stream = process.note_stream();
    async move {
        // Biased, the command first: most commands finish in their first
        // poll, and then the wall-clock timer is never registered (that
        // registration wakes the runtime's timer driver: a syscall and a
        // thread switch for every command).
        tokio::select! {
            biased;
            status = runner => (status, None),
            stop = async {
                loop {
                    if let Some(s) = *stop_rx.borrow_and_update() { return s; }
                    if stop_rx.changed().await.is_err() { std::future::pending::<()>().await; }
                }
            } => {
                if stop == Stop::OutputLimit {
                    let msg = b"\noutput limit exceeded (max-output); command stopped\n";
                    let _ = note.send((note_stream, Bytes::from_static(msg))).await;
                }
                let outcome = match stop {
                    Stop::Terminate => Outcome::Terminated,
                    Stop::Interrupt => Outcome::Interrupted,
                    Stop::OutputLimit => Outcome::MaxOutput,
                };
                (stop.status(tty), Some(outcome))
            }
            _ = tokio::time::sleep(max_wall) => {
                let msg = format!(
                    "\ncommand timed out after {}s (max-wall); command stopped\n",
                    max_wall.as_secs()
                );
                let _ = note.send((note_stream, Bytes::from(msg))).await;
                (STATUS_KILLED, Some(Outcome::MaxWall))
            }
        }
    }
}

/// Counts one chunk against max-output (stopping the command past it while
/// `may_stop`), translates it for a terminal and sends it.
async fn deliver(
    process: &Process,
    emitter: &Emitter,
    delivery: &mut Delivery,
    (kind, data): OutputChunk,
    may_stop: bool,
) {
    delivery.produced += data.len() as u64;
    if may_stop && delivery.produced > process.max_output {
        process.stop.send_replace(Some(Stop::OutputLimit));
    }
    let data = if process.tty { crlf(&data, &mut delivery.last_was_cr) } else { data };
    process.emit_output(emitter, stream_name(kind), data).await;
}

/// How a command that ended by itself ended, from what its guests recorded.
fn outcome_of(stats: &CommandStats) -> Outcome {
    if stats.memory_limit_hit.load(Ordering::Relaxed) {
        Outcome::MaxMemory
    } else if stats.cpu_limit_hit.load(Ordering::Relaxed) {
        Outcome::MaxCpu
    } else if stats.trapped.load(Ordering::Relaxed) {
        Outcome::Trap
    } else {
        Outcome::Exit
    }
}

/// Counts a finished command in the metrics (and the debug log).
fn record(
    owner: &Owner,
    process: &Process,
    status: i32,
    outcome: Outcome,
    usage: &ProcessUsage,
    wall: Duration,
) {
    let metrics = &owner.metrics;
    let tenant = owner.tenant.as_str();
    metrics
        .processes_finished
        .get_or_create(&OutcomeLabels { tenant: tenant.into(), outcome })
        .inc();
    metrics.command_seconds.get_or_create(&Metrics::tenant(tenant)).observe(wall.as_secs_f64());
    metrics.processes_running.get_or_create(&Metrics::tenant(tenant)).dec();
    metrics.output_bytes.get_or_create(&Metrics::tenant(tenant)).inc_by(usage.output_bytes);
    // The audit trail: one line per command, under its own target so that
    // an operator can route or silence it (`RUST_LOG=info,audit=off`). The
    // command is Debug-formatted: its newlines and escapes cannot forge
    // log lines.
    tracing::info!(
        target: "audit",
        tenant,
        session_id = %owner.session_id,
        process_id = %process.id,
        command = ?process.command,
        status,
        outcome = outcome.as_str(),
        wall_ms = usage.wall_ms,
        cpu_ms = usage.cpu_ms,
        peak_memory_bytes = usage.peak_memory_bytes,
        output_bytes = usage.output_bytes,
        instances = usage.instances,
        "command finished"
    );
}

/// Appends the chunks already waiting in `rx` to `first`, while they are of
/// the same stream, up to [`MAX_MESSAGE_OUTPUT`]; a chunk of another stream
/// that was taken is returned to be sent next.
fn coalesce(
    first: OutputChunk,
    rx: &mut mpsc::Receiver<OutputChunk>,
) -> (OutputChunk, Option<OutputChunk>) {
    let (kind, data) = first;
    let mut buf: Option<bytes::BytesMut> = None;
    let mut len = data.len();
    while len < MAX_MESSAGE_OUTPUT {
        match rx.try_recv() {
            Ok((k, more)) if k == kind => {
                len += more.len();
                buf.get_or_insert_with(|| {
                    let mut b = bytes::BytesMut::with_capacity(
                        MAX_MESSAGE_OUTPUT + crate::exec::stdio::OUTPUT_CHUNK,
                    );
                    b.extend_from_slice(&data);
                    b
                })
                .extend_from_slice(&more);
            }
            Ok(other) => {
                let batch = (kind, buf.map_or(data, |b| b.freeze()));
                return (batch, Some(other));
            }
            Err(_) => break,
        }
    }
    ((kind, buf.map_or(data, |b| b.freeze())), None)
}
