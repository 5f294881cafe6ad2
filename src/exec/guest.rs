//! One run of one guest: a fresh store and instance from a tool's
//! `InstancePre`, WASI set up deny-by-default, `_start` called, the outcome
//! sorted as wasmtime's `run` command does (`I32Exit` → status, trap → failure).
//!
//! The WASI context grants exactly: the argv and environment given, the
//! workspace preopened at its visible path (nothing else on the host), the
//! streams given, and no network. Memory is capped by a `ResourceLimiter`;
//! time is bounded by the caller, who may drop the future at any epoch tick
//! (that is how terminate, interrupt and deadlines stop a spinning guest).

use super::engine::{Runtime, Tool};
use super::guard::{Area, FsGuard};
use super::scope::CommandStats;
use super::state::{GuestState, MemoryLimiter};
use super::stdio::{Sink, Stdin};
use crate::fs::Workspace;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::cli::{AsyncStdinStream, IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Everything one guest run needs.
pub struct GuestRequest {
    /// argv, with argv[0] as the program should see it.
    pub argv: Vec<String>,
    /// The complete environment; nothing of the server's own is added.
    pub env: Vec<(String, String)>,
    /// The workspace, preopened at its visible path, with its read-only
    /// `/` skeleton and private `/tmp` beside it.
    pub workspace: Workspace,
    pub stdin: Stdin,
    pub stdout: Sink,
    pub stderr: Sink,
    /// Report stdio as a terminal (`tty: true`).
    pub tty: bool,
    /// Linear memory cap in bytes.
    pub max_memory: usize,
    /// CPU budget in epoch ticks, for the whole command when it runs with
    /// [`super::with_scope`], else for this instance.
    pub max_cpu_ticks: u64,
}

/// How a guest run ended, before it is turned into an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// `proc_exit(n)` or a return from `_start` (0).
    Exited(i32),
    /// A trap (unreachable, out-of-bounds, stack overflow) or a failed setup.
    Trapped(String),
    /// The guest tried to grow memory past the cap.
    MemoryLimit(usize),
    /// The command used up its CPU budget.
    CpuLimit,
}

/// Wraps a stream to report it as a terminal (or not).
struct Terminal<S> {
    inner: S,
    tty: bool,
}

impl<S> IsTerminal for Terminal<S> {
    fn is_terminal(&self) -> bool {
        self.tty
    }
}

impl<S: StdoutStream> StdoutStream for Terminal<S> {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        self.inner.async_stream()
    }
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        self.inner.p2_stream()
    }
}

impl<S: StdinStream> StdinStream for Terminal<S> {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        self.inner.async_stream()
    }
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::InputStream> {
        self.inner.p2_stream()
    }
}

/// A guest's stdin read on the guest's own thread, with no task in between
/// (wasmtime-wasi's `AsyncStdinStream` spawns a reader task per guest).
enum ThreadStdin {
    /// A pipe ([`super::stdio::PipeStream`]).
    Pipe(super::stdio::PipeStream),
    /// Closed: reads see end-of-file at once.
    Closed,
    /// A regular file ([`super::stdio::FileStream`]).
    File(Arc<std::fs::File>),
}

impl IsTerminal for ThreadStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for ThreadStdin {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        // Only WASIp3 asks for this; p1 guests read through `p2_stream`.
        Box::new(tokio::io::empty())
    }
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::InputStream> {
        match self {
            ThreadStdin::Pipe(pipe) => Box::new(pipe.share()),
            ThreadStdin::Closed => Box::new(wasmtime_wasi::p2::pipe::ClosedInputStream),
            ThreadStdin::File(file) => Box::new(super::stdio::FileStream::new(file.clone())),
        }
    }
}

/// A [`Sink`] as a guest's stdout or stderr: writes go straight into it
/// from the guest's thread ([`super::stdio::SinkStream`]).
struct SinkOut(Sink);

impl IsTerminal for SinkOut {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for SinkOut {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.0.writer())
    }
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(super::stdio::SinkStream::new(self.0.clone()))
    }
}

/// How a run ended, and what the write guard refused on the way.
#[derive(Debug)]
pub struct GuestRun {
    pub outcome: GuestOutcome,
    /// The first write refused in a read-only area (visible path).
    pub read_only_denied: Option<String>,
    /// A write was refused for the disk quota.
    pub quota_denied: bool,
}

/// Runs `tool` to completion. Cancel by dropping the future.
pub async fn run(rt: &Runtime, tool: &Tool, req: GuestRequest) -> GuestRun {
    let max_memory = req.max_memory;
    let stats = super::scope::current_stats();
    // One command may hold only so many of the instance slots every tenant
    // shares (a pipeline of a thousand stages would take them all).
    let _live = match &stats {
        Some(s) => {
            s.instances.fetch_add(1, Ordering::Relaxed);
            match super::scope::LiveInstance::take(s) {
                Ok(live) => Some(live),
                Err(limit) => {
                    let outcome = GuestOutcome::Trapped(limit);
                    return GuestRun { outcome, read_only_denied: None, quota_denied: false };
                }
            }
        }
        None => None,
    };
    let argv = req.argv.clone();
    let mut store = match build_store(rt, req, stats.clone()) {
        Ok(s) => s,
        Err(e) => {
            let outcome = GuestOutcome::Trapped(format!("could not set up the sandbox: {e:#}"));
            return GuestRun { outcome, read_only_denied: None, quota_denied: false };
        }
    };
    // Timed as guest work, which the command's host meter leaves out (the
    // epoch ticks count it).
    let result = super::scope::in_guest(async {
        let instance = tool.pre.instantiate_async(&mut store).await?;
        match instance.get_typed_func::<(), ()>(&mut store, "_start") {
            Ok(start) => start.call_async(&mut store, ()).await,
            Err(e) if instance.get_export(&mut store, REACTOR_MAIN).is_some() => {
                drop(e);
                run_reactor(&mut store, &instance, &argv).await
            }
            Err(e) => Err(e),
        }
    })
    .await;
    let hit = store.data().limiter.hit;
    let outcome = if store.data().cpu_exhausted {
        GuestOutcome::CpuLimit
    } else {
        classify(result, hit, max_memory)
    };
    if let Some(s) = &stats {
        s.peak_memory.fetch_max(store.data().limiter.peak as u64, Ordering::Relaxed);
        match outcome {
            GuestOutcome::Trapped(_) => s.trapped.store(true, Ordering::Relaxed),
            GuestOutcome::MemoryLimit(_) => s.memory_limit_hit.store(true, Ordering::Relaxed),
            GuestOutcome::CpuLimit => s.cpu_limit_hit.store(true, Ordering::Relaxed),
            GuestOutcome::Exited(_) => {}
        }
    }
    let guard = &mut store.data_mut().guard;
    GuestRun {
        outcome,
        read_only_denied: guard.read_only_denied.take(),
        quota_denied: guard.quota_denied,
    }
}

/// The entry point of a tool built as a WASI reactor instead of a command:
/// zeroperl (`perl`), whose `zeroperl_init_with_args(argc, argv)` parses
/// and runs a Perl command line and returns its exit status.
const REACTOR_MAIN: &str = "zeroperl_init_with_args";

/// Runs a reactor tool: `_initialize`, then its main with `argv` copied
/// into its memory (with its own `malloc`), then a flush of its buffered
/// output. The status it returns ends it as `proc_exit` would.
async fn run_reactor(
    store: &mut Store<GuestState>,
    instance: &wasmtime::Instance,
    argv: &[String],
) -> wasmtime::Result<()> {
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize") {
        init.call_async(&mut *store, ()).await?;
    }
    let malloc = instance.get_typed_func::<i32, i32>(&mut *store, "malloc")?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| wasmtime::Error::msg("the reactor exports no memory"))?;
    let mut pointers = Vec::with_capacity(argv.len() * 4);
    for a in argv {
        let mut bytes = a.as_bytes().to_vec();
        bytes.push(0);
        let len = i32::try_from(bytes.len())?;
        let at = malloc.call_async(&mut *store, len).await?;
        if at == 0 {
            return Err(wasmtime::Error::msg("the reactor is out of memory for its arguments"));
        }
        memory.write(&mut *store, at as u32 as usize, &bytes)?;
        pointers.extend_from_slice(&at.to_le_bytes());
    }
    let table = malloc.call_async(&mut *store, i32::try_from(pointers.len())?.max(4)).await?;
    if table == 0 {
        return Err(wasmtime::Error::msg("the reactor is out of memory for its arguments"));
    }
    memory.write(&mut *store, table as u32 as usize, &pointers)?;
    // The C library starts in `/`, and zeroperl exports no chdir: a first
    // interpreter changes into $PWD (the process's, kept after it is
    // freed), so relative paths in the command line work.
    let funcs = (
        instance.get_typed_func::<(), i32>(&mut *store, "zeroperl_init"),
        instance.get_typed_func::<(i32, i32, i32, i32), i32>(&mut *store, "zeroperl_eval"),
        instance.get_typed_func::<(), ()>(&mut *store, "zeroperl_free_interpreter"),
    );
    if let (Ok(init), Ok(eval), Ok(free)) = funcs {
        const CHDIR: &[u8] = b"chdir($ENV{PWD}) if defined $ENV{PWD};\0";
        let code = malloc.call_async(&mut *store, CHDIR.len() as i32).await?;
        if code != 0 && init.call_async(&mut *store, ()).await? == 0 {
            memory.write(&mut *store, code as u32 as usize, CHDIR)?;
            eval.call_async(&mut *store, (code, 0, 0, 0)).await?;
            free.call_async(&mut *store, ()).await?;
        }
    }
    let main = instance.get_typed_func::<(i32, i32), i32>(&mut *store, REACTOR_MAIN)?;
    let status = main.call_async(&mut *store, (i32::try_from(argv.len())?, table)).await?;
    if let Ok(flush) = instance.get_typed_func::<(), i32>(&mut *store, "zeroperl_flush") {
        flush.call_async(&mut *store, ()).await?;
    }
    match status & 0xff {
        0 => Ok(()),
        code => Err(wasmtime_wasi::I32Exit(code).into()),
    }
}

fn classify(result: wasmtime::Result<()>, hit: bool, max_memory: usize) -> GuestOutcome {
    match result {
        Ok(()) => GuestOutcome::Exited(0),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                GuestOutcome::Exited(exit.0)
            } else if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
                GuestOutcome::Trapped(
                    "the server is running as many wasm instances as it can; try again".into(),
                )
            } else if hit {
                GuestOutcome::MemoryLimit(max_memory)
            } else if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
                GuestOutcome::Trapped(format!("{trap}"))
            } else {
                GuestOutcome::Trapped(format!("{e:#}").lines().next().unwrap_or("trap").to_owned())
            }
        }
    }
}

fn build_store(
    rt: &Runtime,
    req: GuestRequest,
    stats: Option<Arc<CommandStats>>,
) -> wasmtime::Result<Store<GuestState>> {
    let req_max_cpu_ticks = req.max_cpu_ticks;
    let mut b = WasiCtxBuilder::new();
    b.args(&req.argv);
    b.envs(&req.env);
    // Filesystem calls may block this (guest) thread: much faster than a
    // hop to the blocking pool and back for every read, stat and readdir.
    // The preopens capture the flag when made, and every descriptor the
    // guest opens takes the context's. With the flag wasmtime-wasi would
    // also implement a plain `sleep` as `std::thread::sleep`, which no
    // limit could interrupt: the guard answers that call itself, with a
    // timer (`guard::add_to_linker`, `poll_oneoff`).
    b.allow_blocking_current_thread(true);
    let ws = &req.workspace;
    let visible_root = ws.visible_root();
    // The guard needs to know which descriptor is which preopen (fd 3 on).
    let mut preopens = vec![Area::Workspace];
    b.preopened_dir(ws.host_root(), visible_root, FsPerms::ReadWrite)?;
    // wasi-libc resolves a path through the preopen with the longest
    // matching prefix, so the workspace wins over the skeleton at `/`.
    if let Some(scratch) = ws.scratch() {
        if visible_root != "/" {
            b.preopened_dir(scratch.skeleton(), "/", FsPerms::ReadOnly)?;
            preopens.push(Area::Skeleton);
        }
        if visible_root != "/tmp" {
            b.preopened_dir(scratch.tmp(), "/tmp", FsPerms::ReadWrite)?;
            preopens.push(Area::Tmp);
        }
    }
    // Each stdin is read on the guest's thread, with no task behind it,
    // except a `< file` that is not a regular file (a fifo may block).
    // wasmtime-wasi's `AsyncStdinStream` spawns a reader task per guest,
    // and waking a pool thread for that task took a part of every short
    // command's time.
    let tty = req.tty;
    let on_thread = match req.stdin {
        Stdin::Pipe(pipe) => Ok(ThreadStdin::Pipe(super::stdio::PipeStream::new(pipe))),
        Stdin::Closed => Ok(ThreadStdin::Closed),
        Stdin::File(f) if f.metadata().is_ok_and(|m| m.is_file()) => {
            Ok(ThreadStdin::File(Arc::new(f)))
        }
        other => Err(other),
    };
    match on_thread {
        Ok(inner) => b.stdin(Terminal { inner, tty }),
        Err(other) => {
            b.stdin(Terminal { inner: AsyncStdinStream::new(other.into_async_read()), tty })
        }
    };
    b.stdout(Terminal { inner: SinkOut(req.stdout), tty: req.tty });
    b.stderr(Terminal { inner: SinkOut(req.stderr), tty: req.tty });
    let wasi = b.build_p1();
    let guard = FsGuard::new(req.workspace, &preopens);
    let mut store = Store::new(
        &rt.engine,
        GuestState {
            wasi,
            guard,
            limiter: MemoryLimiter::new(req.max_memory),
            cpu_exhausted: false,
        },
    );
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    // Yield to the scheduler at every tick (so a spinning guest never holds a
    // thread and can be stopped), counting ticks as the CPU estimate.
    let max_ticks = req_max_cpu_ticks;
    let demote_ticks = rt.tuning.demote_ticks;
    let mut own_ticks = 0u64;
    store.epoch_deadline_callback(move |mut cx| {
        own_ticks += 1;
        let used = match &stats {
            Some(s) => {
                let used = s.epoch_ticks.fetch_add(1, Ordering::Relaxed) + 1;
                if used >= demote_ticks {
                    s.demoted.store(true, Ordering::Relaxed);
                }
                used
            }
            None => own_ticks,
        };
        if used > max_ticks {
            cx.data_mut().cpu_exhausted = true;
            return Err(wasmtime::Error::msg("CPU time limit exceeded"));
        }
        Ok(UpdateDeadline::Yield(1))
    });
    Ok(store)
}
