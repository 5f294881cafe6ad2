//! Standard streams for guests and host builtins: where bytes go ([`Sink`])
//! and where they come from ([`Stdin`], [`pipe`]).
//!
//! Everything is in memory and bounded: a pipe is a channel of byte chunks
//! with a fixed number of slots, so a fast writer waits for a slow reader
//! (backpressure), and a writer whose reader is gone gets `BrokenPipe`
//! (`yes | head -1` ends at once). Guests see these through wasmtime-wasi's
//! async stdio adapters; builtins call [`Sink::write_all`] directly, so both
//! write to the same pipes.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Largest chunk handed on in one piece (the reference uses 8 KiB for pipes).
pub const CHUNK: usize = 8 * 1024;

/// Largest chunk of a process's own output handed to the session in one
/// piece: larger than [`CHUNK`] because each becomes (part of) a message.
pub const OUTPUT_CHUNK: usize = 32 * 1024;

/// Slots in a pipe between two commands: 16 × 8 KiB of buffering.
const PIPE_SLOTS: usize = 16;

/// Which output stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
    /// Merged stdout and stderr of a terminal-mode process.
    Pty,
}

/// Output of a process on its way to the client: the stream and the bytes.
pub type OutputChunk = (StreamKind, Bytes);

/// Where a stream's bytes go. Cloning shares the destination (`2>&1`).
#[derive(Clone, Debug)]
pub enum Sink {
    /// `/dev/null`.
    Null,
    /// The process's own output, which the session numbers and sends.
    Output { tx: mpsc::Sender<OutputChunk>, stream: StreamKind },
    /// The write end of a pipe to another command.
    Pipe(mpsc::Sender<Bytes>),
    /// A file inside the workspace, opened through the capability.
    File(Arc<FileSink>),
}

/// A file a stream writes to (a shell redirection), counted against the
/// workspace's disk quota as it grows.
#[derive(Debug)]
pub struct FileSink {
    /// The file, and what it occupied after the last write (as the quota
    /// counted it).
    file: Mutex<(std::fs::File, u64)>,
    quota: Option<Arc<crate::fs::DiskQuota>>,
}

impl FileSink {
    /// `file` is counted in the quota at what it occupies now; every write
    /// is then checked beforehand and counted by what the file occupies
    /// after it.
    pub fn new(file: std::fs::File, quota: Option<Arc<crate::fs::DiskQuota>>) -> Self {
        let held = crate::fs::quota::occupied_file(&file);
        Self { file: Mutex::new((file, held)), quota }
    }
}

impl Sink {
    /// Writes everything, waiting for room in a pipe. `BrokenPipe` when the
    /// reader is gone.
    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Null => Ok(()),
            Sink::Output { tx, stream } => {
                for part in data.chunks(OUTPUT_CHUNK) {
                    tx.send((*stream, Bytes::copy_from_slice(part))).await.map_err(broken)?;
                }
                Ok(())
            }
            Sink::Pipe(tx) => {
                for part in data.chunks(CHUNK) {
                    tx.send(Bytes::copy_from_slice(part)).await.map_err(broken)?;
                }
                Ok(())
            }
            Sink::File(f) => write_file(f, data),
        }
    }

    /// An `AsyncWrite` over this sink, for wasmtime-wasi.
    pub fn writer(&self) -> SinkWriter {
        match self {
            Sink::Null => SinkWriter::Null,
            Sink::Output { tx, stream } => SinkWriter::Output(PollSender::new(tx.clone()), *stream),
            Sink::Pipe(tx) => SinkWriter::Pipe(PollSender::new(tx.clone())),
            Sink::File(f) => SinkWriter::File(f.clone()),
        }
    }
}

/// `EPIPE` with its OS code, so wasmtime-wasi hands the guest `EPIPE` (and
/// `yes | head -1` ends quietly) instead of a generic I/O error.
fn broken<E>(_: E) -> io::Error {
    io::Error::from_raw_os_error(32)
}

fn write_file(f: &FileSink, data: &[u8]) -> io::Result<()> {
    let mut guard = f.file.lock().map_err(|_| io::Error::other("file lock poisoned"))?;
    let (file, held) = &mut *guard;
    if let Some(q) = &f.quota {
        q.check(data.len() as u64 + crate::fs::quota::WRITE_SLACK)?;
    }
    let result = io::Write::write_all(file, data);
    if let Some(q) = &f.quota {
        let now = crate::fs::quota::occupied_file(file);
        q.add(now as i64 - *held as i64);
        *held = now;
    }
    result
}

/// The `AsyncWrite` side of a [`Sink`].
pub enum SinkWriter {
    Null,
    Output(PollSender<OutputChunk>, StreamKind),
    Pipe(PollSender<Bytes>),
    File(Arc<FileSink>),
}

impl AsyncWrite for SinkWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(CHUNK);
        match self.get_mut() {
            SinkWriter::Null => Poll::Ready(Ok(buf.len())),
            SinkWriter::Output(tx, stream) => {
                let n = buf.len().min(OUTPUT_CHUNK);
                ready!(tx.poll_reserve(cx)).map_err(broken)?;
                tx.send_item((*stream, Bytes::copy_from_slice(&buf[..n]))).map_err(broken)?;
                Poll::Ready(Ok(n))
            }
            SinkWriter::Pipe(tx) => {
                ready!(tx.poll_reserve(cx)).map_err(broken)?;
                tx.send_item(Bytes::copy_from_slice(&buf[..n])).map_err(broken)?;
                Poll::Ready(Ok(n))
            }
            SinkWriter::File(f) => Poll::Ready(write_file(f, buf).map(|()| buf.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SinkWriter::Output(tx, _) => tx.close(),
            SinkWriter::Pipe(tx) => tx.close(),
            _ => {}
        }
        Poll::Ready(Ok(()))
    }
}

/// A new in-memory pipe with backpressure.
pub fn pipe() -> (Sink, PipeReader) {
    let (tx, rx) = mpsc::channel(PIPE_SLOTS);
    (Sink::Pipe(tx), PipeReader { rx, buf: Bytes::new() })
}

/// The read end of a [`pipe`]: end-of-file once every writer is gone.
#[derive(Debug)]
pub struct PipeReader {
    rx: mpsc::Receiver<Bytes>,
    /// The rest of a chunk the last read did not take.
    buf: Bytes,
}

impl PipeReader {
    /// A reader fed by an existing channel (the session's stdin writer).
    pub fn from_channel(rx: mpsc::Receiver<Bytes>) -> Self {
        Self { rx, buf: Bytes::new() }
    }

    /// The next chunk, or `None` at end of input (for host builtins).
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() {
            return Some(std::mem::take(&mut self.buf));
        }
        self.rx.recv().await
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.buf.is_empty() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(chunk) => this.buf = chunk,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.buf.len().min(out.remaining());
        out.put_slice(&this.buf.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// Where a command's standard input comes from.
pub enum Stdin {
    /// Closed: reads see end-of-file at once.
    Closed,
    /// A pipe, the client's `process/write`, or a here-document.
    Pipe(PipeReader),
    /// A file inside the workspace (`< file`).
    File(std::fs::File),
}

impl std::fmt::Debug for Stdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stdin::Closed => f.write_str("Stdin::Closed"),
            Stdin::Pipe(_) => f.write_str("Stdin::Pipe"),
            Stdin::File(_) => f.write_str("Stdin::File"),
        }
    }
}

impl Stdin {
    /// Bytes already known, as a stdin (here-documents and here-strings).
    pub fn from_bytes(data: Bytes) -> Self {
        let (tx, rx) = mpsc::channel(1);
        // A fresh channel with one slot always has room for one message.
        let _ = tx.try_send(data);
        Stdin::Pipe(PipeReader::from_channel(rx))
    }

    /// An `AsyncRead` for wasmtime-wasi.
    pub fn into_async_read(self) -> Box<dyn AsyncRead + Send + Sync + Unpin> {
        match self {
            Stdin::Closed => Box::new(tokio::io::empty()),
            Stdin::Pipe(p) => Box::new(p),
            Stdin::File(f) => Box::new(tokio::fs::File::from_std(f)),
        }
    }
}

/// A guest's stdout or stderr as a WASI output stream that writes straight
/// into its [`Sink`], on the guest's own thread: a permit on the channel is
/// taken when the guest asks how much it may write, and the write uses it.
/// (wasmtime-wasi's `AsyncStdoutStream` instead hands every write to a
/// task of its own, spawned where the guest started: two thread hops per
/// write, and more once a long command has moved to its batch pool.)
pub struct SinkStream {
    sink: Sink,
    permit: Permit,
}

enum Permit {
    None,
    Output(mpsc::OwnedPermit<OutputChunk>),
    Pipe(mpsc::OwnedPermit<Bytes>),
    /// The reader is gone: every write fails with EPIPE.
    Closed,
}

/// Takes a slot in `tx` for the next write of up to `chunk` bytes: `Ok(0)`
/// while the channel is full (the guest is told to wait), EPIPE once the
/// reader is gone.
fn reserve<T>(
    tx: &mpsc::Sender<T>,
    wrap: fn(mpsc::OwnedPermit<T>) -> Permit,
    chunk: usize,
    permit: &mut Permit,
) -> wasmtime_wasi::p2::StreamResult<usize> {
    use tokio::sync::mpsc::error::TrySendError;
    match tx.clone().try_reserve_owned() {
        Ok(p) => {
            *permit = wrap(p);
            Ok(chunk)
        }
        Err(TrySendError::Full(_)) => Ok(0),
        Err(TrySendError::Closed(_)) => {
            *permit = Permit::Closed;
            Err(epipe())
        }
    }
}

impl SinkStream {
    pub fn new(sink: Sink) -> Self {
        Self { sink, permit: Permit::None }
    }
}

/// A guest's write to a pipe nobody reads any more ends the guest as SIGPIPE
/// ends a Linux program: at once, silently, with status 141 (128 + 13). Told
/// `EPIPE` instead, most tools print "write failed: Broken pipe" where bash
/// prints nothing (`sort | head -1`).
pub const STATUS_SIGPIPE: i32 = 141;

fn epipe() -> wasmtime_wasi::p2::StreamError {
    wasmtime_wasi::p2::StreamError::Trap(wasmtime_wasi::I32Exit(STATUS_SIGPIPE).into())
}

impl wasmtime_wasi::p2::OutputStream for SinkStream {
    fn write(&mut self, bytes: Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match (&self.sink, std::mem::replace(&mut self.permit, Permit::None)) {
            (Sink::Null, _) => Ok(()),
            (Sink::File(f), _) => write_file(f, &bytes)
                .map_err(|e| wasmtime_wasi::p2::StreamError::LastOperationFailed(e.into())),
            (Sink::Output { stream, .. }, Permit::Output(p)) => {
                p.send((*stream, bytes));
                Ok(())
            }
            (Sink::Pipe(_), Permit::Pipe(p)) => {
                p.send(bytes);
                Ok(())
            }
            (_, Permit::Closed) => {
                self.permit = Permit::Closed;
                Err(epipe())
            }
            _ => Err(wasmtime_wasi::p2::StreamError::Trap(wasmtime::Error::msg(
                "write without a permit",
            ))),
        }
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        match (&self.sink, &self.permit) {
            (Sink::Null | Sink::File(_), _) => Ok(OUTPUT_CHUNK),
            (_, Permit::Closed) => Err(epipe()),
            (Sink::Output { .. }, Permit::Output(_)) => Ok(OUTPUT_CHUNK),
            (Sink::Pipe(_), Permit::Pipe(_)) => Ok(CHUNK),
            (Sink::Output { tx, .. }, _) => {
                reserve(tx, Permit::Output, OUTPUT_CHUNK, &mut self.permit)
            }
            (Sink::Pipe(tx), _) => reserve(tx, Permit::Pipe, CHUNK, &mut self.permit),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for SinkStream {
    async fn ready(&mut self) {
        if !matches!(self.permit, Permit::None) {
            return;
        }
        self.permit = match &self.sink {
            Sink::Output { tx, .. } => {
                tx.clone().reserve_owned().await.map_or(Permit::Closed, Permit::Output)
            }
            Sink::Pipe(tx) => tx.clone().reserve_owned().await.map_or(Permit::Closed, Permit::Pipe),
            Sink::Null | Sink::File(_) => Permit::None,
        };
    }
}

/// A pipe as a guest's stdin, read on the guest's own thread (as
/// [`SinkStream`] writes): no reader task in between.
pub struct PipeStream {
    reader: Arc<tokio::sync::Mutex<PipeState>>,
}

struct PipeState {
    pipe: PipeReader,
    /// The writer is gone and everything was read.
    eof: bool,
}

impl PipeStream {
    pub fn new(pipe: PipeReader) -> Self {
        Self { reader: Arc::new(tokio::sync::Mutex::new(PipeState { pipe, eof: false })) }
    }

    /// Another handle on the same pipe (WASI may ask for the stream twice).
    pub fn share(&self) -> Self {
        Self { reader: self.reader.clone() }
    }
}

impl wasmtime_wasi::p2::InputStream for PipeStream {
    fn read(&mut self, size: usize) -> wasmtime_wasi::p2::StreamResult<Bytes> {
        use tokio::sync::mpsc::error::TryRecvError;
        let Ok(mut state) = self.reader.try_lock() else { return Ok(Bytes::new()) };
        if state.pipe.buf.is_empty() {
            if state.eof {
                return Err(wasmtime_wasi::p2::StreamError::Closed);
            }
            match state.pipe.rx.try_recv() {
                Ok(chunk) => state.pipe.buf = chunk,
                Err(TryRecvError::Empty) => return Ok(Bytes::new()),
                Err(TryRecvError::Disconnected) => {
                    state.eof = true;
                    return Err(wasmtime_wasi::p2::StreamError::Closed);
                }
            }
        }
        let n = size.min(state.pipe.buf.len());
        Ok(state.pipe.buf.split_to(n))
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for PipeStream {
    async fn ready(&mut self) {
        let mut state = self.reader.lock().await;
        if !state.pipe.buf.is_empty() || state.eof {
            return;
        }
        match state.pipe.rx.recv().await {
            Some(chunk) => state.pipe.buf = chunk,
            None => state.eof = true,
        }
    }
}

/// The most a guest's read of a `< file` stdin takes at once.
const FILE_READ_CHUNK: usize = 64 * 1024;

/// A regular workspace file as a guest's stdin (`< file`), read on the
/// guest's own thread as the guest's other files are. wasmtime-wasi's
/// `AsyncStdinStream` would spawn a reader task for it, which hands every
/// read to the blocking pool.
pub struct FileStream {
    file: Arc<std::fs::File>,
}

impl FileStream {
    pub fn new(file: Arc<std::fs::File>) -> Self {
        Self { file }
    }
}

impl wasmtime_wasi::p2::InputStream for FileStream {
    fn read(&mut self, size: usize) -> wasmtime_wasi::p2::StreamResult<Bytes> {
        use std::io::Read;
        if size == 0 {
            return Ok(Bytes::new());
        }
        let mut buf = vec![0; size.min(FILE_READ_CHUNK)];
        loop {
            return match (&*self.file).read(&mut buf) {
                Ok(0) => Err(wasmtime_wasi::p2::StreamError::Closed),
                Ok(n) => {
                    buf.truncate(n);
                    Ok(Bytes::from(buf))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(wasmtime_wasi::p2::StreamError::LastOperationFailed(e.into())),
            };
        }
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for FileStream {
    /// A regular file is always ready: a read returns what is there.
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn pipe_carries_bytes_and_ends_when_writer_drops() {
        let (sink, mut reader) = pipe();
        let w = tokio::spawn(async move {
            let mut w = sink.writer();
            w.write_all(&vec![7u8; 100_000]).await.expect("write");
        });
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.expect("read");
        w.await.expect("writer");
        assert_eq!(got.len(), 100_000);
    }

    #[tokio::test]
    async fn writer_gets_broken_pipe_when_reader_is_gone() {
        let (sink, reader) = pipe();
        drop(reader);
        let e = sink.write_all(b"x").await.expect_err("reader gone");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn here_document_stdin_reads_back() {
        let mut r = Stdin::from_bytes(Bytes::from_static(b"abc\n")).into_async_read();
        let mut s = String::new();
        r.read_to_string(&mut s).await.expect("read");
        assert_eq!(s, "abc\n");
    }
}
