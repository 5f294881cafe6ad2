//! Test helpers: a real server on 127.0.0.1:0 over a temporary workspace,
//! and a client for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use wasm_exec_server::client::Client;
use wasm_exec_server::config::{Limits, TenantSpec, WorkspaceConfig};
use wasm_exec_server::exec::Runtime;
use wasm_exec_server::tenant::{Gate, Tenant};

#[allow(unused_imports)]
pub use wasm_exec_server::client::{ClientError, Finished};

/// One engine and tool registry for the whole test binary: modules are
/// compiled once (and cached on disk under the target directory).
pub fn runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache");
        let mut rt = Runtime::new(Some(cache)).expect("engine");
        rt.add_examples().expect("example guests");
        if let Some(dir) = bundled_tools() {
            rt.add_bundled(&dir).expect("bundled toolset");
        }
        Arc::new(rt)
    })
    .clone()
}

/// The bundled toolset, when built (`WES_TOOLS_DIR`, or the default cache).
pub fn bundled_tools() -> Option<PathBuf> {
    let dir = std::env::var_os("WES_TOOLS_DIR").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/wasm-exec-server/tools"))
    })?;
    dir.join("aliases.txt").exists().then_some(dir)
}

/// A tenant as `serve` builds one, with its root at `root` and the guests'
/// `/tmp` inside the test's own directory.
fn tenant(
    id: &str,
    root: &Path,
    visible: Option<&str>,
    dir: &tempfile::TempDir,
    limits: &Limits,
) -> Tenant {
    let workspace = WorkspaceConfig {
        visible: visible.map(str::to_owned),
        max_disk: limits.max_disk,
        scratch_parent: Some(scratch_dir(dir)),
        ..WorkspaceConfig::new(root)
    };
    let spec = TenantSpec { id: id.into(), digest: None, workspace, limits: limits.clone() };
    Tenant::from_spec(&spec, runtime()).expect("workspace")
}

/// A running server and its workspace.
pub struct TestServer {
    pub url: String,
    /// Holds the workspace (`root/`) and room beside it for escape targets.
    pub dir: tempfile::TempDir,
    /// The visible root clients use.
    pub visible: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Limits::default(), None).await
    }

    /// `visible`: show the root at this path instead of its real path.
    pub async fn start_with(limits: Limits, visible: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir root");
        // The guests' /tmp goes inside `dir` too: the test may end while a
        // detached session still holds the workspace, and `dir` goes anyway.
        let tenant = tenant("default", &root, visible, &dir, &limits);
        let visible = tenant.executor.workspace.visible_root().to_owned();
        Self::serve(dir, visible, Gate::Open(Arc::new(tenant))).await
    }

    /// Tenants `(id, token, limits)`, each with its own root visible at
    /// `/workspace`: the first at `root()`, the others at `<dir>/<id>`.
    pub async fn start_tenants(tenants: &[(&str, &str, Limits)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut entries = Vec::new();
        for (i, (id, token, limits)) in tenants.iter().enumerate() {
            let root = if i == 0 { dir.path().join("root") } else { dir.path().join(id) };
            std::fs::create_dir(&root).expect("mkdir tenant root");
            let tenant = Arc::new(tenant(id, &root, Some("/workspace"), &dir, limits));
            let digest = wasm_exec_server::tenant::digest_of_token(token).expect("token");
            entries.push(wasm_exec_server::tenant::TenantEntry { digest, tenant });
        }
        Self::serve(dir, "/workspace".into(), Gate::Tokens(entries)).await
    }

    async fn serve(dir: tempfile::TempDir, visible: String, gate: Gate) -> Self {
        init_logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = wasm_exec_server::server::run(
                listener,
                gate,
                async {
                    let _ = stopped.await;
                },
                std::time::Duration::from_secs(1),
            )
            .await;
        });
        Self { url, dir, visible, stop: Some(stop), task }
    }

    /// The host path of the workspace root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `file://` URI of a path relative to the visible root.
    pub fn uri(&self, rel: &str) -> String {
        if rel.is_empty() {
            format!("file://{}", self.visible)
        } else {
            format!("file://{}/{}", self.visible, rel)
        }
    }

    pub fn write(&self, rel: &str, data: &str) {
        let p = self.root().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, data).expect("write fixture");
    }

    pub async fn client(&self) -> Client {
        let mut c = Client::connect(&self.url).await.expect("connect + initialize");
        c.timeout = std::time::Duration::from_secs(60);
        c
    }
}

/// Starts the server binary on `dir` with extra `serve` arguments and
/// environment, stdin and stdout piped, sharing the tests' module cache.
pub fn spawn_server(args: &[&str], dir: &Path, envs: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .arg("serve")
        .args(args)
        .arg("--workspace")
        .arg(dir)
        .arg("--cache-dir")
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache"))
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server")
}

/// The URL a spawned server prints as its first line, within `wait`.
pub async fn server_url(child: &mut tokio::process::Child, wait: std::time::Duration) -> String {
    server_lines(child, 1, wait).await.remove(0)
}

/// The first `n` lines a spawned server prints (its URL, then the admin
/// API's and the metrics listener's addresses when asked for), within
/// `wait` each.
pub async fn server_lines(
    child: &mut tokio::process::Child,
    n: usize,
    wait: std::time::Duration,
) -> Vec<String> {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut out = Vec::new();
    for _ in 0..n {
        let line = tokio::time::timeout(wait, lines.next_line())
            .await
            .expect("the line in time")
            .expect("read stdout")
            .expect("a line");
        out.push(line);
    }
    out
}

/// Everything process `process_id` wrote, read back with `process/read`
/// (as a client does after a resume) until it has exited and nothing is left.
pub async fn read_back(c: &Client, process_id: &str) -> String {
    let mut out = String::new();
    let mut after = 0u64;
    for _ in 0..100 {
        let read = c
            .request(
                "process/read",
                serde_json::json!({
                    "processId": process_id, "afterSeq": after, "maxBytes": null, "waitMs": 500
                }),
            )
            .await
            .expect("read");
        let chunks = read["chunks"].as_array().expect("chunks");
        for chunk in chunks {
            after = chunk["seq"].as_u64().expect("seq");
            let data = chunk["chunk"].as_str().expect("chunk");
            let bytes = wasm_exec_server::b64::decode(data.as_bytes()).expect("base64");
            out += &String::from_utf8_lossy(&bytes);
        }
        if read["exited"] == serde_json::json!(true) && chunks.is_empty() {
            break;
        }
    }
    out
}

/// One HTTP/1.1 request to `addr` (`IP:PORT`), with a bearer token if
/// given: the status and the body.
pub async fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    let status = out.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Runs `line` as `bash -lc` in the workspace root on a fresh connection.
pub async fn sh(s: &TestServer, line: &str) -> Finished {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = format!("sh-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let c = s.client().await;
    c.run(&id, &["/bin/bash", "-lc", line], &s.uri("")).await.expect("run")
}

/// Runs `line` and checks stdout and the exit status.
pub async fn expect(s: &TestServer, line: &str, stdout: &str, status: i32) {
    let f = sh(s, line).await;
    assert_eq!(
        (f.stdout_str().as_str(), f.exit_code),
        (stdout, status),
        "{line}\nstderr: {}",
        f.stderr_str()
    );
}

/// Where a test server's workspaces keep the guests' `/tmp`: inside the
/// test's directory, so it goes with it.
fn scratch_dir(dir: &tempfile::TempDir) -> PathBuf {
    let p = dir.path().join("scratch");
    std::fs::create_dir_all(&p).expect("mkdir scratch");
    p
}

/// Everything under `dir` (outside the root and the guests' own `/tmp`),
/// for "nothing outside changed".
pub fn snapshot_outside(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "root" || n == "scratch") && d == dir {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
}
