//! The adversarial suite: every test is an attack that must be blocked,
//! with nothing outside the root changed, and the server still answering a
//! benign client promptly afterwards.
//!
//! Over 600 lines: one short test per attack, each self-contained so that it
//! reads as the attack it tries; splitting them would scatter the suite.

use crate::common::{TestServer, snapshot_outside};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wasm_exec_server::client::Client;
use wasm_exec_server::config::Limits;

const BASH: &str = "/bin/bash";

/// A benign client must get `echo` through within this after an attack.
const PROMPT: Duration = Duration::from_secs(5);

async fn benign_echo_is_prompt(s: &TestServer) {
    let t = Instant::now();
    let c = tokio::time::timeout(PROMPT, Client::connect_with(&s.url, None))
        .await
        .expect("connect in time")
        .expect("connect");
    tokio::time::timeout(PROMPT, c.initialize())
        .await
        .expect("initialize in time")
        .expect("initialize");
    let f =
        tokio::time::timeout(PROMPT, c.run("benign", &["echo-args", "still", "here"], &s.uri("")))
            .await
            .expect("benign command in time")
            .expect("run");
    assert_eq!(f.stdout_str(), "still here\n");
    assert!(t.elapsed() < PROMPT, "benign client took {:?}", t.elapsed());
}

async fn tenant_benign_echo(s: &TestServer, token: &str) {
    let c = tokio::time::timeout(PROMPT, Client::connect_with(&s.url, Some(token)))
        .await
        .expect("in time")
        .expect("connect");
    c.initialize().await.expect("init");
    let f =
        tokio::time::timeout(PROMPT, c.run("benign", &["echo-args", "ok"], "file:///workspace"))
            .await
            .expect("in time")
            .expect("run");
    assert_eq!(f.stdout_str(), "ok\n");
}

/// The client's one running process, to its `process/closed`: its stdout,
/// its stderr and its `process/exited`, each event awaited up to `wait`.
async fn run_to_close(c: &Client, wait: Duration) -> (String, String, Value) {
    let (mut stdout, mut stderr, mut exited) = (String::new(), String::new(), Value::Null);
    loop {
        let n = tokio::time::timeout(wait, c.next_notification())
            .await
            .expect("an event in time")
            .expect("event");
        match n["method"].as_str() {
            Some("process/output") => {
                let chunk = n["params"]["chunk"].as_str().expect("chunk");
                let bytes = wasm_exec_server::b64::decode(chunk.as_bytes()).expect("b64");
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if n["params"]["stream"] == "stdout" { stdout += &text } else { stderr += &text }
            }
            Some("process/exited") => exited = n,
            Some("process/closed") => return (stdout, stderr, exited),
            _ => {}
        }
    }
}

/// Plants a secret beside the root, and links to it from inside.
fn plant(s: &TestServer) {
    std::fs::write(s.dir.path().join("secret"), "TOP SECRET").expect("secret");
    std::fs::create_dir_all(s.dir.path().join("outdir")).expect("outdir");
    std::fs::write(s.dir.path().join("outdir/secret"), "TOP SECRET").expect("secret");
    let _ = std::os::unix::fs::symlink(s.dir.path().join("secret"), s.root().join("abs-link"));
    let _ = std::os::unix::fs::symlink("../secret", s.root().join("rel-link"));
    let _ = std::os::unix::fs::symlink(s.dir.path().join("outdir"), s.root().join("dir-link"));
    let _ = std::fs::hard_link(s.dir.path().join("outdir/secret"), s.root().join("hard-link"));
}

// ------------------------------------------------------------------ auth

fn token_tenants() -> Vec<(&'static str, &'static str, Limits)> {
    vec![("alice", "alice-token", Limits::default()), ("bob", "bob-token", Limits::default())]
}

async fn upgrade_status(url: &str, header: Option<&str>) -> (u16, String) {
    let auth = header.map(|h| format!("Authorization: {h}\r\n")).unwrap_or_default();
    upgrade_with(url, &auth).await
}

/// A raw upgrade request with `extra` header lines (each ending in CRLF):
/// the status and the whole answer.
async fn upgrade_with(url: &str, extra: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(
        url.trim_start_matches("ws://").split('/').next().expect("host"),
    )
    .await
    .expect("tcp");
    let path = url
        .trim_start_matches("ws://")
        .find('/')
        .map(|i| &url.trim_start_matches("ws://")[i..])
        .unwrap_or("/");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PROMPT, sock.read(&mut buf)).await.expect("answer").expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

#[tokio::test]
async fn auth_refuses_missing_wrong_and_malformed_tokens() {
    let s = TestServer::start_tenants(&token_tenants()).await;
    let (code, text) = upgrade_status(&s.url, None).await;
    assert_eq!(code, 401);
    assert!(text.ends_with("missing websocket bearer token"), "{text}");
    let (code, text) = upgrade_status(&s.url, Some("Bearer nope")).await;
    assert!(code == 401 && text.ends_with("invalid websocket bearer token"), "{text}");
    let (code, text) = upgrade_status(&s.url, Some("alice-token")).await;
    assert!(code == 401 && text.ends_with("invalid authorization header"), "{text}");
    let (code, _) = upgrade_status(&s.url, Some("Basic YWxpY2U6eA==")).await;
    assert_eq!(code, 401);
    let (code, text) = upgrade_status(&format!("{}/?token=alice-token", s.url), None).await;
    assert!(
        code == 401 && text.ends_with("missing websocket bearer token"),
        "token in the query string: {text}"
    );
    let (code, _) = upgrade_status(&s.url, Some("Bearer alice-token-and-more")).await;
    assert_eq!(code, 401, "a token with a valid prefix");
    let (code, _) = upgrade_status(&s.url, Some("bearer alice-token")).await;
    assert_eq!(code, 101, "the scheme is case-insensitive");
    let (code, _) = upgrade_status(&s.url, Some("Bearer bob-token")).await;
    assert_eq!(code, 101);
    let ready = crate::http_get(&s.url, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "readyz needs no token: {ready}");
    tenant_benign_echo(&s, "alice-token").await;
}

#[tokio::test]
async fn a_browser_page_cannot_open_a_session() {
    // Any web page may open a WebSocket to localhost; the browser then sends
    // the page's Origin, which no agent or tool sends.
    let s = TestServer::start().await;
    let (code, text) = upgrade_with(&s.url, "Origin: https://evil.example\r\n").await;
    assert_eq!(code, 403, "{text}");
    let (code, text) = upgrade_with(&s.url, "Origin: null\r\n").await;
    assert_eq!(code, 403, "a sandboxed page or a file: URL: {text}");
    let tenants = TestServer::start_tenants(&token_tenants()).await;
    let extra = "Authorization: Bearer alice-token\r\nOrigin: http://127.0.0.1\r\n";
    let (code, text) = upgrade_with(&tenants.url, extra).await;
    assert_eq!(code, 403, "even with a valid token: {text}");
    // Without one, the same requests are upgraded.
    let (code, text) = upgrade_with(&s.url, "").await;
    assert_eq!(code, 101, "{text}");
    let (code, _) = upgrade_status(&tenants.url, Some("Bearer alice-token")).await;
    assert_eq!(code, 101);
}

// ------------------------------------------------------------------ tenants

#[tokio::test]
async fn a_tenant_cannot_reach_another_tenants_files() {
    let s = TestServer::start_tenants(&token_tenants()).await;
    let bob_root = s.dir.path().join("bob");
    std::fs::write(bob_root.join("bob.txt"), "bob's data").expect("bob file");
    std::fs::write(s.root().join("alice.txt"), "alice's data").expect("alice file");
    let before = snapshot_outside(s.dir.path());
    let alice = Client::connect_with(&s.url, Some("alice-token")).await.expect("connect");
    alice.initialize().await.expect("init");
    // Both are visible at /workspace: alice sees only her own files there.
    assert_eq!(
        alice.read_file("file:///workspace/alice.txt").await.expect("own file"),
        b"alice's data"
    );
    assert!(
        alice.read_file("file:///workspace/bob.txt").await.expect_err("bob's file").is_not_found()
    );
    let bob_host = format!("file://{}/bob.txt", bob_root.display());
    assert!(alice.read_file(&bob_host).await.is_err(), "bob's host path");
    assert!(alice.read_file("file:///workspace/../bob/bob.txt").await.is_err());
    let f = alice
        .run(
            "g",
            &["cat-files", &bob_root.join("bob.txt").display().to_string()],
            "file:///workspace",
        )
        .await
        .expect("run");
    assert_eq!(
        (f.exit_code, f.stdout.len()),
        (1, 0),
        "a guest cannot read bob's files by host path"
    );
    let f =
        alice.run("g2", &["cat-files", "../bob/bob.txt"], "file:///workspace").await.expect("run");
    assert_eq!((f.exit_code, f.stdout.len()), (1, 0));
    let f = alice
        .run(
            "g3",
            &[BASH, "-c", "cat-files ../bob/bob.txt > stolen.txt; echo $?"],
            "file:///workspace",
        )
        .await
        .expect("run");
    assert_eq!(f.stdout_str(), "1\n", "{}", f.stderr_str());
    assert!(alice.write_file(&bob_host, b"pwned").await.is_err());
    assert_eq!(snapshot_outside(s.dir.path()), before, "something outside alice's root changed");
}

#[tokio::test]
async fn a_tenant_cannot_touch_another_tenants_processes_or_sessions() {
    let s = TestServer::start_tenants(&token_tenants()).await;
    let bob = Client::connect_with(&s.url, Some("bob-token")).await.expect("connect");
    let bob_session =
        bob.initialize().await.expect("init")["sessionId"].as_str().expect("id").to_owned();
    bob.start("bob-proc", &["line-echo"], "file:///workspace", json!({"pipeStdin": true}))
        .await
        .expect("start");
    let alice = Client::connect_with(&s.url, Some("alice-token")).await.expect("connect");
    alice.initialize().await.expect("init");
    // Guessing the id gets nothing.
    assert_eq!(
        alice.request("process/terminate", json!({"processId": "bob-proc"})).await.expect("t"),
        json!({"running": false})
    );
    assert_eq!(
        alice.write("bob-proc", b"hijack\n", "1").await.expect("w"),
        json!({"status": "unknownProcess"})
    );
    assert_eq!(
        alice
            .request("process/read", json!({"processId": "bob-proc"}))
            .await
            .expect_err("read")
            .code(),
        Some(-32600)
    );
    alice
        .request("process/signal", json!({"processId": "bob-proc", "signal": "interrupt"}))
        .await
        .expect("signal");
    // Alice may reuse the same id in her own session.
    alice
        .run("bob-proc", &["hello"], "file:///workspace")
        .await
        .expect("own process with the same id");
    // Bob's process is untouched and still answers bob.
    bob.write("bob-proc", b"still mine\n", "1").await.expect("write");
    let n = bob.next_notification().await.expect("output");
    assert_eq!(n["params"]["chunk"], json!("ZWNobzogc3RpbGwgbWluZQo=")); // "echo: still mine\n"
    // Alice cannot resume bob's session.
    let a2 = Client::connect_with(&s.url, Some("alice-token")).await.expect("connect");
    let e = a2
        .request("initialize", json!({"clientName": "x", "resumeSessionId": bob_session}))
        .await
        .expect_err("foreign session");
    assert!(e.to_string().contains("unknown session id"), "{e}");
    bob.request("process/terminate", json!({"processId": "bob-proc"})).await.expect("terminate");
}

#[tokio::test]
async fn tenant_limits_are_separate() {
    let small = Limits { max_processes: 1, ..Limits::default() };
    let s =
        TestServer::start_tenants(&[("alice", "a", small), ("bob", "b", Limits::default())]).await;
    let a = Client::connect_with(&s.url, Some("a")).await.expect("connect");
    a.initialize().await.expect("init");
    a.start("spin", &["spin"], "file:///workspace", json!({})).await.expect("first");
    // The limit is per tenant, not per connection.
    let a2 = Client::connect_with(&s.url, Some("a")).await.expect("connect");
    a2.initialize().await.expect("init");
    let e = a2
        .start("x", &["hello"], "file:///workspace", json!({}))
        .await
        .expect_err("over the limit");
    assert!(e.to_string().contains("max-processes is 1"), "{e}");
    // Bob is not affected by alice's spinning guest.
    tenant_benign_echo(&s, "b").await;
    a.request("process/terminate", json!({"processId": "spin"})).await.expect("terminate");
    a.collect_streaming("spin", &mut |_, _| {}).await.ok();
    tokio::time::sleep(Duration::from_millis(50)).await;
    a2.run("y", &["hello"], "file:///workspace").await.expect("a slot is free again");
}

#[tokio::test]
async fn connection_limit_is_enforced_and_named() {
    let limits = Limits { max_connections: 3, ..Limits::default() };
    let s = TestServer::start_tenants(&[("alice", "a", limits)]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect_with(&s.url, Some("a")).await.expect("within the limit"));
    }
    let (code, text) = upgrade_status(&s.url, Some("Bearer a")).await;
    assert_eq!(code, 429, "{text}");
    assert!(text.contains("max-connections is 3"), "{text}");
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    Client::connect_with(&s.url, Some("a")).await.expect("a slot was freed");
}

#[tokio::test]
async fn request_rate_limit_is_enforced_and_named() {
    let limits = Limits { requests_per_second: 5, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = Client::connect_with(&s.url, None).await.expect("connect");
    c.initialize().await.expect("init");
    let mut limited = None;
    for _ in 0..50 {
        if let Err(e) = c.request("environment/status", json!({})).await {
            limited = Some(e);
            break;
        }
    }
    let e = limited.expect("the rate limit never applied");
    assert!(e.to_string().contains("requests-per-second"), "{e}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.request("environment/status", json!({})).await.expect("the budget refills");
}

#[tokio::test]
async fn cpu_limit_stops_a_spinner() {
    let limits = Limits { max_cpu: Duration::from_millis(200), ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    let f = c.run("cpu", &["spin"], &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 137);
    assert!(f.stderr_str().contains("CPU time limit exceeded (max-cpu"), "{}", f.stderr_str());
}

#[tokio::test]
async fn cpu_limit_covers_every_stage_of_a_pipeline() {
    // Pipeline stages run as tasks of their own (in parallel); the budget
    // is still the command's, not each stage's, wherever they run.
    let limits = Limits { max_cpu: Duration::from_millis(200), ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    // The first stage (a task of its own) starts its guest after the command
    // has moved to the batch pool (20 ms of CPU): it must still count.
    c.start(
        "cpu2",
        &["bash", "-c", "{ sleep 0.1; spin; } | spin | spin >/dev/null; echo after $?"],
        &s.uri(""),
        json!({}),
    )
    .await
    .expect("start");
    let (stdout, stderr, exited) = run_to_close(&c, Duration::from_secs(30)).await;
    // The budget is the command's: once spent, the command is over (the
    // `echo` after the pipeline does not run), with 137.
    assert_eq!(stdout, "");
    assert_eq!(exited["params"]["exitCode"], 137, "{exited}");
    assert!(stderr.contains("CPU time limit exceeded (max-cpu"), "{stderr}");
    // All three instances counted in the command's usage: each stage ran
    // in the command's scope, against its one budget.
    let usage = &exited["params"]["usage"];
    // (The first stage's guest starts only if the budget is not spent by
    // the time its sleep ends: a spent budget ends the command's shells.)
    let instances = usage["instances"].as_u64().expect("instances");
    assert!((2..=3).contains(&instances), "{exited}");
    assert!(usage["cpuMs"].as_u64().expect("cpu") < 400, "{exited}");
}

#[tokio::test]
async fn git_is_read_only_for_fs_calls_and_redirections() {
    let s = TestServer::start().await;
    s.write(".git/config", "[core]\n");
    let c = s.client().await;
    let e = c.write_file(&s.uri(".git/config"), b"pwned").await.expect_err(".git write");
    assert_eq!(e.to_string(), "server error -32600: Permission denied (os error 13)");
    let e = c
        .request("fs/remove", json!({"path": s.uri(".git"), "recursive": true}))
        .await
        .expect_err("rm .git");
    assert_eq!(e.code(), Some(-32600));
    let e = c
        .request("fs/createDirectory", json!({"path": s.uri(".git/hooks")}))
        .await
        .expect_err("mkdir");
    assert_eq!(e.code(), Some(-32600));
    let e = c
        .request(
            "fs/copy",
            json!({
                "sourcePath": s.uri(".git/config"),
                "destinationPath": s.uri(".git/c2"),
                "recursive": false
            }),
        )
        .await
        .expect_err("copy into .git");
    assert_eq!(e.code(), Some(-32600));
    std::os::unix::fs::symlink(".git", s.root().join("g")).expect("symlink");
    assert!(c.write_file(&s.uri("g/config"), b"pwned").await.is_err(), "through a symlink");
    let f = c
        .run("r", &[BASH, "-lc", "echo pwned > .git/config; echo status=$?"], &s.uri(""))
        .await
        .expect("run");
    assert_eq!(f.stdout_str(), "status=1\n", "{}", f.stderr_str());
    assert!(f.stderr_str().contains("Read-only file system"), "{}", f.stderr_str());
    assert_eq!(c.read_file(&s.uri(".git/config")).await.expect("reads are fine"), b"[core]\n");
    assert_eq!(std::fs::read_to_string(s.root().join(".git/config")).expect("on disk"), "[core]\n");
}

/// Every file below `rel` in the workspace with its contents.
fn tree(s: &TestServer, rel: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.push((p.clone(), b"<dir>".to_vec()));
                walk(&p, out);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&s.root().join(rel), &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn guests_cannot_change_read_only_areas() {
    let s = TestServer::start().await;
    s.write(".git/config", "[core]\n");
    s.write(".git/objects/ab/cdef", "blob");
    s.write("data.txt", "data\n");
    s.write("sub/keep", "");
    std::os::unix::fs::symlink(".git", s.root().join("planted")).expect("symlink");
    let before = tree(&s, ".git");
    let c = s.client().await;
    // Each is a separate attempt on `.git`, by every WASI call that changes
    // the filesystem, by every path spelling, and through symlinks planted
    // on disk or made by the guest itself.
    let attacks = [
        "write:.git/config:5",
        "append:.git/config:5",
        "truncate:.git/config:0",
        "write:.git/new:5",
        "write:.git/objects/ab/new:5",
        "mkdir:.git/hooks",
        "rm:.git/config",
        "rmdir:.git/objects/ab",
        "rmtree:.git/objects",
        "rmtree:.git",
        "mv:.git/config:stolen",
        "mv:data.txt:.git/config",
        "mv:.git:moved",
        "link:.git/config:hard",
        "link:data.txt:.git/hard",
        "symlink:x:.git/link",
        "write:planted/config:5",
        "write:./.git/config:5",
        "write:sub/../.git/config:5",
        "write:.git/./objects/../config:5",
    ];
    let f = c.run("ro", &[&["fs-ops"][..], &attacks[..]].concat(), &s.uri("")).await.expect("run");
    let out = f.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), attacks.len(), "{}", f.stdout_str());
    for (line, attack) in lines.iter().zip(attacks) {
        assert!(
            line.starts_with(&format!("err {attack}: Permission denied")),
            "not refused: {line}"
        );
    }
    assert_eq!(f.exit_code, 1);
    assert!(f.stderr_str().contains("is read-only for commands"), "{}", f.stderr_str());
    // Symlinks made by the guest, then used: refused too.
    let made = [
        "symlink:.git:g2",
        "write:g2/config:5",
        "symlink:.:dot",
        "write:dot/.git/config:5",
        "rm:g2/config",
    ];
    let f = c.run("ro2", &[&["fs-ops"][..], &made[..]].concat(), &s.uri("")).await.expect("run");
    let out = f.stdout_str();
    assert!(
        out.starts_with("ok symlink:.git:g2\nerr write:g2/config:5: Permission denied"),
        "{out}"
    );
    assert!(
        out.contains("ok symlink:.:dot\nerr write:dot/.git/config:5: Permission denied"),
        "{out}"
    );
    assert!(out.contains("err rm:g2/config: Permission denied"), "{out}");
    // From a working directory inside `.git`, relative paths are caught.
    let f = c
        .run("ro3", &["fs-ops", "write:config:5", "mkdir:x"], &s.uri(".git/objects"))
        .await
        .expect("run");
    assert_eq!(f.stdout_str().matches("Permission denied").count(), 2, "{}", f.stdout_str());
    assert_eq!(tree(&s, ".git"), before, "a guest changed .git");
    // Everywhere else, the same operations work.
    let fine = [
        "write:a:5",
        "append:a:5",
        "truncate:a:1",
        "mkdir:d",
        "mv:a:d/b",
        "link:d/b:c",
        "rm:c",
        "rmtree:d",
        "symlink:data.txt:l",
    ];
    let f = c.run("rw", &[&["fs-ops"][..], &fine[..]].concat(), &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 0, "{}", f.stdout_str());
    assert_eq!(f.stdout_str().matches("ok ").count(), fine.len());
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn disk_quota_counts_every_writer() {
    const QUOTA: u64 = 100_000;
    let s = TestServer::start_with(Limits { max_disk: QUOTA, ..Limits::default() }, None).await;
    let c = s.client().await;
    let on_disk = |s: &TestServer| -> u64 {
        tree(s, "").iter().filter(|(_, d)| d != b"<dir>").map(|(_, d)| d.len() as u64).sum()
    };
    // fs/writeFile counts.
    c.write_file(&s.uri("a"), &[b'a'; 30_000]).await.expect("fits");
    // A guest's writes count: 30 000 + 50 000 fits, 30 000 more does not.
    let f = c.run("b", &["fs-ops", "write:b:50000"], &s.uri("")).await.expect("run");
    assert_eq!(f.stdout_str(), "ok write:b:50000\n");
    let f = c.run("c", &["fs-ops", "write:c:30000"], &s.uri("")).await.expect("run");
    assert!(f.stdout_str().starts_with("err write:c:30000: Quota exceeded"), "{}", f.stdout_str());
    assert_eq!(f.exit_code, 1);
    assert!(
        f.stderr_str().contains("disk quota exceeded: the workspace uses")
            && f.stderr_str().contains("(max-disk)"),
        "{}",
        f.stderr_str()
    );
    // Over by at most the one write that crossed the line.
    assert!(on_disk(&s) <= QUOTA + 4096, "{} bytes on disk", on_disk(&s));
    // fs/writeFile, redirections, /tmp and apply_patch are held to it too.
    let e = c.write_file(&s.uri("d"), &[b'd'; 30_000]).await.expect_err("over quota");
    assert!(e.to_string().contains("(max-disk)"), "{e}");
    let f =
        c.run("r", &[BASH, "-lc", "flood 1 > e; echo status=$?"], &s.uri("")).await.expect("run");
    assert!(!f.stdout_str().contains("status=0"), "{} {}", f.stdout_str(), f.stderr_str());
    assert!(std::fs::metadata(s.root().join("e")).expect("e").len() < 64 * 1024);
    let f = c.run("t", &["fs-ops", "write:/tmp/big:50000"], &s.uri("")).await.expect("run");
    assert!(f.stdout_str().contains("Quota exceeded"), "{}", f.stdout_str());
    let patch = format!(
        "*** Begin Patch\n*** Add File: p.txt\n{}*** End Patch\n",
        "+0123456789\n".repeat(3000)
    );
    let f = c
        .run("p", &[BASH, "-lc", &format!("apply_patch <<'EOF'\n{patch}EOF")], &s.uri(""))
        .await
        .expect("run");
    assert_ne!(f.exit_code, 0);
    assert!(f.stderr_str().contains("max-disk"), "{}", f.stderr_str());
    assert!(!s.root().join("p.txt").exists(), "a patch over the quota must write nothing");
    // Freeing space (by a guest, by fs/remove, by truncation) makes room.
    let f = c
        .run("free", &["fs-ops", "rm:b", "rm:e", "write:c:30000", "truncate:c:10"], &s.uri(""))
        .await
        .expect("run");
    assert_eq!(f.exit_code, 0, "{}", f.stdout_str());
    c.request("fs/remove", json!({"path": s.uri("a")})).await.expect("remove");
    // Usage is what the files occupy (whole blocks, at least one per entry),
    // and a write is checked with room for its partial blocks.
    c.write_file(&s.uri("d"), &[b'd'; 45_000]).await.expect("room again");
    let f = c.run("again", &["fs-ops", "write:c:30000"], &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 0, "{}", f.stdout_str());
    let f = c.run("full", &["fs-ops", "append:c:20000"], &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 1, "{}", f.stdout_str());
    assert!(on_disk(&s) <= QUOTA + 4096, "{} bytes on disk", on_disk(&s));
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn process_substitution_files_count_against_the_disk_quota() {
    const QUOTA: u64 = 100_000;
    let s = TestServer::start_with(Limits { max_disk: QUOTA, ..Limits::default() }, None).await;
    let c = s.client().await;
    // A <(…) file larger than the quota is refused, naming the limit.
    let f = c
        .run("big", &[BASH, "-lc", "wc -c <(head -c 200000 /dev/zero); echo status=$?"], &s.uri(""))
        .await
        .expect("run");
    assert!(f.stderr_str().contains("(max-disk)"), "{} {}", f.stdout_str(), f.stderr_str());
    assert!(!f.stdout_str().contains("200000"), "{}", f.stdout_str());
    // One that fits works, and what it took is given back when the command
    // is done: five in a row, each over half the quota, all fit.
    for i in 0..5 {
        let f = c
            .run(
                &format!("fits{i}"),
                &[BASH, "-lc", "wc -c < <(cat <(head -c 60000 /dev/zero))"],
                &s.uri(""),
            )
            .await
            .expect("run");
        assert_eq!(f.stdout_str().trim(), "60000", "{}", f.stderr_str());
    }
    // So is what a command wrote into a >(…) file.
    for i in 0..3 {
        let f = c
            .run(&format!("w{i}"), &[BASH, "-lc", "head -c 60000 /dev/zero > >(wc -c)"], &s.uri(""))
            .await
            .expect("run");
        assert_eq!(f.stdout_str().trim(), "60000", "{}", f.stderr_str());
    }
    // And the room is still there for a file of the workspace.
    c.write_file(&s.uri("after"), &[b'a'; 60_000]).await.expect("the quota was given back");
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn disk_quota_counts_entries_and_blocks_not_lengths() {
    const QUOTA: u64 = 100_000;
    let s = TestServer::start_with(Limits { max_disk: QUOTA, ..Limits::default() }, None).await;
    let c = s.client().await;
    // An empty directory, file or symlink takes an inode and an entry: each
    // counts a 4 KiB block, so a flood of them stops at the quota (24 fit in
    // 100,000 bytes), whoever makes them.
    for (what, make, clean) in [
        ("dirs", "mkdir d$i", "rmdir d*"),
        ("links", "ln -s x l$i", "rm l*"),
        ("files", ": > f$i", "rm f*"),
    ] {
        let line = format!(
            "for i in $(seq 1 100); do {make} 2>/dev/null || {{ echo {what}=$i; break; }}; done; {clean}"
        );
        let f = c.run(what, &[BASH, "-lc", &line], &s.uri("")).await.expect("run");
        assert_eq!(f.stdout_str(), format!("{what}=25\n"), "{}", f.stderr_str());
    }
    let mkdirs = (1..=30).map(|i| format!("mkdir:m{i}")).collect::<Vec<_>>();
    let mut argv = vec!["fs-ops"];
    argv.extend(mkdirs.iter().map(String::as_str));
    let f = c.run("m", &argv, &s.uri("")).await.expect("run");
    assert!(f.stdout_str().contains("err mkdir:m25: Quota exceeded"), "{}", f.stdout_str());
    let e = c
        .request("fs/createDirectory", json!({"path": s.uri("n"), "recursive": true}))
        .await
        .expect_err("over quota");
    assert!(e.to_string().contains("(max-disk)"), "{e}");
    let rmdirs = (1..=24).map(|i| format!("rmdir:m{i}")).collect::<Vec<_>>();
    let mut argv = vec!["fs-ops"];
    argv.extend(rmdirs.iter().map(String::as_str));
    let f = c.run("rm", &argv, &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 0, "{}", f.stdout_str());
    // A byte written at a 1 GiB offset counts the block it allocates, not
    // 1 GiB: it fits, and most of the quota stays usable beside it (as
    // every entry, it counts at least a block: see the floods above).
    let f = c.run("poke", &["fs-ops", "poke:sparse:1073741824"], &s.uri("")).await.expect("run");
    assert_eq!(f.stdout_str(), "ok poke:sparse:1073741824\n", "{}", f.stderr_str());
    let f = c.run("fits", &["fs-ops", "write:w:80000"], &s.uri("")).await.expect("run");
    assert_eq!(f.stdout_str(), "ok write:w:80000\n", "{}", f.stderr_str());
    let f = c.run("full", &["fs-ops", "append:w:20000"], &s.uri("")).await.expect("run");
    assert!(f.stdout_str().contains("Quota exceeded"), "{}", f.stdout_str());
}

#[tokio::test]
async fn fs_copy_of_a_tree_counts_each_file_as_it_writes() {
    const QUOTA: u64 = 100_000;
    let s = TestServer::start_with(Limits { max_disk: QUOTA, ..Limits::default() }, None).await;
    let c = s.client().await;
    std::fs::create_dir(s.root().join("src")).expect("mkdir");
    for name in ["a", "b"] {
        c.write_file(&s.uri(&format!("src/{name}")), &[b'x'; 30_000]).await.expect("fits");
    }
    // A copy of the 60,000-byte tree does not fit beside it: the copy
    // stops at the file that would pass the quota, with an error naming it,
    // and the workspace stays within the quota.
    let e = c
        .request(
            "fs/copy",
            json!({"sourcePath": s.uri("src"), "destinationPath": s.uri("dst"), "recursive": true}),
        )
        .await
        .expect_err("over quota");
    assert!(e.to_string().contains("(max-disk)"), "{e}");
    let on_disk: u64 =
        tree(&s, "").iter().filter(|(_, d)| d != b"<dir>").map(|(_, d)| d.len() as u64).sum();
    assert!(on_disk <= QUOTA, "{on_disk} bytes on disk");
    assert!(s.root().join("dst").is_dir(), "the copy started");
    // The usage the server counts is what is on disk: freeing the copy gives
    // back all it took. What is left is the source, 69,632 bytes as the
    // disk holds it (a directory and two files of 30,000 bytes, in 4 KiB
    // blocks), so a file of 26,000 bytes (26,624 with its last block, and
    // an entry more) fits, and one of 31,000 does not.
    c.request("fs/remove", json!({"path": s.uri("dst"), "recursive": true})).await.expect("rm");
    let e = c.write_file(&s.uri("c"), &[b'c'; 31_000]).await.expect_err("over quota");
    assert!(e.to_string().contains("(max-disk)"), "{e}");
    c.write_file(&s.uri("c"), &[b'c'; 26_000]).await.expect("room again");
}

// ------------------------------------------------------------------ path escapes

#[tokio::test]
async fn fs_escapes_through_every_method() {
    let s = TestServer::start().await;
    plant(&s);
    let before = snapshot_outside(s.dir.path());
    let c = s.client().await;
    let host_secret = format!("file://{}", s.dir.path().join("secret").display());
    let bad_paths = [
        s.uri("../secret"),
        s.uri("a/../../secret"),
        s.uri("%2e%2e/secret"),
        s.uri("%2E%2E/secret"),
        s.uri("..%2fsecret"),
        host_secret.clone(),
        format!("file://localhost{}", s.dir.path().join("secret").display()),
        "file:///etc/passwd".into(),
        "file:///proc/self/environ".into(),
        "file:///proc/self/cwd/secret".into(),
        "file:///dev/sda".into(),
        s.uri("abs-link"),
        s.uri("rel-link"),
        s.uri("dir-link/secret"),
    ];
    let mut attempts = 0;
    for p in &bad_paths {
        for (method, params) in [
            ("fs/readFile", json!({"path": p})),
            ("fs/getMetadata", json!({"path": p})),
            ("fs/readDirectory", json!({"path": p})),
            ("fs/canonicalize", json!({"path": p})),
            ("fs/writeFile", json!({"path": p, "dataBase64": "cHduZWQ="})),
            ("fs/createDirectory", json!({"path": format!("{p}/newdir")})),
            ("fs/remove", json!({"path": p, "recursive": true, "force": false})),
            (
                "fs/copy",
                json!({"sourcePath": p, "destinationPath": s.uri("stolen"), "recursive": true}),
            ),
            ("fs/copy", json!({"sourcePath": s.uri(""), "destinationPath": p, "recursive": true})),
        ] {
            attempts += 1;
            let r = c.request(method, params).await;
            // Removing a planted link removes the link, which is inside the
            // root; its target is untouched (checked by the snapshot below).
            let link_itself =
                method == "fs/remove" && (p.ends_with("abs-link") || p.ends_with("rel-link"));
            if let (Ok(v), false) = (&r, link_itself) {
                panic!("{method} {p}: escaped with {v}");
            }
            if let Ok(v) = c.request("fs/canonicalize", json!({"path": p})).await {
                assert!(
                    v["path"].as_str().is_some_and(|u| u.starts_with(&s.uri(""))),
                    "canonicalize revealed {v}"
                );
            }
        }
    }
    assert!(attempts >= 100);
    assert!(!s.root().join("stolen").exists());
    // The hard link's content is the file's own (it is inside the root), but
    // writing replaces the link instead of writing through it.
    c.write_file(&s.uri("hard-link"), b"replaced").await.expect("write");
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("outdir/secret")).expect("outside"),
        "TOP SECRET"
    );
    let mut after = snapshot_outside(s.dir.path());
    after.retain(|(p, _)| !p.ends_with("hard-link"));
    assert_eq!(after, before, "something outside the root changed");
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn symlink_swapped_between_check_and_use_never_escapes() {
    // A guest keeps flipping `flip` between a directory inside the root and a
    // link to one outside, while fs/* calls race it.
    let s = TestServer::start().await;
    plant(&s);
    std::fs::create_dir(s.root().join("inside")).expect("mkdir");
    std::fs::write(s.root().join("inside/secret"), "fine").expect("write");
    let before = snapshot_outside(s.dir.path());
    let root = s.root();
    let outdir = s.dir.path().join("outdir");
    let flipper = std::thread::spawn(move || {
        for i in 0..2000 {
            let link = root.join("flip");
            let _ = std::fs::remove_file(&link);
            let target = if i % 2 == 0 { root.join("inside") } else { outdir.clone() };
            let _ = std::os::unix::fs::symlink(target, &link);
        }
    });
    let c = s.client().await;
    for _ in 0..200 {
        if let Ok(data) = c.read_file(&s.uri("flip/secret")).await {
            assert_eq!(data, b"fine", "read through a swapped link escaped");
        }
        let _ = c.write_file(&s.uri("flip/secret"), b"pwned").await;
    }
    flipper.join().expect("flipper");
    assert_eq!(snapshot_outside(s.dir.path()), before, "a write escaped through a swapped link");
}

#[tokio::test]
async fn shell_redirections_cannot_leave_the_workspace() {
    let s = TestServer::start().await;
    plant(&s);
    let before = snapshot_outside(s.dir.path());
    let c = s.client().await;
    let outside = s.dir.path().join("written-by-shell");
    let lines = [
        "echo pwned > ../written-by-shell".to_string(),
        format!("echo pwned > {}", outside.display()),
        "echo pwned >> ../secret".into(),
        "echo pwned > abs-link".into(),
        "echo pwned > rel-link".into(),
        "echo pwned > dir-link/secret".into(),
        "echo pwned > dir-link/new".into(),
        "cat-files < ../secret".into(),
        "cat-files < abs-link".into(),
        "echo pwned > /etc/pwned".into(),
        "echo pwned 2> ../err > ../out".into(),
        "cd .. && echo pwned > x".into(),
        "cd / && echo pwned > x".into(),
        "cd dir-link && echo pwned > y".into(),
        "echo pwned | cat-files > ../written-by-shell".into(),
        "cat-files ../secret".into(),
        "cat-files dir-link/secret".into(),
        "echo-args --pwd; cd ..; echo-args --pwd".into(),
    ];
    for (i, line) in lines.iter().enumerate() {
        let f = c.run(&format!("sh{i}"), &[BASH, "-lc", line], &s.uri("")).await.expect("run");
        assert!(!f.stdout_str().contains("TOP SECRET"), "{line}: {}", f.stdout_str());
    }
    assert!(!outside.exists());
    assert_eq!(snapshot_outside(s.dir.path()), before, "a redirection escaped");
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn guest_stats_answer_inside_and_refuse_links_out() {
    // A guest's stat of a path (`path_filestat_get`) is answered by the
    // guard from one stat through cap-std: a link out of the workspace is
    // refused when followed, and stat-ed as a link when not; a link inside
    // is followed.
    let s = TestServer::start().await;
    plant(&s);
    std::fs::write(s.root().join("f"), "12345").expect("write");
    std::os::unix::fs::symlink("f", s.root().join("in-link")).expect("symlink");
    for line in [
        "find -L . -name abs-link -printf '%s\\n'",
        "find -L . -name rel-link -printf '%s\\n'",
        "find -L dir-link -printf '%s\\n'",
    ] {
        let f = crate::common::sh(&s, line).await;
        assert_eq!(f.stdout_str(), "", "{line}: {}", f.stderr_str());
        assert!(f.stderr_str().contains("not permitted"), "{line}: {}", f.stderr_str());
    }
    let f = crate::common::sh(&s, "wc -c abs-link rel-link dir-link/secret").await;
    assert_eq!(f.stdout_str(), "0 total\n", "{}", f.stderr_str());
    // Every link, as a link (each one's own size is under 1000 bytes).
    crate::common::expect(&s, "find . -type l -size -1000c | wc -l", "4\n", 0).await;
    crate::common::expect(&s, "find -L in-link -printf '%s\\n'", "5\n", 0).await;
    crate::common::expect(&s, "find . -name in-link -printf '%s %y\\n'", "1 l\n", 0).await;
    crate::common::expect(&s, "find . -name f -size -6c -size +4c", "./f\n", 0).await;
}

#[tokio::test]
async fn guests_cannot_escape_or_see_the_servers_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(dir.path().join("secret"), "TOP SECRET").expect("secret");
    let secrets = [("SERVER_SECRET", "hunter2"), ("AWS_SECRET_ACCESS_KEY", "hunter3")];
    let mut child = crate::common::spawn_server(&[], &root, &secrets);
    let url = crate::common::server_url(&mut child, PROMPT * 6).await;
    let c = Client::connect(&url).await.expect("connect");
    let cwd = format!("file://{}", std::fs::canonicalize(&root).expect("canon").display());
    let policy = json!({
        "inherit": "all",
        "ignoreDefaultExcludes": true,
        "exclude": [],
        "set": {},
        "includeOnly": []
    });
    for (i, extra) in [json!({}), json!({"envPolicy": policy})].into_iter().enumerate() {
        c.start(&format!("env{i}"), &["echo-args", "--all-env"], &cwd, extra).await.expect("start");
        let out = c.collect(&format!("env{i}")).await.expect("collect").stdout_str();
        assert!(!out.contains("hunter"), "server environment leaked: {out}");
    }
    let f =
        c.run("sh-env", &[BASH, "-lc", "env; echo $SERVER_SECRET; set"], &cwd).await.expect("run");
    assert!(!f.stdout_str().contains("hunter"), "leaked through the shell: {}", f.stdout_str());
    let secret = dir.path().join("secret").display().to_string();
    let f = c.run("esc", &["escape", &secret], &cwd).await.expect("run");
    assert!(!f.stdout_str().contains("ESCAPED"), "{}", f.stdout_str());
    assert_eq!(f.exit_code, 0);
    child.kill().await.ok();
}

// ------------------------------------------------------------------ resources

#[tokio::test]
async fn infinite_loops_on_every_slot_do_not_stall_others() {
    let limits = Limits { max_processes: 8, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let attacker = s.client().await;
    for i in 0..8 {
        attacker.start(&format!("spin{i}"), &["spin"], &s.uri(""), json!({})).await.expect("spin");
    }
    let e = attacker.start("one-more", &["spin"], &s.uri(""), json!({})).await.expect_err("limit");
    assert!(e.to_string().contains("max-processes"), "{e}");
    // A benign client of the same server (the shared engine) still gets through.
    let c = Client::connect(&s.url).await.expect("connect");
    let t = Instant::now();
    c.request("environment/status", json!({})).await.expect("status");
    assert!(t.elapsed() < PROMPT);
    for i in 0..8 {
        attacker
            .request("process/terminate", json!({"processId": format!("spin{i}")}))
            .await
            .expect("terminate");
    }
    drop(attacker);
    tokio::time::sleep(Duration::from_millis(100)).await;
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn memory_bomb_is_contained() {
    let limits = Limits { max_memory: 32 << 20, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    for i in 0..4 {
        let f = c.run(&format!("bomb{i}"), &["memhog"], &s.uri("")).await.expect("run");
        assert_eq!(f.exit_code, 137);
    }
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn output_flood_is_cut_and_retention_is_bounded() {
    let limits = Limits { max_output: 4 << 20, retained_output: 64 << 10, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    let f = c.run("flood", &["flood"], &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 137);
    let r = c
        .request("process/read", json!({"processId": "flood", "afterSeq": 0}))
        .await
        .expect("read");
    let retained: usize = r["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| c["chunk"].as_str().map_or(0, str::len) * 3 / 4)
        .sum();
    assert!(retained <= (64 << 10) + 8192, "retained {retained} bytes");
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn stdin_flood_is_refused_with_a_named_limit() {
    let limits = Limits { max_stdin_buffer: 64 << 10, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    // `spin` never reads its stdin.
    c.start("sink", &["spin"], &s.uri(""), json!({"pipeStdin": true})).await.expect("start");
    let chunk = vec![b'x'; 8192];
    let mut refused = None;
    for i in 0..1000 {
        if let Err(e) = c.write("sink", &chunk, &i.to_string()).await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("the stdin buffer never filled");
    assert!(e.to_string().contains("max-stdin-buffer"), "{e}");
    c.request("process/terminate", json!({"processId": "sink"})).await.expect("terminate");
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn a_thousand_processes_at_once() {
    let s = TestServer::start_tenants(&[
        ("attacker", "a", Limits::default()),
        ("benign", "b", Limits::default()),
    ])
    .await;
    let c = Client::connect_with(&s.url, Some("a")).await.expect("connect");
    c.initialize().await.expect("init");
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..1000 {
        match c.start(&format!("p{i}"), &["spin"], "file:///workspace", json!({})).await {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(e.to_string().contains("max-processes"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (64, 936));
    // The attacker's own tenant is full; its neighbour is not affected.
    tenant_benign_echo(&s, "b").await;
    drop(c);
}

#[tokio::test]
async fn a_thousand_connections() {
    let s = TestServer::start().await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..1000 {
        match tokio_tungstenite::connect_async(&s.url).await {
            Ok((ws, _)) => held.push(ws),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(held.len(), 64, "max-connections");
    assert_eq!(refused, 936);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn huge_and_deeply_nested_frames() {
    let limits = Limits { max_file: 1 << 20, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    // Deeply nested JSON: a parse error, the connection survives.
    let (mut ws, _) = tokio_tungstenite::connect_async(&s.url).await.expect("connect");
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    ws.send(Message::Text(nested.into())).await.expect("send");
    let reply =
        tokio::time::timeout(PROMPT, ws.next()).await.expect("reply").expect("frame").expect("ok");
    let v: Value = serde_json::from_str(reply.to_text().expect("text")).expect("json");
    assert_eq!(v["id"], json!(-1));
    let deep_obj = format!(
        "{{\"id\":1,\"method\":\"initialize\",\"params\":{}{}}}",
        "{\"a\":".repeat(10_000),
        "1".to_string() + &"}".repeat(10_000)
    );
    ws.send(Message::Text(deep_obj.into())).await.expect("send");
    let reply =
        tokio::time::timeout(PROMPT, ws.next()).await.expect("reply").expect("frame").expect("ok");
    assert!(reply.to_text().expect("text").contains("error"));
    // A frame over the message limit ends that connection only.
    let huge = format!(
        "{{\"id\":2,\"method\":\"fs/writeFile\",\"params\":{{\"path\":\"file:///x\",\
         \"dataBase64\":\"{}\"}}}}",
        "A".repeat(8 << 20)
    );
    let _ = ws.send(Message::Text(huge.into())).await;
    let end = tokio::time::timeout(PROMPT, ws.next()).await.expect("closed in time");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "a huge frame was processed: {end:?}");
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn slow_loris_clients_that_never_read() {
    let s = TestServer::start().await;
    // Clients that flood output and never read their socket.
    let mut lorises = Vec::new();
    for i in 0..4 {
        let (mut ws, _) = tokio_tungstenite::connect_async(&s.url).await.expect("connect");
        ws.send(Message::Text(
            json!({"id": 1, "method": "initialize", "params": {"clientName": "loris"}})
                .to_string()
                .into(),
        ))
        .await
        .expect("send");
        ws.send(Message::Text(json!({"method": "initialized"}).to_string().into()))
            .await
            .expect("send");
        let start = json!({
            "id": 2,
            "method": "process/start",
            "params": {
                "processId": format!("f{i}"),
                "argv": ["flood"],
                "cwd": s.uri(""),
                "env": {},
                "tty": false
            }
        });
        ws.send(Message::Text(start.to_string().into())).await.expect("send");
        lorises.push(ws);
    }
    // And raw TCP clients that send half an upgrade and stall.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        use tokio::io::AsyncWriteExt;
        let mut sock =
            tokio::net::TcpStream::connect(s.url.trim_start_matches("ws://")).await.expect("tcp");
        sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        stalled.push(sock);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    benign_echo_is_prompt(&s).await;
    drop(lorises);
    drop(stalled);
}

#[tokio::test]
async fn hostile_frames_never_take_the_server_down() {
    let s = TestServer::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&s.url).await.expect("connect");
    let frames = [
        "".to_string(),
        "null".into(),
        "{}".into(),
        r#"{"id":null,"method":"initialize"}"#.into(),
        r#"{"id":1.5,"method":"initialize","params":{"clientName":"x"}}"#.into(),
        r#"{"id":{"a":1},"method":"x"}"#.into(),
        r#"{"id":1,"method":42}"#.into(),
        r#"{"id":1,"method":"process/start","params":[1,2,3]}"#.into(),
        r#"{"id":1,"method":"fs/readFile","params":{"path":"file:///\u0000"}}"#.into(),
        "\u{feff}{}".into(),
        "{\"id\":1,\"method\":\"".to_string() + &"x".repeat(1 << 20) + "\"}",
    ];
    for f in frames {
        if ws.send(Message::Text(f.into())).await.is_err() {
            break;
        }
    }
    ws.send(Message::Binary(vec![0xff, 0xfe, 0x00].into())).await.ok();
    drop(ws);
    benign_echo_is_prompt(&s).await;
}

// ------------------------------------------------------- host-side loops

/// Command lines whose loops run only compound commands: no simple command
/// (which always yielded) ever runs, so before host work yielded and was
/// metered, each held a server thread for good, beyond terminate and limits.
const HOST_LOOPS: &[&str] = &[
    "while ((1)); do ((x++)); done",
    "for ((i = 0; 1; i++)); do ((x++)); done",
    "while [[ 1 ]]; do [[ a == a ]]; done",
    "until ((0)); do if ((1)); then ((y++)); fi; done",
];

/// Waits for `process_id`'s `process/exited` among the notifications.
async fn exited_of(c: &Client, process_id: &str) -> Value {
    loop {
        let n = tokio::time::timeout(PROMPT, c.next_notification())
            .await
            .expect("a notification in time")
            .expect("notification");
        if n["method"] == "process/exited" && n["params"]["processId"] == process_id {
            return n;
        }
    }
}

#[tokio::test]
async fn host_loops_are_answered_and_stopped_by_terminate() {
    let s = TestServer::start().await;
    let c = s.client().await;
    for (i, line) in HOST_LOOPS.iter().enumerate() {
        let id = format!("loop{i}");
        // The start is answered although the line never ends.
        tokio::time::timeout(PROMPT, c.start(&id, &["bash", "-lc", line], &s.uri(""), json!({})))
            .await
            .unwrap_or_else(|_| panic!("`{line}`: the start was not answered"))
            .expect("start");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let asked = Instant::now();
        let r = c.request("process/terminate", json!({"processId": id})).await.expect("terminate");
        assert_eq!(r, json!({"running": true}), "{line}");
        let exited = exited_of(&c, &id).await;
        assert_eq!(exited["params"]["exitCode"], 137, "{line}: {exited}");
        assert!(asked.elapsed() < Duration::from_secs(1), "{line}: {:?}", asked.elapsed());
    }
}

#[tokio::test]
async fn max_wall_stops_a_host_loop() {
    let limits = Limits { max_wall: Duration::from_millis(500), ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    let started = Instant::now();
    let f = tokio::time::timeout(PROMPT, c.run("w", &["bash", "-lc", HOST_LOOPS[1]], &s.uri("")))
        .await
        .expect("in time")
        .expect("run");
    assert_eq!(f.exit_code, 137);
    assert!(f.stderr_str().contains("(max-wall)"), "{}", f.stderr_str());
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
}

#[tokio::test]
async fn max_cpu_counts_and_stops_host_work() {
    let limits = Limits { max_cpu: Duration::from_millis(300), ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    c.start("cpu", &["bash", "-lc", HOST_LOOPS[0]], &s.uri(""), json!({})).await.expect("start");
    // CPU time, not wall time: on a loaded machine the loop (demoted to the
    // low-priority batch pool) takes much longer than 300 ms to use 300 ms
    // of CPU.
    let (_, stderr, exited) = run_to_close(&c, Duration::from_secs(60)).await;
    assert_eq!(exited["params"]["exitCode"], 137, "{exited}");
    assert!(stderr.contains("CPU time limit exceeded (max-cpu"), "{stderr}");
    // The host work is the command's CPU time.
    let cpu = exited["params"]["usage"]["cpuMs"].as_u64().expect("cpuMs");
    assert!(cpu >= 300, "{exited}");
}

#[tokio::test]
async fn host_loops_do_not_starve_another_tenant() {
    let s = TestServer::start_tenants(&token_tenants()).await;
    let noisy = Client::connect_with(&s.url, Some("bob-token")).await.expect("connect");
    noisy.initialize().await.expect("init");
    // More loops than the shared interactive pool has threads: each is
    // demoted to bob's own batch pool once it has used its share of CPU.
    for i in 0..4 {
        let line = HOST_LOOPS[i % HOST_LOOPS.len()];
        noisy
            .start(&format!("hog{i}"), &["bash", "-lc", line], "file:///workspace", json!({}))
            .await
            .expect("start");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        tenant_benign_echo(&s, "alice-token").await;
    }
    let c = Client::connect_with(&s.url, Some("alice-token")).await.expect("connect");
    c.initialize().await.expect("init");
    let f = tokio::time::timeout(
        PROMPT,
        c.run("line", &["bash", "-lc", "echo hi; ((1+1))"], "file:///workspace"),
    )
    .await
    .expect("a benign line in time")
    .expect("run");
    assert_eq!(f.stdout_str(), "hi\n");
}

#[tokio::test]
async fn dollar_dollar_is_not_the_servers_pid() {
    // The server runs in this test process: `$$` must not be its pid.
    let s = TestServer::start().await;
    let f = crate::common::sh(&s, "echo $$; (echo $$)").await;
    let out = f.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], lines[1], "a subshell keeps $$: {out}");
    let pid: u32 = lines[0].parse().expect("$$ is a number");
    assert_ne!(pid, std::process::id());
}

// ------------------------------------------------- numbers from the line

#[tokio::test]
async fn find_exec_batches_are_charged_to_the_line_budget() {
    // `find … -exec cmd {} +` holds every path on the host until find ends:
    // 2,000 names of 200 bytes, walked 40 times over, are 16 MB of paths
    // against a 16 MiB budget. The line stops at the limit, and the next
    // command is served.
    let s =
        TestServer::start_with(Limits { max_memory: 16 << 20, ..Limits::default() }, None).await;
    let tree = s.root().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    for i in 0..2000 {
        std::fs::write(tree.join(format!("{i:0200}")), "").expect("write");
    }
    let f = crate::common::sh(
        &s,
        "find $(printf 'tree %.0s' $(seq 40)) -type f -exec true {} +; echo after",
    )
    .await;
    assert_eq!(f.exit_code, 137, "{}", f.stderr_str());
    assert!(f.stderr_str().contains("max-memory is 16 MiB"), "{}", f.stderr_str());
    assert!(!f.stdout_str().contains("after"), "{}", f.stdout_str());
    // The same walk once fits, and -exec … \; holds no paths at all.
    crate::common::expect(&s, "find tree -type f -exec true {} + && echo ok", "ok\n", 0).await;
    crate::common::expect(&s, "find tree -name 00007 -exec echo {} \\; | wc -l", "0\n", 0).await;
    benign_echo_is_prompt(&s).await;
}

#[tokio::test]
async fn numbers_from_the_line_are_checked_before_they_size_anything() {
    // Each of these grew the server by gigabytes, panicked its task or
    // aborted the whole server (a capacity overflow) before.
    let s = TestServer::start().await;
    let c = s.client().await;
    let cases: &[(&str, &str)] = &[
        ("printf '%9999999999d' 1", "field width or precision too large"),
        ("printf '%.9999999999f' 1", "field width or precision too large"),
        ("printf '%99999999999999999999999s' x", "field width or precision too large"),
        ("x=$(printf '%0100000000d' 0) && echo ${#x}", "field width or precision too large"),
        ("printf '%65535s' {1..2000} >/dev/null", "output larger than 64 MiB"),
    ];
    for (i, (line, limit)) in cases.iter().enumerate() {
        let f = tokio::time::timeout(
            PROMPT,
            c.run(&format!("n{i}"), &["bash", "-lc", line], &s.uri("")),
        )
        .await
        .unwrap_or_else(|_| panic!("`{line}` did not finish in time"))
        .expect("run");
        assert_ne!(f.exit_code, 0, "{line}: {f:?}");
        assert!(f.stderr_str().contains(limit), "{line}: {}", f.stderr_str());
    }
    // Below the limits, the same constructs work.
    let f = c
        .run(
            "ok",
            &["bash", "-lc", "printf '%5d|%.3s|' 42 abcdef; a[7]=x; echo ${#a[@]}"],
            &s.uri(""),
        )
        .await
        .expect("run");
    assert_eq!(f.stdout_str(), "   42|abc|1\n");
    // Arrays are sparse: a huge index is one element, not an allocation.
    let f = c
        .run(
            "sparse",
            &["bash", "-lc", "a[9999999999999]=1; ((b[99999999999]=1)); echo ${#a[@]} ${!b[@]}"],
            &s.uri(""),
        )
        .await
        .expect("run");
    assert_eq!((f.exit_code, f.stdout_str()), (0, "1 99999999999\n".into()), "{f:?}");
}

#[tokio::test]
async fn one_command_cannot_take_every_instance_slot() {
    // The engine's instance slots are shared by every tenant: a pipeline of
    // many stages holds one each, at once.
    // Spinners keep their instance until the command's CPU budget ends
    // them, so all eighty are wanted at once.
    let limits = Limits { max_cpu: Duration::from_secs(2), ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    let long = vec!["spin"; 80].join(" | ");
    let f = tokio::time::timeout(
        Duration::from_secs(60),
        c.run("many", &["bash", "-lc", &long], &s.uri("")),
    )
    .await
    .expect("the pipeline ends")
    .expect("run");
    assert!(
        f.stderr_str().contains("too many wasm instances at once in one command (at most 64)"),
        "{}",
        f.stderr_str()
    );
    // Below the limit, the same pipeline runs.
    let short = format!("echo-args hi{}", " | line-echo".repeat(20));
    let f = c.run("some", &["bash", "-lc", &short], &s.uri("")).await.expect("run");
    let first = format!("{}hi", "echo: ".repeat(20));
    assert_eq!(f.exit_code, 0, "{}", f.stderr_str());
    assert_eq!(f.stdout_str().lines().next(), Some(first.as_str()));
}

#[tokio::test]
async fn fs_copy_checks_every_destination_and_its_own_source() {
    let s = TestServer::start().await;
    s.write(".git/config", "[core]\n");
    s.write("src/hooks/pwn", "pwned");
    s.write("src/keep.txt", "kept");
    // The destination tree already holds a link into the read-only `.git`,
    // under the name the source tree writes into.
    std::fs::create_dir(s.root().join("dst")).expect("mkdir dst");
    std::os::unix::fs::symlink("../.git", s.root().join("dst/hooks")).expect("symlink");
    let c = s.client().await;
    let copy = |from: &str, to: &str| json!({"sourcePath": s.uri(from), "destinationPath": s.uri(to), "recursive": true});
    let e = c.request("fs/copy", copy("src", "dst")).await.expect_err("copy through the link");
    assert_eq!(e.code(), Some(-32600), "{e}");
    assert!(!s.root().join(".git/pwn").exists(), "nothing written into .git");
    // A link from inside the source to the source itself: copying into it
    // would copy the tree into itself.
    std::os::unix::fs::symlink("../src", s.root().join("src/loop")).expect("symlink");
    let e = c.request("fs/copy", copy("src", "src/loop/again")).await.expect_err("into itself");
    assert!(e.to_string().contains("cannot copy a directory into itself"), "{e}");
    assert!(!s.root().join("src/again").exists());
}

#[tokio::test]
async fn a_tenant_holds_at_most_max_instances() {
    // Stages that keep their instance until the command's CPU budget ends
    // them, so that five are wanted at once.
    let limits = Limits { max_instances: 3, max_cpu: Duration::from_secs(1), ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    let long = "spin | spin | spin | spin | spin";
    let f = tokio::time::timeout(
        Duration::from_secs(60),
        c.run("five", &["bash", "-lc", long], &s.uri("")),
    )
    .await
    .expect("the pipeline ends")
    .expect("run");
    assert!(
        f.stderr_str()
            .contains("too many wasm instances at once for this tenant (max-instances is 3)"),
        "{}",
        f.stderr_str()
    );
    // The slots are given back: a pipeline within the limit runs after it.
    let f =
        c.run("two", &["bash", "-lc", "echo-args hi | line-echo"], &s.uri("")).await.expect("run");
    assert_eq!((f.exit_code, f.stdout_str().as_str()), (0, "echo: hi\nbye\n"), "{f:?}");
}
