//! [`Process`]: what a session keeps for one process, and everything that
//! acts on it from outside its pump: stop requests, `process/write` (through
//! the terminal's line discipline when it has one), `process/read`, and the
//! bounds on what a closed process keeps.

use super::events::{Event, Events};
use super::notifier::Emitter;
use super::tty::{self, Typed};
use crate::exec::{OutputChunk, STATUS_INTERRUPTED, STATUS_KILLED, StreamKind};
use crate::protocol::{
    ProcessClosedNotification, ProcessExitedNotification, ProcessReadResponse, ProcessUsage,
    StreamName, WriteStatus, method,
};
use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// `writeId`s remembered per process for de-duplication.
const WRITE_ID_WINDOW: usize = 4096;

/// Why a running command is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Terminate,
    Interrupt,
    OutputLimit,
}

impl Stop {
    /// Exit status for a stop, as PROTOCOL.md §6.7 reports them.
    pub fn status(self, tty: bool) -> i32 {
        match (self, tty) {
            (_, true) => 1,
            (Stop::Interrupt, false) => STATUS_INTERRUPTED,
            (Stop::Terminate | Stop::OutputLimit, false) => STATUS_KILLED,
        }
    }
}

/// Stdin of a process and the write ids seen.
#[derive(Debug, Default)]
pub(super) struct StdinState {
    /// None once closed (or never opened).
    pub tx: Option<mpsc::Sender<Bytes>>,
    /// Whether stdin was ever writable (to answer `stdinClosed`).
    writable: bool,
    seen: HashSet<String>,
    order: VecDeque<String>,
    /// For terminal echo: the output channel of the pump, dropped at exit.
    pub echo: Option<mpsc::Sender<OutputChunk>>,
}

/// One process of a session.
pub struct Process {
    pub id: String,
    pub tty: bool,
    events: Mutex<Events>,
    /// Wakes `process/read` waiters on every new event.
    changed: Notify,
    pub(super) stdin: Mutex<StdinState>,
    /// Stop requests for the pump.
    pub(super) stop: watch::Sender<Option<Stop>>,
    /// The pump; aborted when the session ends, which drops the guest.
    pub(super) task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Output the command may produce before it is stopped (max-output).
    pub(super) max_output: u64,
    /// `process/closed` has been handed to the connection (or dropped while
    /// detached): nothing more will come from this process.
    finished: AtomicBool,
    /// The command, shortened for logs and the admin API ([`summary`]).
    pub command: String,
    pub started: std::time::Instant,
    /// The command's resource counters, once its pump runs.
    pub(super) stats: std::sync::OnceLock<Arc<crate::exec::CommandStats>>,
}

/// A process's use so far ([`Process::usage_now`]): [`ProcessUsage`]
/// without the output count, which only the pump knows.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveUsage {
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    pub instances: u64,
}

/// The longest command text kept for logs and the admin API.
const SUMMARY_MAX: usize = 200;

/// A command for a log line: the line of `bash -lc LINE`, else the argv
/// joined; cut at [`SUMMARY_MAX`] bytes (on a character boundary).
pub fn summary(argv: &[String]) -> String {
    let text = match argv {
        [_, flag, line, ..] if flag.starts_with('-') && flag.contains('c') => line.clone(),
        _ => argv.join(" "),
    };
    if text.len() <= SUMMARY_MAX {
        return text;
    }
    let mut end = SUMMARY_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Process {
    pub fn new(
        id: String,
        tty: bool,
        stdin: Option<mpsc::Sender<Bytes>>,
        retain_limit: usize,
        max_output: u64,
        command: String,
    ) -> Arc<Self> {
        let writable = stdin.is_some();
        Arc::new(Self {
            id,
            tty,
            events: Mutex::new(Events::new(retain_limit)),
            changed: Notify::new(),
            stdin: Mutex::new(StdinState { tx: stdin, writable, ..Default::default() }),
            stop: watch::channel(None).0,
            task: Mutex::new(None),
            max_output,
            finished: Default::default(),
            command,
            started: std::time::Instant::now(),
            stats: Default::default(),
        })
    }

    /// Where the server's own notes on the process (a limit that stopped it)
    /// go: its terminal, or its stderr.
    pub(super) fn note_stream(&self) -> StreamKind {
        if self.tty { StreamKind::Pty } else { StreamKind::Stderr }
    }

    /// Whether the process's last notification has gone out.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub fn is_running(&self) -> bool {
        lock(&self.events).running()
    }

    /// What the process has used so far (final once it has exited), for
    /// the admin API.
    pub fn usage_now(&self) -> LiveUsage {
        let stats = self.stats.get();
        let load = |f: fn(&crate::exec::CommandStats) -> u64| stats.map_or(0, |s| f(s));
        let end = lock(&self.events).closed_at().unwrap_or_else(std::time::Instant::now);
        LiveUsage {
            wall_ms: end.saturating_duration_since(self.started).as_millis() as u64,
            cpu_ms: load(|s| s.cpu().as_millis() as u64),
            peak_memory_bytes: load(|s| s.peak_memory.load(Ordering::Relaxed)),
            instances: load(|s| s.instances.load(Ordering::Relaxed)),
        }
    }

    /// Closed for longer than `ttl`: the entry may be forgotten.
    pub fn expired(&self, ttl: Duration) -> bool {
        lock(&self.events).closed_at().is_some_and(|t| t.elapsed() > ttl)
    }

    /// Numbers an output chunk, wakes readers and sends `process/output`.
    pub(super) async fn emit_output(&self, emitter: &Emitter, stream: StreamName, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let seq = self.push(Event::Output(stream, data.clone()));
        let text = crate::protocol::process_output_json(&self.id, seq, stream, &data);
        emitter.send_text(text).await;
    }

    /// Numbers the exit, wakes readers and sends `process/exited`.
    pub(super) async fn emit_exited(&self, emitter: &Emitter, status: i32, usage: ProcessUsage) {
        let seq = self.push(Event::Exited(status));
        let n = ProcessExitedNotification {
            process_id: &self.id,
            seq,
            exit_code: status,
            sandbox_denied: false,
            usage: Some(usage),
        };
        emitter.send(method::PROCESS_EXITED, n).await;
    }

    /// Numbers the close (always the last event) and sends `process/closed`.
    pub(super) async fn emit_closed(&self, emitter: &Emitter) {
        let seq = self.push(Event::Closed);
        let n = ProcessClosedNotification { process_id: &self.id, seq };
        emitter.send(method::PROCESS_CLOSED, n).await;
    }

    /// Its last notification has gone out (to the connection's queue).
    pub(super) fn mark_finished(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// Records an event under the next `seq` and wakes `process/read`.
    fn push(&self, event: Event) -> u64 {
        let seq = lock(&self.events).push(event);
        self.changed.notify_waiters();
        seq
    }

    /// Bytes of output kept for `process/read`.
    pub fn retained_bytes(&self) -> usize {
        lock(&self.events).retained_bytes()
    }

    /// Forgets the kept output (a closed process, to bound the session's
    /// memory); `process/read` then returns no chunks for it, and its status.
    pub fn drop_retained(&self) {
        lock(&self.events).drop_retained();
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
        for typed in tty::discipline(&data) {
            match typed {
                Typed::Data(bytes) => {
                    let bytes = Bytes::from(bytes);
                    if let Some(echo) = &st.echo {
                        let _ = echo.try_send((StreamKind::Pty, bytes.clone()));
                    }
                    if let Some(tx) = &st.tx {
                        send_stdin(tx, bytes, max_buffer)?;
                    }
                }
                Typed::Interrupt => {
                    drop(st);
                    self.request_stop(Stop::Interrupt);
                    return Ok(WriteStatus::Accepted);
                }
                Typed::EndOfInput => st.tx = None,
            }
        }
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
                if ev.has_news(after) || tokio::time::Instant::now() >= deadline {
                    return ev.snapshot(after, max_bytes);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return lock(&self.events).snapshot(after, max_bytes);
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

/// Output stream of a chunk, as the wire names it.
pub(super) fn stream_name(kind: StreamKind) -> StreamName {
    match kind {
        StreamKind::Stdout => StreamName::Stdout,
        StreamKind::Stderr => StreamName::Stderr,
        StreamKind::Pty => StreamName::Pty,
    }
}

/// Locks, ignoring poisoning: the data behind these locks stays valid.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
