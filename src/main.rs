//! The `wasm-exec-server` binary: CLI parsing into a validated
//! configuration, tracing set-up, and the subcommands.

/// glibc's malloc was 13% of the server's time under many small commands
/// (each allocates and frees a few hundred small objects on two threads).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use wasm_exec_server::config::{
    Limits, MAX_POOL_SLOTS, TenantSpec, ToolsSpec, Tuning, WorkspaceConfig, WorkspaceSpec,
    digest_of_token, parse_digest, parse_duration, parse_size,
};
use wasm_exec_server::exec::{Executor, Runtime};
use wasm_exec_server::fs::Workspace;
use wasm_exec_server::tenant::{Gate, Tenant, TenantEntry, config::ConfigFile};
use wasm_exec_server::worker::{Mode, WorkerSpec};

/// A Codex exec-server that runs every command as a WebAssembly (WASI)
/// module under wasmtime, confined to a workspace directory.
///
/// Point Codex at it with `CODEX_EXEC_SERVER_URL=ws://127.0.0.1:PORT codex`.
#[derive(Parser)]
#[command(name = "wasm-exec-server", version, about, long_about)]
struct Cli {
    /// Log format on stderr: `text` for people, `json` (one object per line)
    /// for log collectors. The level is set with RUST_LOG (default `info`).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the exec-server protocol over WebSocket.
    Serve(Box<ServeArgs>),
    /// List the tools commands can run, and where each comes from.
    Tools(ToolsCmd),
    /// Run one command line on a running server and stream its output here
    /// (exits with the command's status, or 255 when the client fails).
    Exec(ExecArgs),
    /// Run one command line locally against a workspace, with no server:
    /// output goes to this terminal and the exit status is the command's.
    Run(RunArgs),
    /// A tenant's worker process, started by `serve` (not by hand).
    #[command(hide = true)]
    Worker,
}

#[derive(Args)]
struct RunArgs {
    /// The workspace root, as for `serve`: `DIR` or `DIR:VISIBLE_PATH`.
    #[arg(long, value_name = "DIR[:VISIBLE]")]
    workspace: WorkspaceSpec,
    /// Working directory: a visible absolute path, or a path relative to the
    /// workspace root [default: the root].
    #[arg(long, value_name = "PATH")]
    cwd: Option<String>,
    #[command(flatten)]
    tools: ToolArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// The command line, interpreted as `bash -c '<line>'` would.
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND LINE")]
    command: Vec<String>,
}

#[derive(Args)]
struct ExecArgs {
    /// The server, e.g. ws://127.0.0.1:8765, or wss://host:port behind a TLS
    /// proxy.
    #[arg(long, value_name = "URL", env = "CODEX_EXEC_SERVER_URL")]
    url: String,
    /// Working directory as an absolute path on the server [default: the
    /// server's workspace root].
    #[arg(long, value_name = "PATH")]
    cwd: Option<String>,
    /// Bearer token, if the server requires one.
    #[arg(long, value_name = "TOKEN", env = "WES_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Or read the bearer token from this file (surrounding whitespace
    /// ignored), so it is not in the process list or the environment.
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// For a `wss://` URL: also trust the certificates in this PEM file (a
    /// private CA, or the server's own self-signed certificate). The
    /// system's roots are always trusted.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// The command line, run as `bash -lc '<line>'`.
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND LINE")]
    command: Vec<String>,
}

#[derive(Args)]
struct ToolsCmd {
    /// Print a JSON array (name, kind, origin, version, path) instead of a
    /// table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tools: ToolArgs,
}

#[derive(Args, Clone)]
struct ToolArgs {
    /// The bundled toolset (coreutils, grep, sed, …) built by `tools/build.sh`
    /// [default: its build's default place, ~/.cache/wasm-exec-server/tools
    /// (or under $XDG_CACHE_HOME), when it exists]. Skipped with a warning
    /// when the directory does not exist.
    #[arg(long, value_name = "DIR", env = "WES_TOOLS_DIR")]
    bundled: Option<PathBuf>,

    /// Directory of extra `*.wasm` tools; each file's stem is its command
    /// name. Overrides bundled tools of the same name. Repeatable.
    #[arg(long = "tools", value_name = "DIR")]
    tools: Vec<PathBuf>,

    /// Where compiled modules are cached between runs
    /// [default: $XDG_CACHE_HOME/wasm-exec-server or ~/.cache/wasm-exec-server].
    #[arg(long, value_name = "DIR", env = "WASM_EXEC_SERVER_CACHE")]
    cache_dir: Option<PathBuf>,

    #[command(flatten)]
    tuning: TuningArgs,
}

/// Scheduling and allocation of guests (`config::Tuning`); the defaults
/// suit every host we know of.
#[derive(Args, Clone)]
#[command(next_help_heading = "Engine tuning")]
struct TuningArgs {
    /// CPU time, in 5 ms epoch ticks, after which a command moves from the
    /// shared interactive threads to its tenant's low-priority batch threads
    /// (0: never).
    #[arg(long, default_value_t = 4, value_name = "TICKS", env = "WES_DEMOTE_TICKS")]
    demote_ticks: u64,
    /// Nice value of the batch threads that run long commands.
    #[arg(long, default_value_t = 10, value_name = "NICE", env = "WES_BATCH_NICE")]
    batch_nice: i32,
    /// Allocate each wasm instance's memory on its own instead of from the
    /// pre-reserved pool (slower starts), for hosts that limit virtual memory
    /// (`ulimit -v`).
    #[arg(long, env = "WES_NO_POOLING", value_parser = clap::builder::FalseyValueParser::new())]
    no_pooling: bool,
    /// Reserve address space for each wasm memory up to `--max-memory` only,
    /// instead of 4 GiB (the code then checks bounds explicitly, a little
    /// slower). A tenant's worker does this by itself when its address-space
    /// limit (`ulimit -v`) is below 2 GiB + max-instances × 4.06 GiB.
    #[arg(long, env = "WES_COMPACT_MEMORY", value_parser = clap::builder::FalseyValueParser::new())]
    compact_memory: bool,
}

impl TuningArgs {
    fn to_tuning(&self) -> Tuning {
        Tuning {
            demote_ticks: if self.demote_ticks == 0 { u64::MAX } else { self.demote_ticks },
            batch_nice: self.batch_nice,
            pooling: !self.no_pooling,
            compact: self.compact_memory,
            ..Tuning::default()
        }
    }
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to listen on, as `ws://IP:PORT`. Port 0 picks a free port; the
    /// bound URL is printed as the first line on stdout. `stdio` serves one
    /// client on stdin/stdout, one JSON message per line.
    #[arg(long, default_value = "ws://127.0.0.1:0", value_name = "URL|stdio")]
    listen: String,

    /// How long a session outlives a dropped connection, so the client can
    /// resume it (`resumeSessionId`) and its commands keep running. 0 ends
    /// a session's commands as soon as its connection closes.
    #[arg(long, default_value = "80s", value_parser = parse_duration, value_name = "DURATION")]
    detach_grace: std::time::Duration,

    /// On SIGTERM or Ctrl-C, how long running commands may take to finish
    /// before they are stopped.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    shutdown_grace: std::time::Duration,

    /// The workspace root: `DIR`, or `DIR:VISIBLE_PATH` to show it to clients
    /// and commands at another absolute path. By default clients see DIR's
    /// canonical path, which should be the directory you run `codex` in.
    #[arg(
        long,
        value_name = "DIR[:VISIBLE]",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    workspace: Option<WorkspaceSpec>,

    /// Subpaths of the workspace that `fs/*` calls and shell redirections may
    /// not change. Repeatable.
    #[arg(long = "read-only", value_name = "PATH", default_values_t = [String::from(".git")])]
    read_only: Vec<String>,

    /// Multi-tenant hosting: a TOML file of tenants, each with its token,
    /// root and limits (see README, "Hosting"). Implies bearer-token auth.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Authentication of WebSocket upgrades: `none`, or `capability-token`
    /// (a bearer token from --ws-token-file or --ws-token-sha256).
    #[arg(
        long,
        default_value = "none",
        value_parser = ["none", "capability-token"],
        value_name = "MODE"
    )]
    ws_auth: String,

    /// File holding the bearer token (surrounding whitespace ignored).
    #[arg(long, value_name = "PATH", conflicts_with = "ws_token_sha256")]
    ws_token_file: Option<PathBuf>,

    /// The sha256 (hex) of the bearer token, so the token itself is never
    /// stored on the server.
    #[arg(long, value_name = "HEX")]
    ws_token_sha256: Option<String>,

    /// How each tenant's host-side work (the shell, git, apply_patch, the
    /// wasm engine) is confined by the operating system: `auto` runs each
    /// tenant in its own worker process under Landlock and seccomp, as far
    /// as the kernel allows (one warning names what is missing);
    /// `required` refuses to start without both; `off` runs everything in
    /// this one process with only the in-process checks (macOS,
    /// development). `--listen stdio` always runs in one process.
    #[arg(
        long,
        default_value = "auto",
        value_name = "MODE",
        env = "WES_CONFINEMENT",
        value_parser = ["required", "auto", "off"]
    )]
    confinement: String,

    /// Threads that serve connections (WebSocket, JSON-RPC, handing commands
    /// to the guest threads) in each tenant's worker, or in the one-process
    /// server; 0: one per core. Commands run on threads of their own either
    /// way. One busy thread hands work over with fewer wake-ups than several
    /// that keep parking; raise it when one tenant's connections keep a
    /// core busy.
    #[arg(long, default_value_t = 1, value_name = "N", env = "WES_CONNECTION_THREADS")]
    connection_threads: u32,

    /// Serve the admin API (list tenants, sessions and processes with their
    /// usage; terminate a process; drain a tenant) on this address, as
    /// `IP:PORT`; keep it on loopback or a private network. Needs
    /// --admin-token-file or --admin-token-sha256, and worker processes
    /// (not --confinement off). The bound address is printed on stdout
    /// after the server's URL, as `admin http://IP:PORT`.
    #[arg(long, value_name = "IP:PORT")]
    admin_listen: Option<std::net::SocketAddr>,

    /// Serve `/metrics` (and `/readyz`) on this address, as `IP:PORT`,
    /// instead of the main listener, which then answers 404 for it. Needs
    /// worker processes. The bound address is printed on stdout after the
    /// server's URL (and the admin API's), as `metrics http://IP:PORT`.
    #[arg(long, value_name = "IP:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,

    /// File holding the admin API's bearer token.
    #[arg(long, value_name = "PATH", conflicts_with = "admin_token_sha256")]
    admin_token_file: Option<PathBuf>,

    /// The sha256 (hex) of the admin API's bearer token.
    #[arg(long, value_name = "HEX")]
    admin_token_sha256: Option<String>,

    #[command(flatten)]
    tools: ToolArgs,

    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args, Clone)]
struct LimitArgs {
    /// Linear memory per wasm instance, and what the shell may hold on the host for one command line (its variables, captured output, words) (e.g. 512M, 1G).
    #[arg(long, default_value = "1G", value_parser = parse_size, value_name = "SIZE")]
    max_memory: u64,
    /// Wall-clock time per command (e.g. 90s, 30m); the command is stopped
    /// with status 137 when it runs longer.
    #[arg(long, default_value = "30m", value_parser = parse_duration, value_name = "DURATION")]
    max_wall: std::time::Duration,
    /// Output a command may write in total before it is stopped (137).
    #[arg(long, default_value = "1G", value_parser = parse_size, value_name = "SIZE")]
    max_output: u64,
    /// Output kept per process for `process/read` after reconnecting (a
    /// session's closed processes keep 16 times this between them).
    #[arg(long, default_value = "1M", value_parser = parse_size, value_name = "SIZE")]
    retained_output: u64,
    /// Processes running at once (per tenant).
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_processes: usize,
    /// CPU time per command, all its wasm instances together; then it is
    /// stopped with status 137.
    #[arg(long, default_value = "30m", value_parser = parse_duration, value_name = "DURATION")]
    max_cpu: std::time::Duration,
    /// WebSocket connections open at once (per tenant).
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_connections: usize,
    /// Wasm instances alive at once (per tenant; a pipeline holds one per
    /// stage). The engine has 1,024 slots for every tenant together.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_instances: usize,
    /// Requests per second (per tenant; bursts of twice this are allowed).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    requests_per_second: u32,
    /// Largest file `fs/readFile` returns and `fs/writeFile` accepts.
    #[arg(long, default_value = "64M", value_parser = parse_size, value_name = "SIZE")]
    max_file: u64,
    /// Bytes the workspace (with the commands' private /tmp) may occupy on disk
    /// (allocated blocks, at least 4 KiB per file, directory or link), counted
    /// from the files already there; writes past it fail with "Disk quota
    /// exceeded". 0 turns the quota off.
    #[arg(long, default_value = "16G", value_parser = parse_size, value_name = "SIZE")]
    max_disk: u64,
    /// `process/write` bytes a command has not read yet before writes fail.
    #[arg(long, default_value = "1M", value_parser = parse_size, value_name = "SIZE")]
    max_stdin_buffer: u64,
    /// Resident memory of a tenant's worker process, all its sessions and
    /// commands together; past it the worker is ended and its sessions close
    /// (`serve` with confinement on). 0: no ceiling.
    #[arg(long, default_value = "0", value_parser = parse_size, value_name = "SIZE")]
    max_tenant_memory: u64,
}

impl LimitArgs {
    fn to_limits(&self, detach_grace: std::time::Duration) -> Limits {
        Limits {
            detach_grace,
            max_memory: self.max_memory as usize,
            max_wall: self.max_wall,
            retained_output: self.retained_output as usize,
            max_output: self.max_output,
            max_processes: self.max_processes.max(1),
            max_file: self.max_file,
            max_disk: self.max_disk,
            max_stdin_buffer: self.max_stdin_buffer as usize,
            max_tenant_memory: self.max_tenant_memory,
            max_cpu: self.max_cpu,
            max_connections: self.max_connections.max(1),
            max_instances: self.max_instances.max(1),
            requests_per_second: self.requests_per_second.max(1),
        }
    }
}

/// `$WES_CACHE`, or `~/.cache/wasm-exec-server` (or under
/// `$XDG_CACHE_HOME`), as in `tools/build.sh`: where
/// `tools/build.sh` puts the toolset and the server caches modules.
fn cache_base() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WES_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wasm-exec-server"))
}

fn default_cache_dir() -> Option<PathBuf> {
    cache_base().map(|b| b.join("modules"))
}

/// The toolset `tools/build.sh` builds by default, when it is there.
fn default_toolset_dir() -> Option<PathBuf> {
    cache_base().map(|b| b.join("tools")).filter(|d| d.join("versions.txt").is_file())
}

impl ToolArgs {
    fn to_spec(&self) -> ToolsSpec {
        ToolsSpec {
            bundled: self.bundled.clone().or_else(default_toolset_dir),
            dirs: self.tools.clone(),
            cache_dir: self.cache_dir.clone().or_else(default_cache_dir),
            tuning: self.tuning.to_tuning(),
        }
    }
}

fn load_runtime(args: &ToolArgs) -> Result<Runtime> {
    let rt = wasm_exec_server::worker::load_runtime(&args.to_spec())?;
    tracing::info!(tools = rt.tools().count(), "loaded the tools");
    Ok(rt)
}

fn parse_listen(url: &str) -> Result<std::net::SocketAddr> {
    let Some(addr) = url.strip_prefix("ws://") else {
        bail!("--listen must look like ws://IP:PORT (got `{url}`); for TLS put a proxy in front");
    };
    addr.trim_end_matches('/').parse().with_context(|| {
        format!("--listen: `{addr}` is not an IP:PORT address (e.g. 127.0.0.1:8765)")
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
}

/// The tenants the flags (or the `--config` file they name) describe.
fn tenant_specs(args: &ServeArgs) -> Result<Vec<TenantSpec>> {
    let limits = args.limits.to_limits(args.detach_grace);
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config: cannot read {}", path.display()))?;
        let cfg = ConfigFile::parse(&text)
            .map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))?;
        return cfg.tenant_specs(limits).map_err(|e| match e.strip_prefix("[defaults]") {
            Some(rest) => anyhow::anyhow!("--config [defaults]{rest}"),
            None => anyhow::anyhow!("{e}"),
        });
    }
    let Some(spec) = &args.workspace else { bail!("give --workspace DIR (or --config FILE)") };
    let digest = if args.ws_auth == "none" {
        if args.ws_token_file.is_some() || args.ws_token_sha256.is_some() {
            bail!("a token was given but --ws-auth is `none`; add --ws-auth capability-token");
        }
        None
    } else {
        let digest = token_digest(&args.ws_token_file, &args.ws_token_sha256, "ws")?;
        Some(digest.context(
            "--ws-auth capability-token needs --ws-token-file PATH or --ws-token-sha256 HEX",
        )?)
    };
    let workspace = WorkspaceConfig {
        root: spec.host.clone(),
        visible: spec.visible.clone(),
        read_only: args.read_only.clone(),
        max_disk: limits.max_disk,
        scratch_parent: None,
        scratch_dir: None,
    };
    Ok(vec![TenantSpec { id: "default".into(), digest, workspace, limits }])
}

/// The digest of the token given by `--{flag}-token-file` (read; spaces
/// around it ignored) or `--{flag}-token-sha256`; `None` when neither was.
fn token_digest(
    file: &Option<PathBuf>,
    sha256: &Option<String>,
    flag: &str,
) -> Result<Option<[u8; 32]>> {
    Ok(Some(match (file, sha256) {
        (Some(file), _) => {
            let token = std::fs::read_to_string(file)
                .with_context(|| format!("--{flag}-token-file: cannot read {}", file.display()))?;
            digest_of_token(&token)
                .map_err(|e| anyhow::anyhow!("--{flag}-token-file {}: {e}", file.display()))?
        }
        (None, Some(hex)) => {
            parse_digest(hex).map_err(|e| anyhow::anyhow!("--{flag}-token-sha256: {e}"))?
        }
        (None, None) => return Ok(None),
    }))
}

/// Builds who may connect, and to which workspace, from the flags.
fn build_gate(args: &ServeArgs, runtime: Arc<Runtime>) -> Result<Gate> {
    let mut entries = Vec::new();
    for spec in tenant_specs(args)? {
        let tenant = Tenant::from_spec(&spec, runtime.clone()).with_context(|| {
            let root = spec.workspace.root.display();
            match &args.config {
                Some(_) => format!("tenant `{}`: cannot open root {root}", spec.id),
                None => format!("--workspace: cannot open {root}"),
            }
        })?;
        let tenant = Arc::new(tenant);
        tracing::info!(
            tenant = %tenant.id,
            root = %tenant.executor.workspace.visible_root(),
            "tenant loaded"
        );
        match spec.digest {
            Some(digest) => entries.push(TenantEntry { digest, tenant }),
            // Only the flags make a tenant without a token, and only one.
            None => return Ok(Gate::Open(tenant)),
        }
    }
    Ok(Gate::Tokens(entries))
}

/// `serve` with confinement: this process faces the network and each
/// tenant runs in its own confined worker process.
async fn serve_front(
    args: ServeArgs,
    addr: std::net::SocketAddr,
    mode: Mode,
    log_format: String,
) -> Result<()> {
    wasm_exec_server::worker::front::check_kernel(mode)?;
    // Compile every tool once here, so that workers start from a warm module
    // cache (and a broken toolset is reported before anything listens).
    // It only compiles: no instance slots are reserved for it.
    let tools = args.tools.to_spec();
    tokio::task::spawn_blocking({
        let mut warm = tools.clone();
        warm.tuning.pooling = false;
        move || wasm_exec_server::worker::load_runtime(&warm).map(drop)
    })
    .await??;
    let tenants = front_tenants(&args, mode, &tools)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    println!("ws://{bound}");
    tracing::info!(url = %format!("ws://{bound}"), tenants = tenants.specs.len(), "listening");
    // SIGHUP: the tenants file read again; an invalid one is refused and the
    // tenants in force stay.
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    #[cfg(unix)]
    {
        let args = args.clone();
        let tools = tools.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
            while hup.recv().await.is_some() {
                if args.config.is_none() {
                    tracing::warn!("SIGHUP: nothing to reload (no --config file)");
                    continue;
                }
                match front_tenants(&args, mode, &tools) {
                    Ok(t) => {
                        let _ = reload_tx.send(t).await;
                    }
                    Err(e) => tracing::error!(
                        error = %format!("{e:#}"),
                        "SIGHUP: the tenants file is not valid; the tenants in force stay"
                    ),
                }
            }
        });
    }
    let admin = match args.admin_listen {
        Some(addr) => {
            let digest = token_digest(&args.admin_token_file, &args.admin_token_sha256, "admin")?
                .context(
                "--admin-listen needs a token: pass --admin-token-file or --admin-token-sha256",
            )?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--admin-listen: cannot listen on {addr}"))?;
            println!("admin http://{}", listener.local_addr()?);
            let gate = Gate::Tokens(vec![TenantEntry { digest, tenant: () }]);
            Some((listener, gate))
        }
        None => None,
    };
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen: cannot listen on {addr}"))?;
            println!("metrics http://{}", listener.local_addr()?);
            Some(listener)
        }
        None => None,
    };
    let config = wasm_exec_server::worker::front::FrontConfig {
        tenants,
        log_format,
        drain: args.shutdown_grace,
        admin,
        metrics,
    };
    wasm_exec_server::worker::front::run(listener, config, shutdown_signal(), reload_rx).await
}

/// The tenants the flags or the `--config` file describe, as the front
/// keeps them: tokens' digests, and each tenant's worker spec.
fn front_tenants(
    args: &ServeArgs,
    mode: Mode,
    tools: &ToolsSpec,
) -> Result<wasm_exec_server::worker::front::Tenants> {
    let test_hooks = wasm_exec_server::worker::hooks::requested();
    let mut specs = std::collections::HashMap::new();
    let mut entries = Vec::new();
    let mut open = None;
    for mut spec in tenant_specs(args)? {
        let root = &spec.workspace.root;
        if !root.is_dir() {
            match &args.config {
                Some(_) => bail!("tenant `{}`: cannot open root {}", spec.id, root.display()),
                None => bail!("--workspace: cannot open {}: not a directory", root.display()),
            }
        }
        // Workers start with an empty environment: settle what it decides.
        spec.workspace.scratch_parent.get_or_insert_with(std::env::temp_dir);
        tracing::info!(tenant = %spec.id, root = %root.display(), "tenant loaded");
        match spec.digest {
            Some(digest) => entries.push(TenantEntry { digest, tenant: spec.id.clone() }),
            None => open = Some(spec.id.clone()),
        }
        // A worker's pool reserves the slots its tenant may use, not the
        // whole server's.
        let mut tools = tools.clone();
        tools.tuning.pool_slots =
            u32::try_from(spec.limits.max_instances).unwrap_or(u32::MAX).min(MAX_POOL_SLOTS);
        tools.tuning.memory_limit = Some(spec.limits.max_memory as u64);
        tools.tuning.connection_threads = args.connection_threads;
        let worker = WorkerSpec {
            tenant: spec.clone(),
            tools,
            mode,
            shutdown_grace: args.shutdown_grace,
            test_hooks,
        };
        specs.insert(spec.id.clone(), worker);
    }
    let gate = match open {
        Some(id) => Gate::Open(id),
        None => Gate::Tokens(entries),
    };
    Ok(wasm_exec_server::worker::front::Tenants { gate, specs })
}

async fn serve(args: ServeArgs, log_format: String) -> Result<()> {
    // Guests' /tmp directories left by servers that were killed; in the
    // background, so start-up does not wait for it.
    std::thread::spawn(|| {
        let removed = wasm_exec_server::fs::sweep_stale_scratch(&std::env::temp_dir());
        if removed > 0 {
            tracing::info!(
                removed,
                "removed scratch directories left by servers that did not shut down"
            );
        }
    });
    let stdio = args.listen == "stdio";
    let addr = if stdio { None } else { Some(parse_listen(&args.listen)?) };
    let mode: Mode = args.confinement.parse().map_err(anyhow::Error::msg)?;
    if let (Some(addr), false) = (addr, mode == Mode::Off) {
        return serve_front(args, addr, mode, log_format).await;
    }
    if args.admin_listen.is_some() || args.metrics_listen.is_some() {
        bail!(
            "--admin-listen and --metrics-listen need worker processes: use --confinement auto \
             or required, and a ws:// --listen address"
        );
    }
    if wasm_exec_server::worker::hooks::requested() {
        wasm_exec_server::worker::hooks::enable();
    }
    let runtime = tokio::task::spawn_blocking({
        let tools = args.tools.clone();
        move || load_runtime(&tools)
    })
    .await??;
    let gate = build_gate(&args, Arc::new(runtime))?;
    let Some(addr) = addr else {
        let Gate::Open(tenant) = gate else {
            bail!(
                "--listen stdio serves one local client: it cannot be combined with --config \
                 or --ws-auth"
            );
        };
        tracing::info!(workspace = %tenant.executor.workspace.visible_root(), "serving on stdio");
        wasm_exec_server::server::serve_stdio(tenant, shutdown_signal(), args.shutdown_grace).await;
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    println!("ws://{bound}");
    tracing::info!(url = %format!("ws://{bound}"), tenants = gate.tenants().len(), "listening");
    // One process keeps its tenants as they started: SIGHUP (whose default
    // would end the server) says so instead.
    #[cfg(unix)]
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            tracing::warn!(
                "SIGHUP: reloading tenants needs worker processes (--confinement auto or \
                 required); nothing changed"
            );
        }
    });
    wasm_exec_server::server::run(listener, gate, shutdown_signal(), args.shutdown_grace).await?;
    Ok(())
}

async fn exec(args: ExecArgs) -> Result<i32> {
    use std::io::Write;
    use wasm_exec_server::client::Client;
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--token-file: cannot read {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => args.token.clone(),
    };
    let mut client = Client::connect_tls(&args.url, token.as_deref(), args.cacert.as_deref())
        .await
        .with_context(|| format!("cannot connect to {}", args.url))?;
    let init = client.initialize().await.context("the server refused the handshake")?;
    let cwd = match &args.cwd {
        Some(p) if p.starts_with("file:") => p.clone(),
        Some(p) => wasm_exec_server::fs::to_file_uri(p),
        None => init["environmentInfo"]["cwd"]
            .as_str()
            .map(str::to_owned)
            .context("the server did not say where its workspace is; pass --cwd")?,
    };
    let shell = init["environmentInfo"]["shell"]["path"].as_str().unwrap_or("/bin/bash").to_owned();
    let line = args.command.join(" ");
    let id = format!("exec-{}", uuid::Uuid::new_v4().simple());
    client.start(&id, &[shell.as_str(), "-lc", &line], &cwd, serde_json::json!({})).await?;
    client.timeout = std::time::Duration::from_secs(24 * 3600);
    let mut print = |stream: &str, data: &[u8]| {
        let _ = if stream == "stderr" {
            std::io::stderr().write_all(data)
        } else {
            let mut out = std::io::stdout();
            out.write_all(data).and_then(|()| out.flush())
        };
    };
    let finished = tokio::select! {
        r = client.collect_streaming(&id, &mut print) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(finished) = finished else {
        // Ctrl-C, as over ssh: the remote command is stopped, not left
        // running in a detached session; the status is a shell's for SIGINT.
        let _ = client.request("process/terminate", serde_json::json!({"processId": id})).await;
        let _ = client.close().await;
        return Ok(130);
    };
    let finished = finished?;
    let _ = client.close().await;
    Ok(finished.exit_code)
}

/// `run`: one command line through the shell, output to this terminal.
async fn run(args: RunArgs) -> Result<i32> {
    use wasm_exec_server::exec::{CommandSpec, PipeReader, Sink, Stdin, StreamKind};
    let limits = args.limits.to_limits(std::time::Duration::ZERO);
    // As `serve` opens a workspace: `.git` read-only, and the disk quota.
    let config = WorkspaceConfig {
        visible: args.workspace.visible.clone(),
        max_disk: limits.max_disk,
        ..WorkspaceConfig::new(&args.workspace.host)
    };
    let workspace = Workspace::from_config(&config)
        .with_context(|| format!("--workspace: cannot open {}", args.workspace.host.display()))?;
    let root = workspace.visible_root().to_owned();
    let cwd = match args.cwd {
        None => root.clone(),
        Some(c) if c.starts_with('/') => c,
        Some(c) => format!("{}/{c}", root.trim_end_matches('/')),
    };
    let cwd = workspace
        .resolve_cwd(&wasm_exec_server::fs::to_file_uri(&cwd))
        .map_err(|e| anyhow::anyhow!("--cwd {cwd}: {e}"))?;
    let mut spec = args.tools.to_spec();
    spec.tuning.memory_limit = Some(limits.max_memory as u64);
    spec.tuning.pool_slots =
        u32::try_from(limits.max_instances).unwrap_or(u32::MAX).min(MAX_POOL_SLOTS);
    let runtime = tokio::task::spawn_blocking(move || {
        let rt = wasm_exec_server::worker::load_runtime(&spec)?;
        tracing::info!(tools = rt.tools().count(), "loaded the tools");
        anyhow::Ok(rt)
    })
    .await??;
    let max_wall = limits.max_wall;
    let executor = Executor { runtime: Arc::new(runtime), workspace, limits };

    // The host's stdin, when it is not a terminal, becomes the command's.
    let (stdin, pump) = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        (Stdin::Closed, None)
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let pump = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut input = tokio::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = input.read(&mut buf).await {
                if n == 0 || tx.send(bytes::Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
            }
        });
        (Stdin::Pipe(PipeReader::from_channel(rx)), Some(pump))
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let env = wasm_exec_server::exec::sandbox_env(&root, "/bin/bash").into_iter().collect();
    let spec = CommandSpec {
        argv: vec!["bash".into(), "-c".into(), args.command.join(" ")],
        arg0: None,
        env,
        cwd,
        stdin,
        stdout: Sink::Output { tx: tx.clone(), stream: StreamKind::Stdout },
        stderr: Sink::Output { tx, stream: StreamKind::Stderr },
        tty: false,
    };
    let command = async {
        match tokio::time::timeout(max_wall, wasm_exec_server::shell::run_command(&executor, spec))
            .await
        {
            Ok(status) => status,
            Err(_) => {
                eprintln!(
                    "wasm-exec-server: the command ran longer than --max-wall and was stopped"
                );
                wasm_exec_server::exec::STATUS_KILLED
            }
        }
    };
    let drain = async {
        use std::io::Write;
        while let Some((stream, data)) = rx.recv().await {
            let _ = match stream {
                StreamKind::Stderr => std::io::stderr().write_all(&data),
                _ => std::io::stdout().write_all(&data).and_then(|()| std::io::stdout().flush()),
            };
        }
    };
    let (status, ()) = tokio::join!(command, drain);
    if let Some(p) = pump {
        p.abort();
    }
    Ok(status)
}

fn tools(cmd: ToolsCmd) -> Result<()> {
    use std::io::Write;
    use wasm_exec_server::exec::ToolSource;
    let spec = cmd.tools.to_spec();
    let rt = wasm_exec_server::worker::load_runtime(&spec)?;
    // `versions.txt` (written by tools/build.sh): `tool.wasm origin version`.
    let versions: std::collections::HashMap<String, (String, String)> = spec
        .bundled
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("versions.txt")).ok())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), (f.next()?.to_owned(), f.next()?.to_owned())))
        })
        .collect();
    let mut rows = Vec::new();
    for (name, tool) in rt.tools() {
        let (kind, origin, version, path) = match &tool.source {
            ToolSource::Bundled(p) => {
                let file = p.file_name().map(|f| f.to_string_lossy().into_owned());
                let (origin, version) = file
                    .and_then(|f| versions.get(&f).cloned())
                    .unwrap_or_else(|| ("bundled".into(), String::new()));
                ("bundled", origin, version, Some(p.display().to_string()))
            }
            ToolSource::Example => {
                ("example", "guest-examples".into(), env!("CARGO_PKG_VERSION").into(), None)
            }
            ToolSource::File(p) => {
                ("file", String::new(), String::new(), Some(p.display().to_string()))
            }
        };
        rows.push(serde_json::json!({
            "name": name, "kind": kind, "origin": origin, "version": version, "path": path,
        }));
    }
    for (name, what) in wasm_exec_server::hostcmd::DESCRIPTIONS {
        rows.push(serde_json::json!({
            "name": name, "kind": "host", "origin": what.trim_start_matches("host: "),
            "version": env!("CARGO_PKG_VERSION"), "path": null,
        }));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if cmd.json {
        serde_json::to_writer_pretty(&mut out, &rows)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        rows.iter().try_for_each(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            let what = match (field("kind").as_str(), field("path")) {
                ("host", _) => format!("host: {}", field("origin")),
                ("example", _) => "guest-examples (embedded)".to_owned(),
                (kind, path) if field("version").is_empty() => format!("{kind}: {path}"),
                (kind, path) => {
                    format!("{kind}: {} {} ({path})", field("origin"), field("version"))
                }
            };
            writeln!(out, "{:<16} {what}", field("name"))
        })
    };
    // A closed pipe (`tools | head`) ends the listing quietly, as in cat.
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The log filter without `RUST_LOG`. wasmtime-wasi opens an info-level
/// span, with its arguments formatted, for every WASI call a guest makes:
/// about 5% of the server's time on short wasm commands, for spans that
/// carry no event at this level.
const DEFAULT_LOG_FILTER: &str = "info,wasmtime_wasi=warn";

/// Panics are logged as events of the log (one JSON object per line with
/// `--log-format json`), not printed as raw text beside it. Most are caught
/// where they happen (a dependency's panic inside a host command becomes
/// that command's error) and the server goes on, so the line is all that is
/// left of them; RUST_BACKTRACE=1 adds the backtrace to it.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a panic payload that is not text)");
        let thread = std::thread::current();
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        // Recorded only when captured (RUST_BACKTRACE): a `None` field is left out.
        let backtrace = (backtrace.status() == std::backtrace::BacktraceStatus::Captured)
            .then(|| backtrace.to_string());
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %location,
            panic = message,
            backtrace = backtrace.as_deref(),
            "a thread panicked"
        );
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    wasm_exec_server::release::no_huge_pages();
    wasm_exec_server::release::start_background();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into());
    // Colours only on a terminal: a log file or collector gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    log_panics();
    let runtime = |threads| {
        wasm_exec_server::release::runtime(threads).context("cannot start the async runtime")
    };
    let result = match cli.command {
        Command::Serve(args) => runtime(args.connection_threads)
            .and_then(|rt| rt.block_on(serve(*args, cli.log_format)))
            .map(|()| 0),
        // No async runtime before the worker has confined itself.
        Command::Worker => wasm_exec_server::worker::child::main().map(|()| 0),
        Command::Tools(args) => tools(args).map(|()| 0),
        // As ssh: 255 says the client failed, not the command.
        Command::Exec(args) => match runtime(0).and_then(|rt| rt.block_on(exec(args))) {
            Err(e) => {
                eprintln!("wasm-exec-server exec: {e:#}");
                return ExitCode::from(255);
            }
            ok => ok,
        },
        Command::Run(args) => runtime(0).and_then(|rt| rt.block_on(run(args))),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("wasm-exec-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
