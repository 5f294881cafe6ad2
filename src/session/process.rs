//! One process of a session: its task, its numbered event stream, the output
//! it retains for `process/read`, its stdin, and how it is stopped.
//!
//! A single task per process (the *pump*) runs the command and owns the
//! `seq` counter: it numbers every output chunk, the exit and the close, so
//! the sequence is gapless and `closed` is always last. It also sends the
//! `process/start` response, after the command's first poll and before the
//! process's first notification.

use super::{Responder, Session, lock};
use crate::exec::{CommandStats, OutputChunk, STATUS_INTERRUPTED, STATUS_KILLED, StreamKind};
use crate::metrics::{Metrics, Outcome, OutcomeLabels};
use crate::protocol::{
    OutputChunkWire, ProcessClosedNotification, ProcessExitedNotification, ProcessReadResponse,
    ProcessUsage, StreamName, WriteStatus, method,
};
use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::Instrument;

/// Chunks retained per process at most (PROTOCOL.md §12).
const MAX_RETAINED_CHUNKS: usize = 50_000;
/// `writeId`s remembered per process for de-duplication.
const WRITE_ID_WINDOW: usize = 4096;

/// Why a running command is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Terminate,
    Interrupt,
    OutputLimit,
}

/// The numbered events of a process, and what `process/read` replays.
#[derive(Debug, Default)]
struct Events {
    /// The newest output chunks: (seq, stream, bytes).
    retained: VecDeque<(u64, StreamName, Bytes)>,
    retained_bytes: usize,
    /// The next `seq` to assign (starts at 1).
    next_seq: u64,
    /// Exit status and the `seq` of the exited event.
    exit: Option<(i32, u64)>,
    /// `seq` of the closed event.
    closed: Option<u64>,
    /// When the process closed, for expiring the entry.
    closed_at: Option<Instant>,
}

/// Stdin of a process and the write ids seen.
#[derive(Debug, Default)]
struct StdinState {
    /// None once closed (or never opened).
    tx: Option<mpsc::Sender<Bytes>>,
    /// Whether stdin was ever writable (to answer `stdinClosed`).
    writable: bool,
    seen: HashSet<String>,
    order: VecDeque<String>,
    /// For terminal echo: the output channel of the pump, dropped at exit.
    echo: Option<mpsc::Sender<OutputChunk>>,
}

pub struct Process {
    pub id: String,
    pub tty: bool,
    events: Mutex<Events>,
    /// Wakes `process/read` waiters on every new event.
    changed: Notify,
    stdin: Mutex<StdinState>,
    /// Stop requests for the pump.
    stop: watch::Sender<Option<Stop>>,
    /// The pump; aborted when the session ends, which drops the guest.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    retain_limit: usize,
    max_output: u64,
    /// `process/closed` has been handed to the connection (or dropped while
    /// detached): nothing more will come from this process.
    finished: std::sync::atomic::AtomicBool,
}

/// The most output one `process/output` message carries.
const MAX_MESSAGE_OUTPUT: usize = 64 * 1024;

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

fn stream_name(kind: StreamKind) -> StreamName {
    match kind {
        StreamKind::Stdout => StreamName::Stdout,
        StreamKind::Stderr => StreamName::Stderr,
        StreamKind::Pty => StreamName::Pty,
    }
}

/// Exit status for a stop, as PROTOCOL.md §6.7 reports them.
fn stop_status(stop: Stop, tty: bool) -> i32 {
    match (stop, tty) {
        (_, true) => 1,
        (Stop::Interrupt, false) => STATUS_INTERRUPTED,
        (Stop::Terminate | Stop::OutputLimit, false) => STATUS_KILLED,
    }
}

/// The answer to a `process/start`, sent by the process's pump.
pub type StartAnswer = Result<serde_json::Value, crate::rpc::RpcError>;

impl Process {
    pub fn new(
        id: String,
        tty: bool,
        stdin: Option<mpsc::Sender<Bytes>>,
        retain_limit: usize,
        max_output: u64,
    ) -> Arc<Self> {
        let writable = stdin.is_some();
        Arc::new(Self {
            id,
            tty,
            events: Mutex::new(Events { next_seq: 1, ..Default::default() }),
            changed: Notify::new(),
            stdin: Mutex::new(StdinState { tx: stdin, writable, ..Default::default() }),
            stop: watch::channel(None).0,
            task: Mutex::new(None),
            retain_limit,
            max_output,
            finished: Default::default(),
        })
    }

    /// Whether the process's last notification has gone out.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub fn is_running(&self) -> bool {
        lock(&self.events).exit.is_none()
    }

    /// Closed for longer than `ttl`: the entry may be forgotten.
    pub fn expired(&self, ttl: Duration) -> bool {
        lock(&self.events).closed_at.is_some_and(|t| t.elapsed() > ttl)
    }

    /// Starts the pump. `runner` is the command; `stderr` a sink for limit
    /// messages; `go` brings the start's answer and where to send it, which
    /// the pump does after the command's first poll and before anything the
    /// command produced.
    pub fn spawn<F>(
        self: &Arc<Self>,
        session: Arc<Session>,
        runner: F,
        rx: mpsc::Receiver<OutputChunk>,
        limit_note: mpsc::Sender<OutputChunk>,
        max_wall: Duration,
        go: oneshot::Receiver<(Responder, StartAnswer)>,
    ) where
        F: Future<Output = i32> + Send + 'static,
    {
        lock(&self.stdin).echo = if self.tty { Some(limit_note.clone()) } else { None };
        let this = self.clone();
        let guests = session.interactive();
        // One span per process, carrying its ids, around everything it does.
        // At debug level, like every event inside it: an info span costs its
        // fields' formatting on every command (3% of a short one's time).
        let span = tracing::debug_span!("process", session_id = %session.id, process_id = %self.id);
        let handle = guests.spawn(
            async move {
                // The connection dropping `go` means it closed before the
                // start was answered: run anyway, a resumed session may
                // still read the result.
                let answer = go.await.ok();
                // The whole process (the command and the delivery of its
                // output) moves to the tenant's batch pool once it has run
                // long; the two stay on one thread either way.
                let stats = Arc::new(CommandStats::default());
                let batch = session.guests();
                // Boxed where it is made: the pump is a large future (15 KB),
                // and every move of it would be a copy.
                let pump =
                    this.pump(session, runner, rx, limit_note, max_wall, stats.clone(), answer);
                let pump = Box::pin(pump.instrument(tracing::Span::current()));
                crate::exec::run_demotable(pump, stats, batch).await;
            }
            .instrument(span),
        );
        *lock(&self.task) = Some(handle);
    }

    #[allow(clippy::too_many_arguments, reason = "the parts of one process, each moved in once")]
    async fn pump<F>(
        self: Arc<Self>,
        session: Arc<Session>,
        runner: F,
        mut rx: mpsc::Receiver<OutputChunk>,
        note: mpsc::Sender<OutputChunk>,
        max_wall: Duration,
        stats: Arc<CommandStats>,
        mut answer: Option<(Responder, StartAnswer)>,
    ) where
        F: Future<Output = i32> + Send + 'static,
    {
        let mut stop_rx = self.stop.subscribe();
        let tty = self.tty;
        let note_stream = if tty { StreamKind::Pty } else { StreamKind::Stderr };
        let started = Instant::now();
        let runner = crate::exec::with_scope(stats.clone(), session.guests(), runner);
        // The command, bounded by stop requests and the wall-clock limit; the
        // outcome is known here for stops and limits, else read from the stats.
        let note_for_runner = note.clone();
        let command = async move {
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
                        let _ = note_for_runner
                            .send((
                                note_stream,
                                Bytes::from_static(
                                    b"\noutput limit exceeded (max-output); command stopped\n",
                                ),
                            ))
                            .await;
                    }
                    let outcome = match stop {
                        Stop::Terminate => Outcome::Terminated,
                        Stop::Interrupt => Outcome::Interrupted,
                        Stop::OutputLimit => Outcome::Limit,
                    };
                    (stop_status(stop, tty), Some(outcome))
                }
                _ = tokio::time::sleep(max_wall) => {
                    let msg = format!(
                        "\ncommand timed out after {}s (max-wall); command stopped\n",
                        max_wall.as_secs()
                    );
                    let _ = note_for_runner.send((note_stream, Bytes::from(msg))).await;
                    (STATUS_KILLED, Some(Outcome::Limit))
                }
            }
        };
        drop(note);
        tokio::pin!(command);
        let mut rx_open = true;
        let mut produced: u64 = 0;
        let mut last_was_cr = false;
        let mut exited = false;
        // The start's answer goes out after the command's first poll (the
        // `biased` order below polls it before the last branch), ahead of
        // anything the command produced: a command that finishes in its
        // first poll reaches the client in one write with its answer.
        let answer_first = async |answer: &mut Option<(Responder, _)>| {
            if let Some((responder, result)) = answer.take() {
                responder.send(result).await;
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
                        for (kind, data) in std::iter::once(batch).chain(next) {
                            produced += data.len() as u64;
                            if produced > self.max_output && !exited {
                                self.stop.send_replace(Some(Stop::OutputLimit));
                            }
                            let data = if tty { crlf(&data, &mut last_was_cr) } else { data };
                            self.emit_output(&session, stream_name(kind), data).await;
                        }
                    }
                    None => {
                        rx_open = false;
                        if exited { break; }
                    }
                },
                (status, outcome) = &mut command, if !exited => {
                    answer_first(&mut answer).await;
                    exited = true;
                    let limit_hit = stats.memory_limit_hit.load(Ordering::Relaxed)
                        || stats.cpu_limit_hit.load(Ordering::Relaxed);
                    let outcome = outcome.unwrap_or(if limit_hit {
                        Outcome::Limit
                    } else if stats.trapped.load(Ordering::Relaxed) {
                        Outcome::Trap
                    } else {
                        Outcome::Exit
                    });
                    lock(&self.stdin).echo = None;
                    lock(&self.stdin).tx = None;
                    // Output already written precedes the exit.
                    while let Ok((kind, data)) = rx.try_recv() {
                        produced += data.len() as u64;
                        let data = if tty { crlf(&data, &mut last_was_cr) } else { data };
                        self.emit_output(&session, stream_name(kind), data).await;
                    }
                    let usage = ProcessUsage {
                        wall_ms: started.elapsed().as_millis() as u64,
                        cpu_ms: stats.cpu().as_millis() as u64,
                        peak_memory_bytes: stats.peak_memory.load(Ordering::Relaxed),
                        output_bytes: produced,
                        instances: stats.instances.load(Ordering::Relaxed),
                    };
                    let tenant = session.tenant();
                    let metrics = session.metrics();
                    metrics
                        .processes_finished
                        .get_or_create(&OutcomeLabels { tenant: tenant.into(), outcome })
                        .inc();
                    metrics
                        .command_seconds
                        .get_or_create(&Metrics::tenant(tenant))
                        .observe(started.elapsed().as_secs_f64());
                    metrics.output_bytes.get_or_create(&Metrics::tenant(tenant)).inc_by(produced);
                    // At debug: at thousands of commands a second, a line
                    // each (formatted and written) was 14% of the server's
                    // time; the metrics count them.
                    tracing::debug!(
                        process_id = %self.id,
                        status,
                        ?outcome,
                        wall_ms = usage.wall_ms,
                        cpu_ms = usage.cpu_ms,
                        peak_memory_bytes = usage.peak_memory_bytes,
                        output_bytes = usage.output_bytes,
                        instances = usage.instances,
                        "process exited"
                    );
                    self.emit_exited(&session, status, usage).await;
                    if !rx_open { break; }
                }
                // The command's first poll did not finish it.
                () = answer_first(&mut answer), if answer.is_some() => {}
            }
        }
        // Every way out of the loop has sent it; this keeps it so.
        answer_first(&mut answer).await;
        self.emit_closed(&session).await;
        session.retire(&self);
        // This task is ending: its handle (and the task's memory with it)
        // need not live as long as the entry.
        drop(lock(&self.task).take());
    }

    async fn emit_output(&self, session: &Session, stream: StreamName, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let seq = {
            let mut ev = lock(&self.events);
            let seq = ev.next_seq;
            ev.next_seq += 1;
            ev.retained_bytes += data.len();
            ev.retained.push_back((seq, stream, data.clone()));
            while ev.retained.len() > 1
                && (ev.retained_bytes > self.retain_limit
                    || ev.retained.len() > MAX_RETAINED_CHUNKS)
            {
                if let Some((_, _, old)) = ev.retained.pop_front() {
                    ev.retained_bytes -= old.len();
                }
            }
            seq
        };
        self.changed.notify_waiters();
        session
            .notify_text(crate::protocol::process_output_json(&self.id, seq, stream, &data))
            .await;
    }

    async fn emit_exited(&self, session: &Session, status: i32, usage: ProcessUsage) {
        let seq = {
            let mut ev = lock(&self.events);
            let seq = ev.next_seq;
            ev.next_seq += 1;
            ev.exit = Some((status, seq));
            seq
        };
        self.changed.notify_waiters();
        let n = ProcessExitedNotification {
            process_id: &self.id,
            seq,
            exit_code: status,
            sandbox_denied: false,
            usage: Some(usage),
        };
        session.notify(method::PROCESS_EXITED, n).await;
    }

    async fn emit_closed(&self, session: &Session) {
        let seq = {
            let mut ev = lock(&self.events);
            let seq = ev.next_seq;
            ev.next_seq += 1;
            ev.closed = Some(seq);
            ev.closed_at = Some(Instant::now());
            seq
        };
        self.changed.notify_waiters();
        session
            .notify(method::PROCESS_CLOSED, ProcessClosedNotification { process_id: &self.id, seq })
            .await;
        self.finished.store(true, Ordering::Release);
    }

    /// Bytes of output kept for `process/read`.
    pub fn retained_bytes(&self) -> usize {
        lock(&self.events).retained_bytes
    }

    /// Forgets the kept output (a closed process, to bound the session's
    /// memory); `process/read` then returns no chunks for it, and its status.
    pub fn drop_retained(&self) {
        let mut ev = lock(&self.events);
        ev.retained.clear();
        ev.retained_bytes = 0;
    }

    /// Asks a running process to stop; `true` if it was running.
    pub fn request_stop(&self, stop: Stop) -> bool {
        if !self.is_running() {
            return false;
        }
        self.stop.send_replace(Some(stop));
        true
    }

    /// Kills the pump outright (session end): the guest is dropped with it.
    pub fn abort(&self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
    }

    /// `process/write`.
    pub fn write(
        &self,
        data: Bytes,
        write_id: String,
        max_buffer: usize,
    ) -> Result<WriteStatus, String> {
        let mut st = lock(&self.stdin);
        if !st.writable {
            return Ok(WriteStatus::StdinClosed);
        }
        if st.seen.contains(&write_id) {
            return Ok(WriteStatus::Accepted);
        }
        st.seen.insert(write_id.clone());
        st.order.push_back(write_id);
        if st.order.len() > WRITE_ID_WINDOW {
            if let Some(old) = st.order.pop_front() {
                st.seen.remove(&old);
            }
        }
        if data.is_empty() {
            return Ok(WriteStatus::Accepted);
        }
        if !self.tty {
            return Ok(match &st.tx {
                Some(tx) => send_stdin(tx, data, max_buffer)?,
                None => WriteStatus::Accepted,
            });
        }
        // Terminal line discipline, emulated: echo, Ctrl-C, Ctrl-D.
        let flush = |st: &mut StdinState, pending: &mut Vec<u8>| -> Result<(), String> {
            if pending.is_empty() {
                return Ok(());
            }
            let data = Bytes::from(std::mem::take(pending));
            if let Some(echo) = &st.echo {
                let _ = echo.try_send((StreamKind::Pty, data.clone()));
            }
            if let Some(tx) = &st.tx {
                send_stdin(tx, data, max_buffer)?;
            }
            Ok(())
        };
        let mut pending = Vec::with_capacity(data.len());
        for &b in data.iter() {
            match b {
                0x03 => {
                    flush(&mut st, &mut pending)?;
                    drop(st);
                    self.request_stop(Stop::Interrupt);
                    return Ok(WriteStatus::Accepted);
                }
                0x04 => {
                    flush(&mut st, &mut pending)?;
                    st.tx = None;
                }
                b'\r' => pending.push(b'\n'),
                b => pending.push(b),
            }
        }
        flush(&mut st, &mut pending)?;
        Ok(WriteStatus::Accepted)
    }

    /// `process/read`: waits up to `wait` for something new after `after`.
    pub async fn read(
        &self,
        after: u64,
        max_bytes: Option<usize>,
        wait: Duration,
    ) -> ProcessReadResponse {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let ev = lock(&self.events);
                let has_new = ev.retained.back().is_some_and(|(s, _, _)| *s > after);
                let exit_new = ev.exit.is_some_and(|(_, s)| s > after);
                if has_new
                    || exit_new
                    || ev.closed.is_some()
                    || tokio::time::Instant::now() >= deadline
                {
                    return snapshot(&ev, after, max_bytes);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let ev = lock(&self.events);
                return snapshot(&ev, after, max_bytes);
            }
        }
    }
}

fn send_stdin(
    tx: &mpsc::Sender<Bytes>,
    data: Bytes,
    max_buffer: usize,
) -> Result<WriteStatus, String> {
    match tx.try_send(data) {
        Ok(()) => Ok(WriteStatus::Accepted),
        Err(mpsc::error::TrySendError::Full(_)) => Err(format!(
            "stdin buffer is full: the command has not read the last {max_buffer} bytes \
             (max-stdin-buffer)"
        )),
        // The command closed stdin or exited: the write is moot.
        Err(mpsc::error::TrySendError::Closed(_)) => Ok(WriteStatus::Accepted),
    }
}

/// Stdin channel slots for a buffer limit, counting chunks of up to 8 KiB.
pub fn stdin_slots(max_buffer: usize) -> usize {
    (max_buffer / 8192).clamp(4, 4096)
}

fn snapshot(ev: &Events, after: u64, max_bytes: Option<usize>) -> ProcessReadResponse {
    let mut chunks = Vec::new();
    let mut used = 0usize;
    let mut truncated_at = None;
    for (seq, stream, data) in ev.retained.iter().filter(|(s, _, _)| *s > after) {
        if let Some(max) = max_bytes {
            if !chunks.is_empty() && used + data.len() > max {
                truncated_at = Some(*seq);
                break;
            }
        }
        used += data.len();
        chunks.push(OutputChunkWire {
            seq: *seq,
            stream: *stream,
            chunk: crate::b64::encode(data),
        });
    }
    let next_seq = match truncated_at {
        Some(_) => chunks.last().map(|c| c.seq + 1).unwrap_or(after + 1),
        None => ev.next_seq,
    };
    ProcessReadResponse {
        chunks,
        next_seq,
        exited: ev.exit.is_some(),
        exit_code: ev.exit.map(|(c, _)| c),
        closed: ev.closed.is_some(),
        failure: None,
        sandbox_denied: false,
    }
}

/// Terminal output translation: `\n` → `\r\n` (unless already `\r\n`).
fn crlf(data: &Bytes, last_was_cr: &mut bool) -> Bytes {
    if !data.contains(&b'\n') {
        *last_was_cr = data.last() == Some(&b'\r');
        return data.clone();
    }
    let mut out = Vec::with_capacity(data.len() + 16);
    for &b in data.iter() {
        if b == b'\n' && !*last_was_cr {
            out.push(b'\r');
        }
        out.push(b);
        *last_was_cr = b == b'\r';
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_translation_keeps_existing_crlf() {
        let mut cr = false;
        assert_eq!(&crlf(&Bytes::from_static(b"a\nb\r\nc"), &mut cr)[..], b"a\r\nb\r\nc");
        let mut cr = false;
        let _ = crlf(&Bytes::from_static(b"x\r"), &mut cr);
        assert_eq!(&crlf(&Bytes::from_static(b"\ny"), &mut cr)[..], b"\ny");
    }

    #[test]
    fn snapshot_respects_max_bytes_but_returns_one_chunk() {
        let mut ev = Events { next_seq: 4, ..Default::default() };
        ev.retained.push_back((1, StreamName::Stdout, Bytes::from_static(b"aaaa")));
        ev.retained.push_back((2, StreamName::Stdout, Bytes::from_static(b"bbbb")));
        ev.retained.push_back((3, StreamName::Stderr, Bytes::from_static(b"cc")));
        let all = snapshot(&ev, 0, None);
        assert_eq!(all.chunks.len(), 3);
        assert_eq!(all.next_seq, 4);
        let one = snapshot(&ev, 0, Some(1));
        assert_eq!(one.chunks.len(), 1);
        assert_eq!(one.next_seq, 2);
        let tail = snapshot(&ev, 2, None);
        assert_eq!(tail.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![3]);
    }
}
