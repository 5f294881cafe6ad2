//! The `wasm-exec-server` binary: CLI parsing into a validated
//! configuration, tracing set-up, and the subcommands.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use wasm_exec_server::config::{Limits, WorkspaceSpec, parse_duration, parse_size};
use wasm_exec_server::exec::{Executor, Runtime};
use wasm_exec_server::fs::Workspace;
use wasm_exec_server::session::ServerContext;

/// A Codex exec-server that runs every command as a WebAssembly (WASI)
/// module under wasmtime, confined to a workspace directory.
///
/// Point Codex at it with `CODEX_EXEC_SERVER_URL=ws://127.0.0.1:PORT codex`.
#[derive(Parser)]
#[command(name = "wasm-exec-server", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the exec-server protocol over WebSocket.
    Serve(ServeArgs),
    /// List the tools commands can run, and where each comes from.
    Tools(ToolArgs),
}

#[derive(Args)]
struct ToolArgs {
    /// The bundled toolset (coreutils, grep, sed, …) built by `tools/build.sh`.
    /// Skipped with a warning when the directory does not exist.
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
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on, as `ws://IP:PORT`. Port 0 picks a free port; the
    /// bound URL is printed as the first line on stdout.
    #[arg(long, default_value = "ws://127.0.0.1:0", value_name = "URL")]
    listen: String,

    /// The workspace root: `DIR`, or `DIR:VISIBLE_PATH` to show it to clients
    /// and commands at another absolute path. By default clients see DIR's
    /// canonical path, which should be the directory you run `codex` in.
    #[arg(long, value_name = "DIR[:VISIBLE]")]
    workspace: WorkspaceSpec,

    #[command(flatten)]
    tools: ToolArgs,

    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct LimitArgs {
    /// Linear memory per wasm instance (e.g. 512M, 1G).
    #[arg(long, default_value = "1G", value_parser = parse_size, value_name = "SIZE")]
    max_memory: u64,
    /// Wall-clock time per command (e.g. 90s, 30m); the command is stopped
    /// with status 137 when it runs longer.
    #[arg(long, default_value = "30m", value_parser = parse_duration, value_name = "DURATION")]
    max_wall: std::time::Duration,
    /// Output a command may write in total before it is stopped (137).
    #[arg(long, default_value = "1G", value_parser = parse_size, value_name = "SIZE")]
    max_output: u64,
    /// Output kept per process for `process/read` after reconnecting.
    #[arg(long, default_value = "1M", value_parser = parse_size, value_name = "SIZE")]
    retained_output: u64,
    /// Processes running at once per session.
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_processes: usize,
    /// Largest file `fs/readFile` returns and `fs/writeFile` accepts.
    #[arg(long, default_value = "64M", value_parser = parse_size, value_name = "SIZE")]
    max_file: u64,
    /// `process/write` bytes a command has not read yet before writes fail.
    #[arg(long, default_value = "1M", value_parser = parse_size, value_name = "SIZE")]
    max_stdin_buffer: u64,
}

impl LimitArgs {
    fn to_limits(&self) -> Limits {
        Limits {
            max_memory: self.max_memory as usize,
            max_wall: self.max_wall,
            retained_output: self.retained_output as usize,
            max_output: self.max_output,
            max_processes: self.max_processes.max(1),
            max_file: self.max_file,
            max_stdin_buffer: self.max_stdin_buffer as usize,
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wasm-exec-server").join("modules"))
}

fn load_runtime(args: &ToolArgs) -> Result<Runtime> {
    let cache = args.cache_dir.clone().or_else(default_cache_dir);
    let mut rt = Runtime::new(cache).context("could not set up the wasm engine")?;
    rt.add_examples().context("could not load the example guests")?;
    match &args.bundled {
        Some(dir) if dir.is_dir() => {
            let n = rt.add_bundled(dir).with_context(|| format!("could not load the toolset in {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), modules = n, "loaded the bundled toolset");
        }
        Some(dir) => tracing::warn!(
            dir = %dir.display(),
            "the bundled toolset is not built; run `tools/build.sh` (or `./dev serve`, which does it)"
        ),
        None => {}
    }
    for dir in &args.tools {
        rt.add_dir(dir).with_context(|| format!("could not load tools from {}", dir.display()))?;
    }
    Ok(rt)
}

fn parse_listen(url: &str) -> Result<std::net::SocketAddr> {
    let Some(addr) = url.strip_prefix("ws://") else {
        bail!("--listen must look like ws://IP:PORT (got `{url}`); for TLS put a proxy in front");
    };
    addr.trim_end_matches('/')
        .parse()
        .with_context(|| format!("--listen: `{addr}` is not an IP:PORT address (e.g. 127.0.0.1:8765)"))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let addr = parse_listen(&args.listen)?;
    let workspace = Workspace::open(&args.workspace.host, args.workspace.visible.as_deref())
        .with_context(|| format!("--workspace: cannot open {}", args.workspace.host.display()))?;
    let runtime = tokio::task::spawn_blocking({
        let tools = ToolArgs { bundled: args.tools.bundled.clone(), tools: args.tools.tools.clone(), cache_dir: args.tools.cache_dir.clone() };
        move || load_runtime(&tools)
    })
    .await??;
    let executor = Executor { runtime: Arc::new(runtime), workspace, limits: args.limits.to_limits() };
    let ctx = Arc::new(ServerContext::new(executor));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    println!("ws://{bound}");
    tracing::info!(url = %format!("ws://{bound}"), workspace = %ctx.executor.workspace.visible_root(), "listening");
    wasm_exec_server::server::run(listener, ctx, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

fn tools(args: ToolArgs) -> Result<()> {
    let rt = load_runtime(&args)?;
    for (name, tool) in rt.tools() {
        println!("{name:<16} {}", tool.source);
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(serve(args)),
            Err(e) => Err(e.into()),
        },
        Command::Tools(args) => tools(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasm-exec-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
