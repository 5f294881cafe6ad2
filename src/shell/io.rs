//! The standard streams of the command being run: a shared standard input
//! that builtins (`read`) and guests take turns on, the output sinks, and
//! [`complain`], how a builtin reports an error on them.
//!
//! Standard input is shared the way a file descriptor is: `read` takes one
//! line and leaves the rest for the next command. A guest is handed the
//! input through a forwarder that runs beside it and puts the source back
//! afterwards, because wasmtime-wasi reads stdin ahead; inside a `while
//! read` loop a guest gets a closed stdin instead, so `wc -l "$f"` in the
//! body does not swallow the loop's input.

use super::state::{Outcome, Shell, Unwind};
use crate::exec::{PipeReader, Sink, Stdin};
use bytes::Bytes;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};

/// Where a shared input reads from.
pub enum Source {
    Closed,
    Pipe(PipeReader),
    File(std::fs::File),
}

pub struct InputState {
    pub source: Source,
    /// Bytes read from the source but not consumed yet.
    pub pending: Vec<u8>,
    /// The `read` builtin has taken lines from this input.
    pub read_by_builtin: bool,
}

/// A standard input shared by the commands of a list.
#[derive(Clone)]
pub struct Input(Arc<Mutex<InputState>>);

impl Input {
    fn from_source(source: Source, pending: Vec<u8>) -> Self {
        Self(Arc::new(Mutex::new(InputState { source, pending, read_by_builtin: false })))
    }

    pub fn closed() -> Self {
        Self::from_source(Source::Closed, Vec::new())
    }

    pub fn bytes(data: Vec<u8>) -> Self {
        Self::from_source(Source::Closed, data)
    }

    pub fn file(f: std::fs::File) -> Self {
        Self::from_source(Source::File(f), Vec::new())
    }

    pub fn pipe(r: PipeReader) -> Self {
        Self::from_source(Source::Pipe(r), Vec::new())
    }

    pub fn from_stdin(s: Stdin) -> Self {
        match s {
            Stdin::Closed => Self::closed(),
            Stdin::Pipe(p) => Self::pipe(p),
            Stdin::File(f) => Self::file(f),
        }
    }

    /// One line without its newline and whether a newline ended it, or
    /// `None` at end of input. A line longer than a variable may hold
    /// ([`MAX_VALUE`](super::state::MAX_VALUE)) comes in pieces of that size,
    /// so an endless line from a pipe is not gathered without end.
    pub async fn read_line(&self) -> Option<(String, bool)> {
        let mut st = self.0.lock().await;
        st.read_by_builtin = true;
        let mut searched = 0;
        loop {
            let found =
                st.pending[searched..].iter().position(|&b| b == b'\n').map(|p| p + searched);
            if found.is_none() && st.pending.len() >= super::state::MAX_VALUE {
                let rest = st.pending.split_off(super::state::MAX_VALUE);
                let line = std::mem::replace(&mut st.pending, rest);
                return Some((String::from_utf8_lossy(&line).into_owned(), false));
            }
            searched = st.pending.len();
            if let Some(pos) = found {
                let rest = st.pending.split_off(pos + 1);
                let mut line = std::mem::replace(&mut st.pending, rest);
                line.pop();
                return Some((String::from_utf8_lossy(&line).into_owned(), true));
            }
            if !fill(&mut st).await {
                if st.pending.is_empty() {
                    return None;
                }
                let line = std::mem::take(&mut st.pending);
                return Some((String::from_utf8_lossy(&line).into_owned(), false));
            }
        }
    }

    /// Everything left (for `xargs` and `mapfile`-like uses).
    pub async fn read_all(&self, max: usize) -> Vec<u8> {
        let mut st = self.0.lock().await;
        while st.pending.len() <= max && fill(&mut st).await {}
        std::mem::take(&mut st.pending)
    }

    /// Runs `f` with a `Stdin` made from this input, and takes the source
    /// back when it is done.
    pub async fn lend<F, Fut>(&self, in_read_loop: bool, f: F) -> i32
    where
        F: FnOnce(Stdin) -> Fut,
        Fut: std::future::Future<Output = i32>,
    {
        let mut st = self.0.lock().await;
        if in_read_loop && st.read_by_builtin {
            return f(Stdin::Closed).await;
        }
        let pending = std::mem::take(&mut st.pending);
        match &mut st.source {
            Source::Closed if pending.is_empty() => f(Stdin::Closed).await,
            Source::Closed => f(Stdin::from_bytes(Bytes::from(pending))).await,
            Source::File(file) => {
                if !pending.is_empty() {
                    let _ = file.seek(SeekFrom::Current(-(pending.len() as i64)));
                }
                match file.try_clone() {
                    Ok(dup) => f(Stdin::File(dup)).await,
                    Err(_) => f(Stdin::Closed).await,
                }
            }
            Source::Pipe(reader) => {
                let (tx, rx) = mpsc::channel::<Bytes>(1);
                let forward = async move {
                    if !pending.is_empty() && tx.send(Bytes::from(pending)).await.is_err() {
                        return;
                    }
                    while let Some(chunk) = reader.next_chunk().await {
                        if tx.send(chunk).await.is_err() {
                            return;
                        }
                    }
                };
                let run = f(Stdin::Pipe(PipeReader::from_channel(rx)));
                tokio::pin!(forward);
                tokio::pin!(run);
                let mut forwarding = true;
                loop {
                    tokio::select! {
                        status = &mut run => return status,
                        _ = &mut forward, if forwarding => forwarding = false,
                    }
                }
            }
        }
    }
}

/// How a host command (`apply_patch`) reads the shared input.
impl crate::hostcmd::StdinSource for Input {
    fn read_all(&self, max: usize) -> futures::future::BoxFuture<'_, Vec<u8>> {
        Box::pin(Input::read_all(self, max))
    }
}

/// Reads more of the source into `pending`; false at end of input.
async fn fill(st: &mut InputState) -> bool {
    match &mut st.source {
        Source::Closed => false,
        Source::Pipe(r) => match r.next_chunk().await {
            Some(c) => {
                st.pending.extend_from_slice(&c);
                true
            }
            None => false,
        },
        Source::File(f) => {
            let mut buf = [0u8; 8192];
            match f.read(&mut buf) {
                Ok(0) | Err(_) => false,
                Ok(n) => {
                    st.pending.extend_from_slice(&buf[..n]);
                    true
                }
            }
        }
    }
}

/// The streams of a command: stdin, stdout, stderr and numbered extras.
#[derive(Clone)]
pub struct Io {
    pub stdin: Input,
    pub stdout: Sink,
    pub stderr: Sink,
    /// File descriptors 3–9 opened with `3>file` and the like.
    pub extra: Vec<(i32, Sink)>,
    /// File descriptors 3–9 opened to read (`exec 3< file`); a copy reads
    /// on where the other left off, as a shared descriptor does.
    pub extra_in: Vec<(i32, Input)>,
}

impl Io {
    pub fn out_fd(&self, fd: i32) -> Option<Sink> {
        match fd {
            1 => Some(self.stdout.clone()),
            2 => Some(self.stderr.clone()),
            n => self.extra.iter().find(|(f, _)| *f == n).map(|(_, s)| s.clone()),
        }
    }

    pub fn set_fd(&mut self, fd: i32, sink: Sink) {
        match fd {
            1 => self.stdout = sink,
            2 => self.stderr = sink,
            n => {
                self.extra.retain(|(f, _)| *f != n);
                self.extra.push((n, sink));
            }
        }
    }

    /// Writes to stdout; a vanished reader ends this (sub)shell as SIGPIPE
    /// would (status 141).
    pub async fn out(&self, data: &[u8]) -> Result<(), Unwind> {
        write(&self.stdout, data).await
    }

    /// Writes to stderr, ignoring errors (there is nowhere to report them).
    pub async fn err(&self, msg: &str) {
        let _ = self.stderr.write_all(msg.as_bytes()).await;
    }
}

/// Prints a builtin's error as bash does (`bash: line N: NAME: MSG`) and
/// returns `status`.
pub async fn complain(sh: &Shell, io: &Io, name: &str, msg: &str, status: i32) -> Outcome {
    io.err(&format!("{}{name}: {msg}\n", sh.err_prefix())).await;
    Ok(status)
}

pub async fn write(sink: &Sink, data: &[u8]) -> Result<(), Unwind> {
    match sink.write_all(data).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Unwind::Exit(141)),
        Err(_) => Err(Unwind::Exit(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_line_leaves_the_rest() {
        let input = Input::bytes(b"one\ntwo\nthree".to_vec());
        assert_eq!(input.read_line().await, Some(("one".into(), true)));
        assert_eq!(input.read_line().await, Some(("two".into(), true)));
        assert_eq!(input.read_line().await, Some(("three".into(), false)));
        assert_eq!(input.read_line().await, None);
    }

    #[tokio::test]
    async fn lend_forwards_pending_then_source() {
        let (sink, reader) = crate::exec::pipe();
        let input = Input::pipe(reader);
        let w = async move {
            sink.write_all(b"a\nb\nc\n").await.expect("write");
        };
        w.await;
        assert_eq!(input.read_line().await, Some(("a".into(), true)));
        let got = input
            .lend(false, |stdin| async move {
                let mut r = stdin.into_async_read();
                let mut s = String::new();
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut r, &mut s).await;
                assert_eq!(s, "b\nc\n");
                0
            })
            .await;
        assert_eq!(got, 0);
    }
}
