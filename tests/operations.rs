//! Day-2 operations, against the real server binary: the admin API, the
//! audit log and the peer address in the logs, the `exec` client (a clean
//! end of its session, `wss://`, status 255 for its own failures), and the
//! `tools` listing.

mod common;

use common::http;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use wasm_exec_server::client::Client;

const ADMIN_TOKEN: &str = "admin-secret-token";

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = Host { dir };
        use sha2::Digest;
        let mut text = String::new();
        for id in ["a", "b"] {
            std::fs::create_dir_all(h.root(id)).expect("root");
            let digest = hex::encode(sha2::Sha256::digest(format!("token-{id}").as_bytes()));
            text += &format!(
                "[[tenant]]\nid = \"{id}\"\ntoken_sha256 = \"{digest}\"\nroot = \"{}\"\n",
                h.root(id).display()
            );
        }
        std::fs::write(h.config(), text).expect("config");
        std::fs::write(h.dir.path().join("admin-token"), format!("{ADMIN_TOKEN}\n")).expect("tok");
        h
    }
    fn root(&self, tenant: &str) -> PathBuf {
        self.dir.path().join(tenant).join("root")
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("tenants.toml")
    }
    fn cwd(&self, tenant: &str) -> String {
        wasm_exec_server::fs::to_file_uri(&self.root(tenant).to_string_lossy())
    }
}

/// The server on the two tenants with the admin API; its stdout's lines
/// (the URL, then `admin http://…`) and its stderr, as lines, for the logs.
struct Server {
    _child: tokio::process::Child,
    url: String,
    admin: String,
    metrics: String,
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

async fn serve(h: &Host) -> Server {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .arg("serve")
        .arg("--config")
        .arg(h.config())
        .args(["--detach-grace", "30s", "--shutdown-grace", "1s"])
        .args(["--admin-listen", "127.0.0.1:0", "--admin-token-file"])
        .arg(h.dir.path().join("admin-token"))
        .args(["--metrics-listen", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache"))
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server");
    let [url, admin, metrics]: [String; 3] =
        common::server_lines(&mut child, 3, Duration::from_secs(900))
            .await
            .try_into()
            .expect("three lines");
    let metrics = metrics.strip_prefix("metrics http://").expect("metrics address line").to_owned();
    let admin = admin.strip_prefix("admin http://").expect("admin address line").to_owned();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, log) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Server { _child: child, url, admin, metrics, log }
}

impl Server {
    /// Waits for a log line containing every one of `parts`.
    async fn log_line(&mut self, parts: &[&str]) -> String {
        let wait = async {
            while let Some(line) = self.log.recv().await {
                if parts.iter().all(|p| line.contains(p)) {
                    return line;
                }
            }
            panic!("the server's stderr ended")
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("no log line with {parts:?}"))
    }
}

async fn admin_json(s: &Server, method: &str, path: &str) -> serde_json::Value {
    let (status, body) = http(&s.admin, method, path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

async fn client(url: &str, tenant: &str) -> Result<Client, String> {
    let mut c = Client::connect_with(url, Some(&format!("token-{tenant}")))
        .await
        .map_err(|e| e.to_string())?;
    c.initialize().await.map_err(|e| e.to_string())?;
    c.timeout = Duration::from_secs(120);
    Ok(c)
}

fn tenant<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list["tenants"]
        .as_array()
        .and_then(|l| l.iter().find(|t| t["id"] == id))
        .unwrap_or_else(|| panic!("no tenant {id} in {list}"))
}

async fn exec(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .arg("exec")
        .args(args)
        .output()
        .await
        .expect("exec")
}

/// The admin API lists tenants, sessions and processes with their usage,
/// terminates a process and drains a tenant; without its token it answers
/// nothing. `exec` ends its session when it is done, where a dropped
/// connection leaves the session for a resume. Every command leaves an
/// audit line, and connection lines carry the tenant and the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_lists_terminates_and_drains() {
    let h = Host::new();
    let mut s = serve(&h).await;
    // No token, a wrong one, the tenant's own: refused.
    for token in [None, Some("wrong"), Some("token-a")] {
        let (status, body) = http(&s.admin, "GET", "/v1/tenants", token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
    }
    let a = client(&s.url, "a").await.expect("a connects");
    a.start("long", &["/bin/bash", "-lc", "sleep 60"], &h.cwd("a"), serde_json::json!({}))
        .await
        .expect("start");
    // The connection's lines name the tenant and the client's address.
    let line = s.log_line(&["session started", "tenant=a", "peer=127.0.0.1:"]).await;
    assert!(line.contains("session_id") || line.contains("session started"), "{line}");

    let list = admin_json(&s, "GET", "/v1/tenants").await;
    let ta = tenant(&list, "a");
    assert!(ta["worker"]["pid"].as_u64().is_some_and(|p| p > 0), "{ta}");
    assert!(ta["worker"]["resident_bytes"].as_u64().is_some(), "{ta}");
    assert_eq!((&ta["sessions"], &ta["processes_running"]), (&1.into(), &1.into()), "{ta}");
    assert_eq!(ta["drained"], false);
    let tb = tenant(&list, "b");
    assert!(tb["worker"].is_null(), "b has not connected: {tb}");

    let sessions = admin_json(&s, "GET", "/v1/tenants/a/sessions").await;
    let session = &sessions["sessions"][0];
    assert_eq!(session["attached"], true, "{sessions}");
    let proc = &session["processes"][0];
    assert_eq!(
        (&proc["id"], &proc["command"], &proc["running"]),
        (&"long".into(), &"sleep 60".into(), &true.into())
    );
    assert!(proc["usage"]["wallMs"].as_u64().is_some(), "{proc}");
    let sid = session["id"].as_str().expect("session id").to_owned();

    // Unknown tenant, session, process: 404.
    let (status, _) = http(&s.admin, "GET", "/v1/tenants/zz/sessions", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 404);
    let path = format!("/v1/tenants/a/sessions/{sid}/processes/nope/terminate");
    assert_eq!(http(&s.admin, "POST", &path, Some(ADMIN_TOKEN)).await.0, 404);
    let path = "/v1/tenants/a/sessions/nope/processes/long/terminate";
    assert_eq!(http(&s.admin, "POST", path, Some(ADMIN_TOKEN)).await.0, 404);

    // Terminate: the client sees its command end.
    let path = format!("/v1/tenants/a/sessions/{sid}/processes/long/terminate");
    let answer = admin_json(&s, "POST", &path).await;
    assert_eq!(answer["running"], true);
    let ended = tokio::time::timeout(Duration::from_secs(10), a.collect("long")).await;
    let ended = ended.expect("the command ended after terminate").expect("collect");
    assert_ne!(ended.exit_code, 0);
    // Its audit line.
    let audit = s.log_line(&["command finished", "tenant=\"a\"", "sleep 60"]).await;
    assert!(audit.contains("audit"), "{audit}");

    // `exec` ends its session on the way out: only `a`'s own remains.
    let token_file = h.dir.path().join("a.token");
    std::fs::write(&token_file, "token-a\n").expect("token file");
    let token_file = token_file.to_string_lossy().into_owned();
    let out = exec(&["--url", &s.url, "--token-file", &token_file, "--", "echo from-exec"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-exec\n");
    assert_eq!(out.status.code(), Some(0));
    let _ = s.log_line(&["client ended the session"]).await;
    let sessions = admin_json(&s, "GET", "/v1/tenants/a/sessions").await;
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(1), "{sessions}");
    assert_eq!(sessions["sessions"][0]["id"], sid.as_str());
    // A dropped connection leaves its session, detached, for a resume.
    drop(a);
    let mut detached = false;
    for _ in 0..50 {
        let sessions = admin_json(&s, "GET", "/v1/tenants/a/sessions").await;
        if sessions["sessions"][0]["attached"] == false {
            detached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(detached, "the dropped connection's session is not listed as detached");

    // `/metrics` is on its own listener (with the workers' families), and
    // not on the main one.
    let (status, body) = http(&s.metrics, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("wasm_exec_server_processes_started_total{tenant=\"a\"}"), "{body}");
    let main = s.url.trim_start_matches("ws://").to_owned();
    assert_eq!(http(&main, "GET", "/metrics", None).await.0, 404);
    assert_eq!(http(&main, "GET", "/readyz", None).await.0, 200);

    // Drain `a`: its open connection closes saying why, new ones are
    // refused (503), `b` is served, and undrain lets `a` in again.
    let open = client(&s.url, "a").await.expect("a connects");
    let answer = admin_json(&s, "POST", "/v1/tenants/a/drain").await;
    assert_eq!(answer["drained"], true);
    let mut reason = None;
    for _ in 0..100 {
        reason = open.close_reason();
        if reason.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = reason.expect("the drained tenant's connection got a close frame");
    assert!(reason.contains("drained by the server's operator"), "{reason}");
    let refused = client(&s.url, "a").await.err().expect("a drained tenant is refused");
    assert!(refused.contains("503"), "{refused}");
    let b = client(&s.url, "b").await.expect("b connects");
    let f = b.run("b1", &["/bin/bash", "-lc", "echo b-ok"], &h.cwd("b")).await.expect("run");
    assert_eq!(f.stdout_str(), "b-ok\n");
    assert_eq!(tenant(&admin_json(&s, "GET", "/v1/tenants").await, "a")["drained"], true);
    admin_json(&s, "POST", "/v1/tenants/a/undrain").await;
    let a = client(&s.url, "a").await.expect("a connects again after undrain");
    let f = a.run("a1", &["/bin/bash", "-lc", "echo a-back"], &h.cwd("a")).await.expect("run");
    assert_eq!(f.stdout_str(), "a-back\n");
}

/// A TLS front on 127.0.0.1 (certificate for `localhost`) that forwards to
/// `backend`; returns its port.
async fn tls_front(cert: &rcgen::CertifiedKey<rcgen::KeyPair>, backend: String) -> u16 {
    use tokio_rustls::rustls;
    let der = cert.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("key");
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut up) = tokio::net::TcpStream::connect(&backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    port
}

use std::sync::Arc;

/// `exec` speaks `wss://`: it trusts the system's roots and, with
/// `--cacert`, a private CA; an untrusted certificate, like any failure of
/// the client itself, exits 255 (as ssh does), never a command's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_speaks_wss_and_exits_255_on_its_own_failures() {
    let s = common::TestServer::start().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let pem = s.dir.path().join("ca.pem");
    std::fs::write(&pem, cert.cert.pem()).expect("pem");
    let backend = s.url.trim_start_matches("ws://").to_owned();
    let port = tls_front(&cert, backend).await;
    let url = format!("wss://localhost:{port}");
    let pem_arg = pem.to_string_lossy().into_owned();
    let out =
        exec(&["--url", &url, "--cacert", &pem_arg, "--", "echo-args over-tls; exit 3"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over-tls\n");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    // Not trusted without the CA.
    let out = exec(&["--url", &url, "--", "echo-args x"]).await;
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    // A PEM file with no certificate is a clear error.
    std::fs::write(s.dir.path().join("empty.pem"), "nothing\n").expect("write");
    let empty = s.dir.path().join("empty.pem").to_string_lossy().into_owned();
    let out = exec(&["--url", &url, "--cacert", &empty, "--", "true"]).await;
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no PEM certificate"));
}

/// Ctrl-C on `exec` stops the remote command (not left running in a
/// detached session) and exits 130, as a shell does for SIGINT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_interrupted_stops_the_remote_command() {
    let s = common::TestServer::start().await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .args(["exec", "--url", &s.url, "--", "echo started; sleep 30; echo never"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("exec");
    let pid = child.id().expect("pid").to_string();
    let mut child = child;
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    assert_eq!(first.expect("in time").expect("read").as_deref(), Some("started"));
    let int = std::process::Command::new("kill").args(["-INT", &pid]).status();
    assert!(int.expect("kill").success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    assert_eq!(status.expect("exec ended after Ctrl-C").expect("wait").code(), Some(130));
    assert_eq!(lines.next_line().await.expect("read"), None, "no output after the interrupt");
}

/// `tools --json` is a JSON array with the bundled tools, the examples and
/// the host commands; the table stops quietly at a closed pipe.
#[tokio::test]
async fn tools_lists_as_json_and_stops_quietly_at_a_closed_pipe() {
    let bin = env!("CARGO_BIN_EXE_wasm-exec-server");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache");
    let out = std::process::Command::new(bin)
        .args(["tools", "--json", "--cache-dir"])
        .arg(&cache)
        .output()
        .expect("tools");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let find =
        |name: &str| list.as_array().and_then(|l| l.iter().find(|t| t["name"] == name)).cloned();
    let echo = find("echo-args").expect("the example guests");
    assert_eq!(echo["kind"], "example");
    let git = find("git").expect("the host commands");
    assert_eq!(git["kind"], "host");
    if common::bundled_tools().is_some() {
        let ls = find("ls").expect("bundled ls");
        assert_eq!((&ls["kind"], &ls["origin"]), (&"bundled".into(), &"coreutils".into()));
        assert!(ls["version"].as_str().is_some_and(|v| !v.is_empty()), "{ls}");
    }
    // `tools | head -1`: the reader goes after one line.
    let mut child = tokio::process::Command::new(bin)
        .args(["tools", "--cache-dir"])
        .arg(&cache)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tools");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    tokio::io::BufReader::new(stdout).read_line(&mut first).await.expect("a line");
    assert!(!first.is_empty());
    let out = child.wait_with_output().await.expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// Without a toolset, "command not found" says why, and how to fix it.
#[tokio::test]
async fn a_server_without_a_toolset_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .args(["run", "--bundled", "/nonexistent/toolset", "--workspace"])
        .arg(dir.path())
        .arg("--cache-dir")
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache"))
        .args(["--", "ls"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ls: command not found"), "{err}");
    assert!(err.contains("no toolset loaded") && err.contains("tools/build.sh"), "{err}");
    assert!(Path::new(dir.path()).is_dir());
}

/// Under an address-space limit too small for 4 GiB per wasm memory, the
/// engine reserves only `--max-memory` per memory, and commands run (the
/// full layout would need 2 GiB + 8 × 4.06 GiB here).
#[tokio::test]
async fn a_small_configuration_runs_under_ulimit_v() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache-compact");
    let script = format!(
        "ulimit -v 8000000 && exec '{}' run --bundled /nonexistent/toolset --workspace '{}' \
         --cache-dir '{}' --max-memory 64M --max-instances 8 -- 'echo-args compact | line-echo'",
        env!("CARGO_BIN_EXE_wasm-exec-server"),
        dir.path().display(),
        cache.display()
    );
    let out = std::process::Command::new("sh").args(["-c", &script]).output().expect("sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("compact"), "{err}");
    assert!(err.contains("compact layout"), "{err}");
}
