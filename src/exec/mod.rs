//! Running commands as WebAssembly: the shared engine and tool registry
//! ([`engine`]), in-memory standard streams ([`stdio`]) and one guest run
//! ([`guest`]). [`Executor::run_command`] is the entry point the session
//! uses: it resolves `argv[0]` to a tool (or the shell) and turns the outcome
//! into an exit status as a native server would report it.
//!
//! This layer knows nothing of JSON-RPC: it takes argv, environment, a
//! working directory and streams, and returns a status.

pub mod engine;
pub mod guard;
pub mod guest;
pub mod stdio;

pub use engine::{EngineError, GuestPool, Runtime, Tool, ToolSource};
pub use guest::{GuestOutcome, GuestRequest};
pub use stdio::{OutputChunk, PipeReader, Sink, Stdin, StreamKind, pipe};

use crate::config::Limits;
use crate::fs::Workspace;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What one command (all the wasm instances of one command line) used, for
/// accounting and metrics. Recorded through a task-local, so the shell and
/// anything else between the session and the guests need not pass it along.
#[derive(Debug, Default)]
pub struct CommandStats {
    /// Epoch ticks the guests ran for: CPU time in units of [`engine::EPOCH_TICK`].
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

/// Epoch ticks of CPU time (20 ms) after which a command moves from the
/// interactive pool to its tenant's batch pool (see [`GuestPool`]).
pub const DEMOTE_TICKS: u64 = 4;

/// [`DEMOTE_TICKS`], or `WES_DEMOTE_TICKS` (0: never move).
pub fn demote_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::env::var("WES_DEMOTE_TICKS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEMOTE_TICKS, |t: u64| if t == 0 { u64::MAX } else { t })
    })
}

/// Runs a command's future where it is polled until it has used
/// [`DEMOTE_TICKS`] of CPU, then moves the rest of it to `batch` (a guest
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
        engine::EPOCH_TICK * self.epoch_ticks.load(Ordering::Relaxed) as u32
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

/// Exit status of a guest that trapped (as for SIGABRT).
pub const STATUS_TRAP: i32 = 134;
/// Exit status of a command stopped by a limit or killed (as for SIGKILL).
pub const STATUS_KILLED: i32 = 137;
/// Exit status of an interrupted command (as for SIGINT).
pub const STATUS_INTERRUPTED: i32 = 130;
/// Exit status of a command that does not exist.
pub const STATUS_NOT_FOUND: i32 = 127;

/// What every command of one workspace runs with.
#[derive(Clone)]
pub struct Executor {
    pub runtime: Arc<Runtime>,
    pub workspace: Workspace,
    pub limits: Limits,
}

/// One command to run, with its streams already wired.
pub struct CommandSpec {
    pub argv: Vec<String>,
    /// Replaces argv[0] as the program sees it.
    pub arg0: Option<String>,
    pub env: Vec<(String, String)>,
    /// The visible absolute working directory (already checked).
    pub cwd: String,
    pub stdin: Stdin,
    pub stdout: Sink,
    pub stderr: Sink,
    pub tty: bool,
}

/// `/usr/bin/cat` → `cat`.
pub fn command_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

impl Executor {
    /// Runs one argv-form command to completion and returns its exit status.
    pub async fn run_command(&self, spec: CommandSpec) -> i32 {
        let Some(argv0) = spec.argv.first() else {
            return STATUS_NOT_FOUND;
        };
        let name = command_name(argv0).to_owned();
        if let Some(inv) = crate::shell::Invocation::from_argv(&spec.argv) {
            return crate::shell::run(self, inv, spec).await;
        }
        let Some(tool) = self.runtime.tool(&name) else {
            let _ = spec.stderr.write_all(format!("{name}: command not found\n").as_bytes()).await;
            return STATUS_NOT_FOUND;
        };
        self.run_tool(&tool, spec).await
    }

    /// Runs a resolved tool with the given streams.
    pub async fn run_tool(&self, tool: &Tool, spec: CommandSpec) -> i32 {
        let mut argv = spec.argv;
        // Tools see their plain name as argv[0] (multicall binaries dispatch
        // on it exactly), unless the client asked for another.
        match (spec.arg0, argv.first_mut()) {
            (Some(arg0), Some(first)) => *first = arg0,
            (None, Some(first)) => *first = command_name(first).to_owned(),
            _ => {}
        }
        if !tool.args.is_empty() {
            argv.splice(1..1, tool.args.iter().cloned());
        }
        // ripgrep on WASI never notices piped stdin; say it explicitly.
        if tool.name == "rg" && !matches!(spec.stdin, Stdin::Closed) && !rg_has_path(&argv[1..]) {
            argv.push("-".into());
        }
        let name = argv.first().map(|a| command_name(a).to_owned()).unwrap_or_default();
        let mut env = spec.env;
        env.retain(|(k, _)| k != "PWD");
        env.push(("PWD".into(), spec.cwd.clone()));
        let stderr = spec.stderr.clone();
        let req = GuestRequest {
            argv,
            env,
            workspace: self.workspace.clone(),
            stdin: spec.stdin,
            stdout: spec.stdout,
            stderr: spec.stderr,
            tty: spec.tty,
            max_memory: self.limits.max_memory,
            max_cpu_ticks: (self.limits.max_cpu.as_nanos() / engine::EPOCH_TICK.as_nanos()).max(1)
                as u64,
        };
        let run = guest::run(&self.runtime, tool, req).await;
        if let Some(path) = &run.read_only_denied {
            let msg = format!(
                "{name}: {path}: this path is read-only for commands \
                 (a read-only area of the workspace)\n"
            );
            let _ = stderr.write_all(msg.as_bytes()).await;
        }
        if run.quota_denied {
            if let Some(q) = self.workspace.quota() {
                let e = crate::fs::QuotaExceeded { limit: q.limit(), used: q.used() };
                let _ = stderr.write_all(format!("{name}: {e}\n").as_bytes()).await;
            }
        }
        match run.outcome {
            GuestOutcome::Exited(code) => code,
            GuestOutcome::Trapped(msg) => {
                let _ = stderr.write_all(format!("{name}: wasm trap: {msg}\n").as_bytes()).await;
                STATUS_TRAP
            }
            GuestOutcome::CpuLimit => {
                let msg = format!(
                    "{name}: CPU time limit exceeded (max-cpu is {:?})\n",
                    self.limits.max_cpu
                );
                let _ = stderr.write_all(msg.as_bytes()).await;
                STATUS_KILLED
            }
            GuestOutcome::MemoryLimit(limit) => {
                let _ = stderr
                    .write_all(
                        format!(
                            "{name}: memory limit exceeded (max-memory is {} MiB)\n",
                            limit >> 20
                        )
                        .as_bytes(),
                    )
                    .await;
                STATUS_KILLED
            }
        }
    }
}

/// Whether ripgrep's arguments name a path to search (else it would search
/// the working directory instead of reading stdin).
fn rg_has_path(args: &[String]) -> bool {
    // Options that take a value as the next argument.
    const WITH_VALUE: &[&str] = &[
        "-e",
        "--regexp",
        "-f",
        "--file",
        "-g",
        "--glob",
        "--iglob",
        "-t",
        "--type",
        "-T",
        "--type-not",
        "-m",
        "--max-count",
        "-A",
        "--after-context",
        "-B",
        "--before-context",
        "-C",
        "--context",
        "-j",
        "--threads",
        "-M",
        "--max-columns",
        "-d",
        "--max-depth",
        "-E",
        "--encoding",
        "--type-add",
        "-r",
        "--replace",
        "--sort",
        "--sortr",
        "--color",
        "--colors",
        "--max-filesize",
        "--path-separator",
        "--context-separator",
        "--field-match-separator",
        "--field-context-separator",
        "--pre",
        "--pre-glob",
        "--engine",
        "--dfa-size-limit",
        "--regex-size-limit",
    ];
    let mut positional = Vec::new();
    let mut pattern_given = false;
    let mut files_mode = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            positional.extend(args[i + 1..].iter().map(String::as_str));
            break;
        }
        if a == "--files" || a == "--type-list" {
            files_mode = true;
        }
        if matches!(a, "-e" | "--regexp" | "-f" | "--file")
            || a.starts_with("--regexp=")
            || a.starts_with("--file=")
        {
            pattern_given = true;
        }
        if WITH_VALUE.contains(&a) {
            i += 2;
            continue;
        }
        if a.starts_with('-') && a != "-" {
            i += 1;
            continue;
        }
        positional.push(a);
        i += 1;
    }
    let paths = if pattern_given || files_mode {
        positional.len()
    } else {
        positional.len().saturating_sub(1)
    };
    paths > 0 || files_mode
}

#[cfg(test)]
mod tests {
    use super::rg_has_path;

    fn has(args: &[&str]) -> bool {
        rg_has_path(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn ripgrep_path_detection() {
        assert!(!has(&["foo"]));
        assert!(!has(&["-n", "-i", "foo"]));
        assert!(!has(&["-e", "foo"]));
        assert!(!has(&["-A", "2", "foo"]));
        assert!(has(&["foo", "src"]));
        assert!(has(&["-e", "foo", "src"]));
        assert!(has(&["--files"]));
        assert!(has(&["foo", "-"]));
        assert!(has(&["-g", "*.rs", "foo", "."]));
    }
}
