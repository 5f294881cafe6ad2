//! Starting the servers under test and reading what they use: the URL they
//! print, their resident memory, their children's, and our `/metrics`.

use crate::{Kind, loopback_only, strings};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// How to start a server of one kind.
#[derive(Clone)]
pub struct Launch {
    pub kind: Kind,
    pub program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Where the server's log goes (stderr); none: /dev/null.
    log: Option<PathBuf>,
}

/// A server this program started; killed when dropped.
pub struct Server {
    child: tokio::process::Child,
    pub pid: u32,
    pub url: String,
    _stdout: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Server {
    /// Kills the server and waits, up to 30 s, until it and its children
    /// (our tenants' workers, the reference's shells) are gone. A server
    /// that held thousands of connections takes a few hundred milliseconds
    /// to tear down, and the next section's figures paid for it: the first
    /// cold start after the density section took 309 ms against 46–69 ms.
    pub async fn stop(mut self) {
        let kids = children(self.pid);
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        // Not gone, and not a zombie its new parent has yet to reap.
        let alive = |pid: &u32| {
            stat_fields(&pid.to_string()).is_some_and(|f| f.split_whitespace().next() != Some("Z"))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while kids.iter().any(alive) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Our server binary: the given path, or the `wasm-exec-server` next to
/// this one.
fn our_program(program: &str) -> Result<PathBuf> {
    Ok(if program.is_empty() {
        std::env::current_exe()?.with_file_name("wasm-exec-server")
    } else {
        PathBuf::from(program)
    })
}

impl Launch {
    pub fn ours(
        program: &str,
        workspace: &Path,
        bundled: Option<&Path>,
        logs: Option<&Path>,
    ) -> Result<Self> {
        let program = our_program(program)?;
        let mut args = strings(&["serve", "--listen", "ws://127.0.0.1:0", "--workspace"]);
        args.push(workspace.display().to_string());
        if let Some(b) = bundled {
            args.extend(["--bundled".into(), b.display().to_string()]);
        }
        // Room for the memory figures; no request-rate cap on a benchmark.
        args.extend(strings(&[
            "--max-connections",
            "2000",
            "--max-processes",
            "2000",
            // Every blocked process holds a wasm instance: without room for
            // them all, those past the default 256 would fail to start and
            // the memory row would count only the first 256.
            "--max-instances",
            "1024",
            "--requests-per-second",
            "100000000",
        ]));
        Ok(Self {
            kind: Kind::Ours,
            program,
            args,
            env: vec![],
            log: logs.map(|d| d.join("ours.log")),
        })
    }

    /// Our server with a tenants file instead of one workspace.
    pub fn ours_tenants(
        program: &str,
        config: &Path,
        bundled: Option<&Path>,
        logs: Option<&Path>,
    ) -> Result<Self> {
        let program = our_program(program)?;
        let mut args = strings(&["serve", "--listen", "ws://127.0.0.1:0", "--config"]);
        args.push(config.display().to_string());
        if let Some(b) = bundled {
            args.extend(["--bundled".into(), b.display().to_string()]);
        }
        Ok(Self {
            kind: Kind::Ours,
            program,
            args,
            env: vec![],
            log: logs.map(|d| d.join("ours-density.log")),
        })
    }

    pub fn reference(program: &str, tmp: &Path, logs: Option<&Path>) -> Result<Self> {
        let home = tmp.join("codex-home");
        std::fs::create_dir_all(&home)?;
        Ok(Self {
            kind: Kind::Reference,
            program: native_codex(program)?,
            args: strings(&["exec-server", "--listen", "ws://127.0.0.1:0"]),
            env: vec![("CODEX_HOME".into(), home.display().to_string())],
            log: logs.map(|d| d.join("reference.log")),
        })
    }

    /// Starts the server and waits for the URL it prints.
    pub async fn start(&self, timeout: Duration) -> Result<Server> {
        let log = match &self.log {
            Some(path) => std::process::Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(path)?,
            ),
            None => std::process::Stdio::null(),
        };
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let pid = child.id().context("server exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(timeout, lines.next_line())
            .await
            .with_context(|| format!("{} printed no URL in {timeout:?}", self.program.display()))??
            .with_context(|| {
                format!("{} exited without a URL (see --server-logs)", self.program.display())
            })?;
        let url = first.trim().to_owned();
        loopback_only(&url)?;
        let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, pid, url, _stdout: drain })
    }
}

/// The npm package's `codex` is a node launcher for a native binary; run the
/// binary itself, so that cold start and memory are the server's own.
pub fn native_codex(program: &str) -> Result<PathBuf> {
    let path = if program.contains('/') {
        PathBuf::from(program)
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
            .with_context(|| format!("{program} is not on PATH"))?
    };
    let real = std::fs::canonicalize(&path).with_context(|| format!("{}", path.display()))?;
    if real.extension().is_none_or(|e| e != "js") {
        return Ok(real);
    }
    // node_modules/@openai/codex/bin/codex.js →
    //   node_modules/@openai/codex-<platform>/vendor/<triple>/bin/codex
    let scope = real.ancestors().nth(3).context("unexpected launcher layout")?;
    for pkg in std::fs::read_dir(scope)?.flatten() {
        let vendor = pkg.path().join("vendor");
        let Ok(triples) = std::fs::read_dir(&vendor) else { continue };
        for t in triples.flatten() {
            let bin = t.path().join("bin").join("codex");
            if bin.is_file() {
                return Ok(bin);
            }
        }
    }
    bail!("no native codex binary next to {}", real.display())
}

/// Resident memory of a process, in KiB.
pub fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// The live child processes of `pid` (of any of its threads).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let path = task.path().join("children");
        let list = std::fs::read_to_string(path).unwrap_or_default();
        out.extend(list.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
    }
    out
}

/// Resident memory of our server in KiB: the front process and its tenants'
/// worker processes together (each tenant's sessions and commands live in
/// its worker).
pub fn our_rss_kib(pid: u32) -> Result<u64> {
    let mut kib = vm_rss_kib(pid)?;
    for child in children(pid) {
        kib += vm_rss_kib(child).unwrap_or(0);
    }
    Ok(kib)
}

/// CPU time of a server process and its live children (our tenants'
/// workers, the reference's commands) plus its reaped ones.
pub fn tree_cpu_time(pid: u32) -> Option<Duration> {
    let mut t = cpu_time(&pid.to_string())?;
    for child in children(pid) {
        t += cpu_time(&child.to_string()).unwrap_or_default();
    }
    Some(t)
}

/// Proportional set size of every descendant of `pid`, in KiB (the native
/// processes a reference server spawns).
pub fn descendants_pss_kib(pid: u32) -> u64 {
    let mut parent = std::collections::HashMap::<u32, Vec<u32>>::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        // The state, then the parent pid.
        let ppid =
            stat_fields(&p.to_string()).and_then(|f| f.split_whitespace().nth(1)?.parse().ok());
        if let Some(pp) = ppid {
            parent.entry(pp).or_default().push(p);
        }
    }
    let mut total = 0;
    let mut stack = parent.get(&pid).cloned().unwrap_or_default();
    while let Some(p) = stack.pop() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            total += s
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        stack.extend(parent.get(&p).cloned().unwrap_or_default());
    }
    total
}

/// CPU time a process and its reaped children have used (`self` for this
/// one), from `/proc/PID/stat`.
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let rest = stat_fields(pid)?;
    // After `(comm)`: state is field 3, utime 14, stime 15, cutime 16, cstime 17,
    // in USER_HZ ticks, which Linux fixes at 100 per second for user space.
    let ticks: u64 =
        rest.split_whitespace().skip(11).take(4).filter_map(|f| f.parse::<u64>().ok()).sum();
    Some(Duration::from_millis(ticks * 10))
}

/// The fields of `/proc/PID/stat` after `(comm)` (which may hold blanks and
/// parentheses), from the state on; `None` once the process is gone.
fn stat_fields(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.to_owned())
}

/// `module_cache{result="miss"}` from our `/metrics`: modules compiled since start.
pub async fn modules_compiled(url: &str) -> Result<u64> {
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter(|l| {
            l.contains("module_cache") && l.contains("result=\"miss\"") && !l.starts_with('#')
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}
