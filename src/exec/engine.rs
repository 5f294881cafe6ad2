//! The one shared wasmtime `Engine`, the linker set up once, the on-disk
//! cache of compiled modules, and the registry that maps command names to
//! ready-to-instantiate tools.
//!
//! A module is compiled at most once per build of the server: the compiled
//! artifact is written to the cache directory (keyed by the wasm's sha256 and
//! the engine's compatibility hash) and loaded memory-mapped from there, so a
//! restart does not recompile. Each tool keeps an `InstancePre`, so starting a
//! command is only instantiation.

use super::state::GuestState;
use crate::config::Tuning;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine, InstancePre, Linker, Module};

/// How often the epoch advances. A running guest yields to the scheduler at
/// every tick, and interruption (terminate, time limits) takes at most this.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// `n` epoch ticks as a duration (saturating: `u64::MAX` ticks, "never",
/// is about 248 days).
pub fn ticks(n: u64) -> Duration {
    EPOCH_TICK.saturating_mul(n.min(u32::MAX.into()) as u32)
}

/// Errors while setting up the engine or loading tools.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("wasmtime: {0}")]
    Wasmtime(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl From<wasmtime::Error> for EngineError {
    fn from(e: wasmtime::Error) -> Self {
        EngineError::Wasmtime(format!("{e:#}"))
    }
}

/// Where a tool came from, for `wasm-exec-server tools` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolSource {
    /// Built from `guest-examples/` and embedded in the server.
    Example,
    /// The bundled toolset built by `tools/build.sh`.
    Bundled(PathBuf),
    /// A `*.wasm` file in a `--tools` directory.
    File(PathBuf),
}

impl std::fmt::Display for ToolSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolSource::Example => f.write_str("guest-examples (embedded)"),
            ToolSource::Bundled(p) => write!(f, "bundled ({})", p.display()),
            ToolSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A command name bound to a compiled module.
pub struct Tool {
    pub name: String,
    pub source: ToolSource,
    /// Imports resolved once; instantiating this is all a command costs.
    pub pre: InstancePre<GuestState>,
    /// Arguments inserted after argv[0] (`egrep` is `grep -E`).
    pub args: Vec<String>,
}

impl Tool {
    /// Whether this is the bundled toolset's `<stem>.wasm`, whatever name
    /// it was called by (`python` runs `python3.wasm`).
    pub fn is_bundled(&self, stem: &str) -> bool {
        matches!(&self.source, ToolSource::Bundled(p) if p.file_stem().is_some_and(|s| s == stem))
    }
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool").field("name", &self.name).field("source", &self.source).finish()
    }
}

/// The engine, its linker and the tool registry, shared by every session.
pub struct Runtime {
    pub engine: Engine,
    /// The server's metrics (module cache, and everything the session counts).
    pub metrics: Arc<crate::metrics::Metrics>,
    linker: Linker<GuestState>,
    tools: BTreeMap<String, Arc<Tool>>,
    cache_dir: Option<PathBuf>,
    /// Stops the epoch ticker thread when the runtime is dropped.
    ticker_stop: Arc<AtomicBool>,
    /// Where every command starts (shared by all tenants, full priority).
    interactive: std::sync::OnceLock<GuestPool>,
    /// Scheduling and allocation settings, from the configuration.
    pub tuning: Tuning,
}

/// Threads that guests run on, apart from the threads that serve
/// connections. Commands run in two classes:
///
/// - every command starts on the *interactive* pool, shared by all tenants,
///   at the server's own priority;
/// - a command that has used [`Tuning::demote_ticks`] of CPU time moves to its
///   tenant's *batch* pool, whose threads run at a lower priority
///   ([`Tuning::batch_nice`]; short commands and the server's own threads
///   keep 0, so they get the CPU as soon as they wake). Each tenant has its
///   own, so the OS shares the CPU between tenants however many guests one
///   of them keeps busy.
///
/// A neighbour spinning on all its slots then only ever competes with
/// other long commands: an `echo` wakes on a full-priority thread and gets
/// the CPU at once.
pub struct GuestPool {
    rt: Option<tokio::runtime::Runtime>,
}

impl GuestPool {
    /// A pool with one worker per core (at least two), its threads at the
    /// given nice value (0: the server's own priority).
    pub fn new(name: &str, nice: i32) -> std::io::Result<Self> {
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(format!("guest-{name}"))
            .on_thread_start(move || lower_priority(nice))
            .on_thread_park(crate::release::on_park)
            .enable_all()
            .build()?;
        Ok(Self { rt: Some(rt) })
    }

    /// No threads of its own: commands run on the caller's runtime.
    pub fn current() -> Self {
        Self { rt: None }
    }

    /// Where to spawn a command's task.
    pub fn handle(&self) -> tokio::runtime::Handle {
        match &self.rt {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

/// Lowers the calling thread's CPU priority to `nice` (0 leaves it alone).
/// On Linux the nice value is per thread; raising it needs no privilege.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        if nice == 0 {
            return;
        }
        // SAFETY: two syscalls about the calling thread; no memory is shared.
        #[allow(unsafe_code)]
        let rc =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower a guest thread's priority"
            );
        }
    }
}

impl Drop for GuestPool {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // May run inside another runtime: never block here.
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("tools", &self.tools.keys().collect::<Vec<_>>()).finish()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The process's address-space limit (`ulimit -v`), if it has one.
fn address_space_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::As).current
}

impl Runtime {
    /// Creates the engine (async, epoch interruption) and the WASI linker.
    /// `cache_dir` keeps compiled modules across restarts.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, EngineError> {
        Self::with_tuning(cache_dir, Tuning::default())
    }

    /// [`Runtime::new`] with the operator's [`Tuning`].
    pub fn with_tuning(cache_dir: Option<PathBuf>, tuning: Tuning) -> Result<Self, EngineError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // Every exit unwinds as an error; a wasm backtrace for each costs time
        // and our trap diagnostic prints only the trap itself.
        config.wasm_backtrace_max_frames(None);
        // Instances come from a pool of pre-reserved slots whose memory stays
        // resident between commands (a command then costs no mmap/munmap and
        // few page faults). The pool is sized far above the process limits.
        // Each linear memory reserves 4 GiB of address space plus guards, so
        // that compiled code needs no bounds checks; or, compact, only the
        // memory limit (explicit bounds checks), for hosts that bound
        // address space (`ulimit -v`).
        let compact = tuning.compact_reservation(address_space_limit());
        let max_memory = match compact {
            Some(bytes) => {
                tracing::info!(
                    reservation = bytes,
                    "each wasm memory reserves only its limit (compact layout)"
                );
                config.memory_reservation(bytes);
                config.memory_guard_size(64 << 10);
                config.memory_reservation_for_growth(0);
                usize::try_from(bytes).unwrap_or(usize::MAX)
            }
            None => 4 << 30,
        };
        if tuning.pooling {
            // Wasm instances that can exist at once (every tenant of this
            // engine together).
            let slots = tuning.pool_slots.clamp(1, crate::config::MAX_POOL_SLOTS);
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
                .total_stacks(slots)
                .max_memory_size(max_memory)
                .linear_memory_keep_resident(1 << 20)
                .table_keep_resident(64 << 10)
                .pagemap_scan(wasmtime::Enabled::Auto);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut GuestState| &mut s.wasi)?;
        // wasmtime-wasi turns `proc_exit(n)` with n >= 126 into a trap; shells
        // use 126..=255, so every status must reach the client unchanged.
        linker.allow_shadowing(true);
        linker.func_wrap(
            "wasi_snapshot_preview1",
            "proc_exit",
            |_caller: wasmtime::Caller<'_, GuestState>, status: i32| -> wasmtime::Result<()> {
                Err(wasmtime_wasi::I32Exit(status & 0xff).into())
            },
        )?;
        // zeroperl (`perl`) imports a way to call host functions from Perl;
        // none is offered (every call reports failure to Perl).
        linker.func_wrap(
            "env",
            "call_host_function",
            |_caller: wasmtime::Caller<'_, GuestState>, _id: i32, _argc: i32, _argv: i32| -> i32 {
                0
            },
        )?;
        // Read-only areas and the disk quota for the guests' own writes.
        super::guard::add_to_linker(&mut linker)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|source| EngineError::Io { path: PathBuf::from("epoch-ticker"), source })?;
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)
                .map_err(|source| EngineError::Io { path: dir.clone(), source })?;
        }
        Ok(Self {
            engine,
            metrics: Arc::default(),
            linker,
            tools: BTreeMap::new(),
            cache_dir,
            ticker_stop,
            tuning,
            interactive: std::sync::OnceLock::new(),
        })
    }

    /// The pool every command starts on (made on first use; without threads
    /// of its own if they cannot be made).
    pub fn interactive(&self) -> tokio::runtime::Handle {
        self.interactive
            .get_or_init(|| {
                GuestPool::new("interactive", 0).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not start the interactive guest pool");
                    GuestPool::current()
                })
            })
            .handle()
    }

    /// Registers the embedded example guests.
    pub fn add_examples(&mut self) -> Result<(), EngineError> {
        for (name, wasm) in crate::GUEST_EXAMPLES {
            self.add_tool(name, wasm, ToolSource::Example)?;
        }
        Ok(())
    }

    /// Registers the bundled toolset in `dir`: every `*.wasm` under its file
    /// stem, then the names in `aliases.txt` (`name tool.wasm` per line, as
    /// `tools/build.sh` writes it: `cat coreutils.wasm`, `egrep grep.wasm`).
    pub fn add_bundled(&mut self, dir: &Path) -> Result<usize, EngineError> {
        let n = self.add_wasm_files(dir, |p| ToolSource::Bundled(p.to_path_buf()))?;
        let aliases = dir.join("aliases.txt");
        if let Ok(text) = std::fs::read_to_string(&aliases) {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let mut parts = line.split_whitespace();
                let (Some(name), Some(file)) = (parts.next(), parts.next()) else { continue };
                let target = file.trim_end_matches(".wasm");
                let args: Vec<&str> = parts.collect();
                if (name != target || !args.is_empty())
                    && !self.alias_with_args(name, target, &args)
                {
                    tracing::warn!(alias = name, target, "alias names a tool that is not there");
                }
            }
        }
        Ok(n)
    }

    /// Registers every `*.wasm` file in `dir` under its file stem, replacing
    /// a bundled tool of the same name.
    pub fn add_dir(&mut self, dir: &Path) -> Result<usize, EngineError> {
        self.add_wasm_files(dir, |p| ToolSource::File(p.to_path_buf()))
    }

    fn add_wasm_files(
        &mut self,
        dir: &Path,
        source: impl Fn(&Path) -> ToolSource,
    ) -> Result<usize, EngineError> {
        let io_err = |source| EngineError::Io { path: dir.to_path_buf(), source };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        paths.sort();
        for path in &paths {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            let module = match self.cached_by_file(path) {
                Some(m) => m,
                None => {
                    let wasm = std::fs::read(path)
                        .map_err(|source| EngineError::Io { path: path.clone(), source })?;
                    let module = self.load_module(&wasm)?;
                    self.remember_file(path, &wasm);
                    module
                }
            };
            let pre = self.linker.instantiate_pre(&module)?;
            let tool = Tool { name: name.to_owned(), source: source(path), pre, args: Vec::new() };
            self.tools.insert(name.to_owned(), Arc::new(tool));
        }
        Ok(paths.len())
    }

    /// The index entry for a wasm file: its path, size and mtime, so a start
    /// need not read and hash 40 MB of tools to find their compiled modules.
    fn file_index(&self, path: &Path) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let meta = std::fs::metadata(path).ok()?;
        let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        let mut h = Sha256::new();
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(mtime.to_le_bytes());
        Some(dir.join("by-file").join(hex::encode(h.finalize())))
    }

    /// A module found through the file index (which names its `.cwasm`).
    fn cached_by_file(&self, path: &Path) -> Option<Module> {
        let index = self.file_index(path)?;
        let cwasm = std::fs::read_to_string(&index).ok()?;
        let cwasm = self.cache_dir.as_ref()?.join(cwasm.trim());
        let key = cwasm.file_name()?.to_str()?;
        // Only an entry for this engine (the name ends with its hash).
        if !key.ends_with(&format!("-{:016x}.cwasm", self.compat_hash())) {
            return None;
        }
        // SAFETY: as in `load_module`: written by this server for an engine
        // with the same compatibility hash; wasmtime checks the header.
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize_file(&self.engine, &cwasm) }.ok()?;
        self.cache_result("hit");
        Some(module)
    }

    fn remember_file(&self, path: &Path, wasm: &[u8]) {
        let Some(index) = self.file_index(path) else { return };
        if let Some(parent) = index.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(index, self.cache_key(wasm));
    }

    fn compat_hash(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        h.finish()
    }

    /// The cache file name of a module: its sha256 and the engine's hash.
    fn cache_key(&self, wasm: &[u8]) -> String {
        format!("{}-{:016x}.cwasm", hex::encode(Sha256::digest(wasm)), self.compat_hash())
    }

    /// Compiles (or loads from the cache) and registers one tool.
    pub fn add_tool(
        &mut self,
        name: &str,
        wasm: &[u8],
        source: ToolSource,
    ) -> Result<(), EngineError> {
        let module = self.load_module(wasm)?;
        let pre = self.linker.instantiate_pre(&module)?;
        tracing::debug!(tool = name, %source, "registered tool");
        self.tools.insert(
            name.to_owned(),
            Arc::new(Tool { name: name.to_owned(), source, pre, args: Vec::new() }),
        );
        Ok(())
    }

    /// Also registers an existing tool under another name (`egrep` → grep).
    pub fn alias(&mut self, alias: &str, target: &str) -> bool {
        self.alias_with_args(alias, target, &[])
    }

    /// Registers `alias` as `target` with `args` inserted after argv[0].
    pub fn alias_with_args(&mut self, alias: &str, target: &str, args: &[&str]) -> bool {
        match self.tools.get(target).cloned() {
            Some(t) => {
                let tool = Tool {
                    name: alias.to_owned(),
                    source: t.source.clone(),
                    pre: t.pre.clone(),
                    args: args.iter().map(|a| a.to_string()).collect(),
                };
                self.tools.insert(alias.to_owned(), Arc::new(tool));
                true
            }
            None => false,
        }
    }

    fn load_module(&self, wasm: &[u8]) -> Result<Module, EngineError> {
        let Some(dir) = &self.cache_dir else {
            return Ok(Module::new(&self.engine, wasm)?);
        };
        let path = dir.join(self.cache_key(wasm));
        if path.exists() {
            // SAFETY: the file was written by `precompile_module` of an engine
            // with the same compatibility hash, into a cache directory only
            // this server writes; wasmtime still checks its header.
            #[allow(unsafe_code)]
            match unsafe { Module::deserialize_file(&self.engine, &path) } {
                Ok(m) => {
                    self.cache_result("hit");
                    return Ok(m);
                }
                Err(e) => {
                    tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "stale module cache entry; recompiling"
                    )
                }
            }
        }
        self.cache_result("miss");
        let compiled = self.engine.precompile_module(wasm)?;
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        let write = std::fs::write(&tmp, &compiled).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = write {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "could not write the module cache");
            #[allow(unsafe_code)]
            // SAFETY: `compiled` was produced just now by this engine.
            return Ok(unsafe { Module::deserialize(&self.engine, &compiled) }?);
        }
        #[allow(unsafe_code)]
        // SAFETY: as above; the file holds what this engine just compiled.
        Ok(unsafe { Module::deserialize_file(&self.engine, &path) }?)
    }

    fn cache_result(&self, result: &str) {
        self.metrics
            .module_cache
            .get_or_create(&crate::metrics::CacheLabels { result: result.into() })
            .inc();
    }

    /// The tool registered under `name`.
    pub fn tool(&self, name: &str) -> Option<Arc<Tool>> {
        self.tools.get(name).cloned()
    }

    /// Every registered tool, by name.
    pub fn tools(&self) -> impl Iterator<Item = (&str, &Arc<Tool>)> {
        self.tools.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether a bundled toolset is loaded (without one, `ls`, `cat`, `grep`
    /// and the rest are missing, and "command not found" says why).
    pub fn has_toolset(&self) -> bool {
        self.tools.values().any(|t| matches!(t.source, ToolSource::Bundled(_)))
    }

    /// What "command not found" adds when the server has no toolset: the
    /// usual cause of a 127 for `ls`, and what to do about it.
    pub fn not_found_hint(&self) -> &'static str {
        if self.has_toolset() {
            ""
        } else {
            " (this server has no toolset loaded: build it with tools/build.sh and pass \
             --bundled DIR, or start the server with ./dev serve)"
        }
    }
}
