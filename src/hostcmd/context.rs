//! What a host command may touch: the workspace capability, the working
//! directory, and its three standard streams. Nothing else of the shell
//! that runs it reaches a host command (no variables, no functions, no
//! options), so the commands here can be read, and tested, as programs.
//!
//! The command line's host-memory budget comes in here too, as a [`Meter`]:
//! what a host command holds (apply_patch's files) is charged to it, like
//! the shell's own values. CPU time reaches host code through `crate::exec`'s
//! per-command scope (a task-local).

use crate::exec::Sink;
use crate::fs::Workspace;
use futures::future::BoxFuture;
use std::path::PathBuf;

/// Output went nowhere: the command ends at once with this status (141
/// when the reader has gone, as SIGPIPE would end it; 1 for any other
/// write error). The shell turns it into its own way of leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken(pub i32);

/// What a host command returns: its exit status, or [`Broken`].
pub type Status = Result<i32, Broken>;

/// A standard input a host command can drain. The shell's input is shared
/// with the commands around it, so it stays in the shell and lends itself
/// through this.
pub trait StdinSource: Sync {
    /// Everything left on the input, reading no further once more than
    /// `max` bytes are held.
    fn read_all(&self, max: usize) -> BoxFuture<'_, Vec<u8>>;
}

/// The host memory a command line may still take (the shell's budget,
/// sized by max-memory).
pub trait Meter: Sync {
    /// Takes `bytes` more, or says why not (the limit, named).
    fn take(&self, bytes: usize) -> Result<(), String>;
    /// Gives back what [`Meter::take`] took.
    fn give(&self, bytes: usize);
    /// Bytes that may still be taken.
    fn room(&self) -> usize;
}

/// Memory a host command holds against its line's [`Meter`], given back
/// when dropped.
pub struct Held<'a> {
    meter: &'a dyn Meter,
    bytes: usize,
}

impl Held<'_> {
    /// Takes `bytes` more, or says why not.
    pub fn take(&mut self, bytes: usize) -> Result<(), String> {
        self.meter.take(bytes)?;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.meter.give(self.bytes);
    }
}

/// The world of one host command.
pub struct Context<'a> {
    /// Every path a host command opens goes through this capability.
    pub workspace: &'a Workspace,
    /// The visible absolute working directory, inside the workspace.
    pub cwd: &'a str,
    stdin: &'a dyn StdinSource,
    stdout: &'a Sink,
    stderr: &'a Sink,
    meter: &'a dyn Meter,
}

/// Items a host loop handles between two yields (a directory entry stat-ed,
/// a file changed): well under a millisecond of work.
pub const YIELD_EVERY_ITEMS: usize = 256;

impl<'a> Context<'a> {
    /// Called for item `i` of a long host loop (a walk, a listing): every
    /// [`YIELD_EVERY_ITEMS`] it yields, so a stop request, the time limits
    /// and other tasks get in, and it says whether the command may go on
    /// (`false` once it is over its CPU budget).
    pub async fn checkpoint(&self, i: usize) -> bool {
        if !i.is_multiple_of(YIELD_EVERY_ITEMS) {
            return true;
        }
        tokio::task::yield_now().await;
        !crate::exec::scope::current_stats()
            .is_some_and(|s| s.cpu_limit_hit.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn new(
        workspace: &'a Workspace,
        cwd: &'a str,
        (stdin, stdout, stderr): (&'a dyn StdinSource, &'a Sink, &'a Sink),
        meter: &'a dyn Meter,
    ) -> Self {
        Self { workspace, cwd, stdin, stdout, stderr, meter }
    }

    /// Nothing held yet against the line's memory budget.
    pub fn held(&self) -> Held<'a> {
        Held { meter: self.meter, bytes: 0 }
    }

    /// Bytes of host memory the command may still take.
    pub fn room(&self) -> usize {
        self.meter.room()
    }

    /// Writes to stdout; a failed write ends the command ([`Broken`]).
    pub async fn out(&self, data: &[u8]) -> Result<(), Broken> {
        match self.stdout.write_all(data).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Broken(141)),
            Err(_) => Err(Broken(1)),
        }
    }

    /// Writes to stderr, ignoring errors (there is nowhere to report them).
    pub async fn err(&self, msg: &str) {
        let _ = self.stderr.write_all(msg.as_bytes()).await;
    }

    /// Standard input, up to about `max` bytes.
    pub async fn read_stdin(&self, max: usize) -> Vec<u8> {
        self.stdin.read_all(max).await
    }

    /// The root-relative path of a (possibly relative) path the command
    /// names, or `None` when it leaves the workspace.
    pub fn resolve(&self, path: &str) -> Option<PathBuf> {
        self.workspace.relative(&self.absolute(path))
    }

    /// A path made absolute against the working directory (not normalized).
    pub fn absolute(&self, path: &str) -> String {
        crate::fs::path::absolute(self.cwd, path)
    }
}
