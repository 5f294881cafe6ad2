//! One worker process per tenant: the second wall.
//!
//! With confinement on (`--confinement auto`, the default, or `required`),
//! `serve` runs as a **front** process ([`front`]) that faces the network:
//! it accepts, reads each request's head without consuming it, answers
//! `/readyz`, `/metrics` and refusals itself, and hands every authenticated
//! WebSocket connection, as its descriptor, to its tenant's **worker**
//! ([`child`]) over a Unix socket ([`control`]). The worker serves the
//! connection from its first byte (no bytes are proxied) and runs
//! everything else: sessions, the shell, host commands (git, apply_patch,
//! stat, …) and the wasm engine, under Landlock, seccomp and process limits
//! ([`confine`]).
//!
//! A worker is a fresh `exec` of the server binary (`wasm-exec-server
//! worker`), started on a tenant's first connection. It lives while it has
//! connections or sessions, then for the detach grace, and asks the front to
//! retire it. A worker that dies ends only its tenant's sessions; the next
//! connection starts a new one. Resumes reach the same worker, since all of a
//! tenant's connections go to it.

pub mod admin;
pub mod child;
pub mod confine;
pub mod control;
pub mod front;

use crate::config::{TenantSpec, ToolsSpec};
use crate::exec::Runtime;
use anyhow::Context;
use std::time::Duration;

/// `--confinement`: how far each tenant's host-side work is confined by the
/// operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Workers, and refuse to start where Landlock or seccomp is missing.
    Required,
    /// Workers, confined as far as the kernel allows (one warning names
    /// what is missing).
    Auto,
    /// One process, no workers (macOS, development).
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "required" => Ok(Mode::Required),
            "auto" => Ok(Mode::Auto),
            "off" => Ok(Mode::Off),
            _ => Err(format!("`{s}`: expected required, auto or off")),
        }
    }
}

/// Everything a worker needs to start: the first message it receives.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WorkerSpec {
    pub tenant: TenantSpec,
    pub tools: ToolsSpec,
    pub mode: Mode,
    /// How long running commands may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Test-only switches (`WES_TEST_HOOKS`, debug builds only): the
    /// in-process path checks of git off, and the `__wes_probe` builtin.
    pub test_hooks: bool,
}

/// The engine with every tool registered: the example guests, the bundled
/// toolset, then the extra directories (later names win).
pub fn load_runtime(spec: &ToolsSpec) -> anyhow::Result<Runtime> {
    let mut rt = Runtime::with_tuning(spec.cache_dir.clone(), spec.tuning.clone())
        .context("could not set up the wasm engine")?;
    rt.add_examples().context("could not load the example guests")?;
    match &spec.bundled {
        Some(dir) if dir.is_dir() => {
            let n = rt
                .add_bundled(dir)
                .with_context(|| format!("could not load the toolset in {}", dir.display()))?;
            tracing::debug!(dir = %dir.display(), modules = n, "loaded the bundled toolset");
        }
        Some(dir) => tracing::warn!(
            dir = %dir.display(),
            "the bundled toolset is not built; run `tools/build.sh` \
             (or `./dev serve`, which does it)"
        ),
        None => {}
    }
    for dir in &spec.dirs {
        rt.add_dir(dir).with_context(|| format!("could not load tools from {}", dir.display()))?;
    }
    if !rt.has_toolset() {
        tracing::warn!(
            "NO TOOLSET LOADED: commands such as ls, cat and grep will fail with 127. Build \
             the toolset with tools/build.sh (or start the server with ./dev serve, which \
             does it) and pass --bundled DIR or set WES_TOOLS_DIR"
        );
    }
    Ok(rt)
}

/// Test-only switches, set once in a worker started with them.
pub mod hooks {
    use std::sync::atomic::{AtomicBool, Ordering};

    static ON: AtomicBool = AtomicBool::new(false);

    /// Whether the test hooks are on (never in release builds).
    pub fn on() -> bool {
        cfg!(debug_assertions) && ON.load(Ordering::Relaxed)
    }

    pub fn enable() {
        ON.store(true, Ordering::Relaxed);
    }

    /// Whether the front was started with `WES_TEST_HOOKS=1` (debug builds).
    pub fn requested() -> bool {
        cfg!(debug_assertions) && std::env::var_os("WES_TEST_HOOKS").is_some_and(|v| v == "1")
    }
}

/// What the `__wes_probe` test builtin reports: each attempt and whether the
/// operating system allowed it. `args` are host paths to try to read.
pub fn probe(args: &[String]) -> String {
    fn result<T>(r: std::io::Result<T>) -> String {
        match r {
            Ok(_) => "allowed".into(),
            Err(e) => format!("denied ({e})"),
        }
    }
    let mut out = format!("pid: {}\n", std::process::id());
    out += &format!("tcp-listen: {}\n", result(std::net::TcpListener::bind("127.0.0.1:0")));
    out += &format!("tcp-connect: {}\n", result(std::net::TcpStream::connect("127.0.0.1:9")));
    out += &format!("udp: {}\n", result(std::net::UdpSocket::bind("127.0.0.1:0")));
    out += &format!("unix: {}\n", result(std::os::unix::net::UnixDatagram::unbound()));
    let exec = std::process::Command::new("/bin/sh")
        .args(["-c", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    out += &format!("exec: {}\n", result(exec));
    for path in args {
        out += &format!("read {path}: {}\n", result(std::fs::read(path)));
    }
    out
}
