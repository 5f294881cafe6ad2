//! `bench`: measures exec-servers over the real protocol and prints one
//! markdown table, ours beside the reference (`codex exec-server`) with the
//! ratio between them.
//!
//! It can measure servers that are already running (`--url`, `--ref-url`,
//! with `--cwd` naming a directory both can use), or start them itself
//! (`--spawn-ours`, `--spawn-reference`) on a fresh temporary workspace; only
//! then can it measure memory (the server's `VmRSS`) and cold start. Fixture
//! files are written through `fs/writeFile`, so the same code serves both
//! modes. Each figure has a time budget (`--seconds`), which keeps a full run
//! with both servers to a few minutes.
//!
//! Every command is checked once for the output it should give before it is
//! timed: a fast "command not found" must not pass for a fast command.

mod sections;
mod server;
mod table;
mod tree;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use sections::{
    Target, cold_start, fs_throughput, latency, memory, streaming, throughput, write_fixtures,
};
use server::Launch;
use std::path::{Path, PathBuf};
use std::time::Duration;
use table::{Figure, Table, dur, sig};

/// Measures exec-servers over the WebSocket protocol.
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    /// A running wasm-exec-server to measure (its workspace must contain --cwd).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// A running reference server (`codex exec-server`) to measure.
    #[arg(long, value_name = "URL")]
    ref_url: Option<String>,
    /// Directory where commands run and fixtures are written, for --url /
    /// --ref-url; the server must see it at the same path (spawned servers
    /// use a temporary directory).
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Start our server: the `wasm-exec-server` next to this binary, or PATH.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    spawn_ours: Option<String>,
    /// Start the reference server: `codex` from PATH, or the given `codex`
    /// (the npm launcher is replaced by the native binary it would run).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "codex")]
    spawn_reference: Option<String>,
    /// The bundled toolset for our spawned server.
    #[arg(long, value_name = "DIR", env = "WES_TOOLS_DIR")]
    bundled: Option<PathBuf>,
    /// Time budget of each latency and throughput figure.
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    seconds: f64,
    /// Idle connections and blocked processes for the memory figures.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    memory_count: usize,
    /// The density figure (ours only): tenants, idle connections and
    /// processes blocked on stdin held at once, as `TENANTS,IDLE,BLOCKED`.
    #[arg(long, default_value = "10,10000,2000", value_name = "T,IDLE,BLOCKED")]
    density: String,
    /// Server launches for the cold-start figure.
    #[arg(long, default_value_t = 5, value_name = "N")]
    cold_runs: usize,
    /// Also time this command line (`bash -lc LINE`, must exit 0). Repeatable.
    #[arg(long = "command", value_name = "LINE")]
    commands: Vec<String>,
    /// Keep the spawned servers' logs (stderr) in this directory; by default
    /// they go to /dev/null (formatted, but not written to disk).
    #[arg(long, value_name = "DIR")]
    server_logs: Option<PathBuf>,
    /// Sections to leave out: latency, throughput, stream, fs, tree, memory,
    /// density, cold.
    #[arg(long, value_delimiter = ',', value_name = "SECTION")]
    skip: Vec<String>,
    /// Size of the tree the `tree` section searches (copied from the cargo
    /// registry's sources, or generated when there are none), in MB.
    #[arg(long, default_value_t = 256, value_name = "MB")]
    tree_mb: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ours,
    Reference,
}

/// Bytes the streaming command writes: 100 MiB (`flood` counts 64 KiB blocks).
const STREAM_BYTES: u64 = 100 << 20;
/// Lines of the pipeline fixture `f`; every third contains an `x`.
const FIXTURE_LINES: usize = 1000;

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Reference => "reference",
        }
    }
    fn echo_argv(self) -> Vec<String> {
        match self {
            Kind::Ours => strings(&["echo", "hi"]),
            Kind::Reference => strings(&["/bin/echo", "hi"]),
        }
    }
    fn stream_argv(self) -> Vec<String> {
        match self {
            Kind::Ours => strings(&["flood", "1600"]),
            Kind::Reference => {
                strings(&["/usr/bin/head", "-c", &STREAM_BYTES.to_string(), "/dev/zero"])
            }
        }
    }
    /// A command that blocks reading stdin.
    fn blocked_argv(self) -> Vec<String> {
        match self {
            Kind::Ours => strings(&["line-echo"]),
            Kind::Reference => strings(&["/bin/cat"]),
        }
    }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

fn bash(line: &str) -> Vec<String> {
    strings(&["/bin/bash", "-lc", line])
}

pub(crate) fn file_uri(path: &str) -> Result<String> {
    ensure!(
        path.starts_with('/')
            && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b)),
        "use a plain absolute path for --cwd (got {path})"
    );
    Ok(format!("file://{path}"))
}

fn loopback_only(url: &str) -> Result<()> {
    ensure!(
        url.starts_with("ws://127.0.0.1:")
            || url.starts_with("ws://localhost:")
            || url.starts_with("ws://[::1]:"),
        "only loopback servers are measured (got {url})"
    );
    Ok(())
}

fn skip(args: &Args, section: &str) -> bool {
    args.skip.iter().any(|s| s == section)
}

/// The sections that work on any URL.
async fn measure(args: &Args, t: &Target, table: &mut Table) -> Result<()> {
    let budget = Duration::from_secs_f64(args.seconds);
    let who = t.kind.label();
    eprintln!("[{who}] writing fixtures in {}", t.cwd);
    let expect = write_fixtures(&t.dir)?;
    if !skip(args, "latency") {
        eprintln!("[{who}] latency");
        latency(t, table, budget, &expect, &args.commands).await?;
    }
    if !skip(args, "throughput") {
        eprintln!("[{who}] commands/s");
        throughput(t, table, budget.mul_f64(0.67)).await?;
    }
    if !skip(args, "stream") {
        eprintln!("[{who}] streaming");
        streaming(t, table).await?;
    }
    if !skip(args, "fs") {
        eprintln!("[{who}] fs");
        fs_throughput(t, table, budget).await?;
    }
    if t.kind == Kind::Ours && !skip(args, "tree") {
        eprintln!("[{who}] tools on a real tree");
        table.notes.push(tree::tree(t, args.tree_mb).await?);
    }
    Ok(())
}

/// The targets, met or not, from whatever was measured.
fn targets(table: &Table) -> Vec<String> {
    let mut out = vec![];
    let p50 = |name: &str, kind: Kind| {
        let r = table.get(name)?;
        let f = if kind == Kind::Ours { r.ours.as_ref() } else { r.reference.as_ref() };
        f.map(Figure::headline)
    };
    let mut verdict = |what: String, ok: bool| {
        out.push(format!("- {} {what}", if ok { "MET" } else { "NOT MET" }))
    };
    let speedup = |name: &str| Some(p50(name, Kind::Reference)? / p50(name, Kind::Ours)?);
    if let Some(x) = speedup("1. start→closed, `bash -lc 'echo hi'`: p50 / p90 / p99") {
        verdict(
            format!("`bash -lc 'echo hi'` p50 ≥ 100× faster than reference: {}×", sig(x)),
            x >= 100.0,
        );
    }
    if let Some(x) =
        speedup("1. start→closed, `cat f | grep x | wc -l` (bash -lc): p50 / p90 / p99")
    {
        verdict(
            format!("3-stage pipeline p50 ≥ 50× faster than reference: {}×", sig(x)),
            x >= 50.0,
        );
    }
    for label in ["`echo hi` argv", "`bash -lc 'echo hi'`"] {
        if let Some(v) = p50(&format!("3. commands/s, {label}, 8 connections"), Kind::Ours) {
            verdict(
                format!("≥ 20,000 commands/s on 8 connections ({label}): {v:.0}/s"),
                v >= 20_000.0,
            );
        }
    }
    let stream = table.rows.iter().find(|r| r.name.starts_with("4. "));
    if let Some(v) = stream.and_then(|r| r.ours.as_ref()).map(Figure::headline) {
        verdict(format!("streaming ≥ 300 MB/s: {v:.0} MB/s"), v >= 300.0);
    }
    for label in ["1 MB", "50 MB"] {
        let name = format!("5. fs/readFile {label}");
        if let (Some(o), Some(r)) = (p50(&name, Kind::Ours), p50(&name, Kind::Reference)) {
            verdict(
                format!("fs/readFile {label} at least as fast as reference: {o:.0} vs {r:.0} MB/s"),
                o >= r,
            );
        }
    }
    for (prefix, limit, what) in [
        ("6. memory per idle", 64.0, "idle connection ≤ 64 KiB"),
        ("6. memory per process blocked on stdin, server", 256.0, "blocked process ≤ 256 KiB"),
    ] {
        if let Some(v) =
            table.rows.iter().find(|r| r.name.starts_with(prefix)).and_then(|r| r.ours.as_ref())
        {
            verdict(format!("{what}: {:.1} KiB", v.headline()), v.headline() <= limit);
        }
    }
    if let Some(r) = table.rows.iter().find(|r| r.name.starts_with("8. density: benign p50 loaded"))
    {
        if let Some(v) = r.ours.as_ref().map(Figure::headline) {
            let held = r.name.trim_start_matches("8. density: benign p50 loaded / unloaded ");
            verdict(
                format!("benign echo p50 ≤ 2× unloaded while holding {held}: {v:.2}×"),
                v <= 2.0,
            );
        }
    }
    if let Some(v) = p50("7. cold start: launch → first `bash -lc 'echo hi'` closed", Kind::Ours)
    {
        let compiled = table.modules_compiled.unwrap_or(u64::MAX);
        let what = format!(
            "cold start < 100 ms with no module compiled at run time: {} (p50), {compiled} \
             modules compiled",
            dur(Duration::from_secs_f64(v))
        );
        verdict(what, v < 0.1 && compiled == 0);
    }
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = std::env::temp_dir().join(format!("wes-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let workspace = std::fs::canonicalize(&tmp)?.join("ws");
    std::fs::create_dir_all(&workspace)?;
    let result = bench(&args, &tmp, &workspace).await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn bench(args: &Args, tmp: &Path, workspace: &Path) -> Result<()> {
    let given_dir = match &args.cwd {
        Some(p) => {
            Some(std::fs::canonicalize(p).with_context(|| format!("--cwd {}", p.display()))?)
        }
        None => None,
    };
    let mut table = Table::default();
    let before = machine_speed();
    let mut plan: Vec<(Kind, Source)> = vec![];
    if let Some(program) = &args.spawn_ours {
        let bundled = args.bundled.clone().or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(PathBuf::from(home).join(".cache/wasm-exec-server/tools")).filter(|p| p.is_dir())
        });
        plan.push((
            Kind::Ours,
            Source::Spawn(Launch::ours(
                program,
                workspace,
                bundled.as_deref(),
                args.server_logs.as_deref(),
            )?),
        ));
    } else if let Some(url) = &args.url {
        plan.push((Kind::Ours, Source::Url(url.clone())));
    }
    if let Some(program) = &args.spawn_reference {
        plan.push((
            Kind::Reference,
            Source::Spawn(Launch::reference(program, tmp, args.server_logs.as_deref())?),
        ));
    } else if let Some(url) = &args.ref_url {
        plan.push((Kind::Reference, Source::Url(url.clone())));
    }
    ensure!(
        !plan.is_empty(),
        "nothing to measure: give --spawn-ours / --url and/or --spawn-reference / --ref-url"
    );
    for (kind, source) in plan {
        let (server, url, dir) = match &source {
            Source::Url(url) => {
                loopback_only(url)?;
                (
                    None,
                    url.clone(),
                    given_dir.clone().context("--cwd is required with --url / --ref-url")?,
                )
            }
            Source::Spawn(l) => {
                eprintln!(
                    "[{}] starting {} (the first start may compile the toolset)",
                    kind.label(),
                    l.program.display()
                );
                let s = l.start(Duration::from_secs(900)).await?;
                let url = s.url.clone();
                (Some(s), url, workspace.to_path_buf())
            }
        };
        let pid = server.as_ref().map(|s: &server::Server| s.pid);
        let target = Target { kind, url, cwd: file_uri(&dir.display().to_string())?, dir, pid };
        measure(args, &target, &mut table).await?;
        if let Some(server) = server {
            server.stop().await;
        }
        // Memory and cold start need servers of their own.
        if let Source::Spawn(l) = &source {
            measure_fresh(args, &target, l, &mut table).await?;
        }
    }
    let after = machine_speed();
    table.notes.push(format!(
        "Machine speed check (shared cloud machines vary by tens of percent from minute to minute, \
         and our figures with them, the reference's much less): a fixed CPU loop {} before, {} \
         after; 20,000 thread wake-ups {} before, {} after.",
        dur(before.0),
        dur(after.0),
        dur(before.1),
        dur(after.1)
    ));
    table.print();
    println!("\nTargets:");
    for t in targets(&table) {
        println!("{t}");
    }
    Ok(())
}

/// How long fixed work takes on this machine now (best of 5): a CPU-bound
/// loop, and 20,000 thread wake-ups (a handoff between two threads, the
/// kernel path a server takes per message), to tell a slow phase of a
/// shared machine from a slow build.
fn machine_speed() -> (Duration, Duration) {
    let best = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let cpu = best(&|| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    });
    let wakeups = best(&|| {
        let (to_tx, to_rx) = std::sync::mpsc::channel::<u32>();
        let (back_tx, back_rx) = std::sync::mpsc::channel::<u32>();
        let echo = std::thread::spawn(move || {
            while let Ok(v) = to_rx.recv() {
                if back_tx.send(v).is_err() {
                    break;
                }
            }
        });
        for i in 0..10_000 {
            if to_tx.send(i).is_err() || back_rx.recv().is_err() {
                break;
            }
        }
        drop(to_tx);
        let _ = echo.join();
    });
    (cpu, wakeups)
}

/// Where a server under test comes from.
enum Source {
    Url(String),
    Spawn(Launch),
}

/// The sections that need servers of their own.
async fn measure_fresh(args: &Args, t: &Target, launch: &Launch, table: &mut Table) -> Result<()> {
    if !skip(args, "memory") {
        eprintln!(
            "[{}] memory ({n} idle connections, {n} blocked processes)",
            t.kind.label(),
            n = args.memory_count
        );
        memory(launch, &t.cwd, args.memory_count, table).await?;
    }
    if t.kind == Kind::Ours && !skip(args, "density") {
        let n: Vec<usize> = args
            .density
            .split(',')
            .map(|x| x.trim().parse())
            .collect::<Result<_, _>>()
            .context("--density: three numbers, TENANTS,IDLE,BLOCKED")?;
        let [tenants, idle, blocked] = n[..] else { anyhow::bail!("--density: three numbers") };
        ensure!(tenants > 0 && idle > 0 && blocked > 0, "--density: each number above 0");
        eprintln!(
            "[ours] density ({tenants} tenants, {idle} idle connections, {blocked} blocked processes)"
        );
        let d = sections::Density { tenants, idle, blocked };
        sections::density(
            &launch.program.display().to_string(),
            args.bundled.as_deref(),
            &std::env::temp_dir(),
            args.server_logs.as_deref(),
            &d,
            table,
        )
        .await?;
    }
    if !skip(args, "cold") {
        eprintln!("[{}] cold start", t.kind.label());
        cold_start(launch, &t.cwd, args.cold_runs, table).await?;
    }
    Ok(())
}
