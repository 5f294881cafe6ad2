//! Integration tests: the real server on 127.0.0.1:0, real WebSocket, real
//! wasm guests from `guest-examples/`.
//!
//! Over 600 lines, as STYLE.md's one integration binary: each test is short
//! and stands alone, grouped by the method or behaviour it covers; the
//! adversarial, builtin and tool suites are modules of their own.

mod attacks;
mod builtins;
mod common;
mod tools;

use common::{TestServer, server_url, snapshot_outside, spawn_server};
use futures::{SinkExt, StreamExt};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wasm_exec_server::client::Client;
use wasm_exec_server::config::Limits;

const T: Duration = Duration::from_secs(20);

async fn raw_socket(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async(url).await.expect("connect").0
}

/// Sends a frame and returns the next text frame (or None if the socket closed).
async fn exchange(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    text: &str,
) -> Option<Value> {
    ws.send(Message::Text(text.into())).await.ok()?;
    loop {
        match tokio::time::timeout(T, ws.next()).await.expect("server answered in time") {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("json")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

fn err_of(v: &Value) -> (i64, String) {
    (
        v["error"]["code"].as_i64().expect("error code"),
        v["error"]["message"].as_str().expect("error message").to_owned(),
    )
}

// ------------------------------------------------------------------ handshake

#[tokio::test]
async fn initialize_reports_environment_info() {
    let s = TestServer::start().await;
    let c = Client::connect_with(&s.url, None).await.expect("connect");
    let r = c.initialize().await.expect("initialize");
    assert!(r["sessionId"].as_str().is_some_and(|id| !id.is_empty()));
    let info = &r["environmentInfo"];
    assert_eq!(info["shell"], json!({"name": "bash", "path": "/bin/bash"}));
    assert_eq!(info["platformOs"], "linux");
    assert_eq!(info["cwd"], json!(s.uri("")));
    assert_eq!(info["capabilities"], json!({}));
    let again = c.request("environment/info", Value::Null).await.expect("environment/info");
    assert_eq!(&again, info);
    let status = c.request("environment/status", json!({})).await.expect("status");
    assert_eq!(status, json!({"status": "ready"}));
}

#[tokio::test]
async fn handshake_ordering_errors() {
    let s = TestServer::start().await;
    let mut ws = raw_socket(&s.url).await;
    let start = concat!(
        r#"{"id":1,"method":"process/start","params":{"processId":"p","argv":["hello"],"#,
        r#""cwd":"file:///","env":{},"tty":false}}"#
    );
    let v = exchange(&mut ws, start).await.expect("answer");
    assert_eq!(
        err_of(&v),
        (-32600, "client must call initialize before using exec methods".into())
    );
    let v = exchange(&mut ws, r#"{"id":2,"method":"fs/readFile","params":{"path":"file:///x"}}"#)
        .await
        .expect("answer");
    assert_eq!(
        err_of(&v),
        (-32600, "client must call initialize before using filesystem methods".into())
    );
    // Params are decoded before the handshake check.
    let v =
        exchange(&mut ws, r#"{"id":3,"method":"fs/readFile","params":{}}"#).await.expect("answer");
    assert_eq!(err_of(&v), (-32602, "missing field `path`".into()));
    let v = exchange(&mut ws, r#"{"id":4,"method":"initialize"}"#).await.expect("answer");
    assert_eq!(err_of(&v), (-32602, "invalid type: null, expected struct InitializeParams".into()));
    let v =
        exchange(&mut ws, r#"{"id":5,"method":"initialize","params":{}}"#).await.expect("answer");
    assert_eq!(err_of(&v), (-32602, "missing field `clientName`".into()));
    let v = exchange(&mut ws, r#"{"id":6,"method":"initialize","params":{"clientName":"t"}}"#)
        .await
        .expect("answer");
    assert!(v["result"]["sessionId"].is_string(), "{v}");
    let v = exchange(&mut ws, r#"{"id":7,"method":"environment/info"}"#).await.expect("answer");
    assert_eq!(
        err_of(&v),
        (-32600, "client must send initialized before using environment info methods".into())
    );
    let v = exchange(&mut ws, r#"{"id":8,"method":"initialize","params":{"clientName":"t"}}"#)
        .await
        .expect("answer");
    assert_eq!(err_of(&v), (-32600, "initialize may only be sent once per connection".into()));
    ws.send(Message::Text(r#"{"method":"initialized","params":{}}"#.into())).await.expect("send");
    let v = exchange(&mut ws, r#"{"id":"str-id","method":"environment/status","params":null}"#)
        .await
        .expect("answer");
    assert_eq!(v, json!({"id": "str-id", "result": {"status": "ready"}}));
}

#[tokio::test]
async fn malformed_frames_and_unknown_methods() {
    let s = TestServer::start().await;
    let mut ws = raw_socket(&s.url).await;
    let v = exchange(&mut ws, "this is not json").await.expect("answer");
    assert_eq!(v["id"], json!(-1));
    assert_eq!(v["error"]["code"], json!(-32600));
    assert!(v["error"]["message"].as_str().expect("msg").contains("failed to parse"));
    let v = exchange(&mut ws, "[1,2,3]").await.expect("answer");
    assert!(v["error"]["message"].as_str().expect("msg").contains("expected a JSON-RPC object"));
    let v = exchange(&mut ws, "42").await.expect("answer");
    assert_eq!(v["id"], json!(-1));
    let v = exchange(&mut ws, r#"{"id":9,"method":"fs/watch","params":{}}"#).await.expect("answer");
    assert_eq!(err_of(&v), (-32601, "exec-server stub does not implement `fs/watch` yet".into()));
    let v =
        exchange(&mut ws, r#"{"id":9223372036854775807,"method":"nope"}"#).await.expect("answer");
    assert_eq!(v["id"], json!(i64::MAX));
    // Binary frames holding JSON are accepted too.
    ws.send(Message::Binary(
        br#"{"id":10,"method":"initialize","params":{"clientName":"b"}}"#.to_vec().into(),
    ))
    .await
    .expect("send");
    let v = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            break serde_json::from_str::<Value>(&t).expect("json");
        }
    };
    assert!(v["result"]["sessionId"].is_string());
    // The connection survived all of it, and the server serves others.
    let c = s.client().await;
    assert_eq!(
        c.run("p", &["hello"], &s.uri("")).await.expect("run").stdout_str(),
        "hello from wasm\n"
    );
}

#[tokio::test]
async fn protocol_violations_close_the_connection() {
    let s = TestServer::start().await;
    let mut ws = raw_socket(&s.url).await;
    assert_eq!(exchange(&mut ws, r#"{"method":"initialized","params":{}}"#).await, None);
    let mut ws = raw_socket(&s.url).await;
    assert_eq!(exchange(&mut ws, r#"{"id":1,"result":{}}"#).await, None);
}

#[tokio::test]
async fn http_endpoints() {
    let s = TestServer::start().await;
    assert!(http_get(&s.url, "/readyz").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(&s.url, "/").await.starts_with("HTTP/1.1 400"));
    assert!(http_get(&s.url, "/elsewhere").await.starts_with("HTTP/1.1 404"));
    // Query strings on the upgrade path are ignored.
    let c = Client::connect(&format!("{}/?x=1", s.url)).await.expect("query string upgrade");
    drop(c);
}

// ------------------------------------------------------------------ processes

#[tokio::test]
async fn hello_streams_output_and_closes_last() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let r = c.start("p1", &["/usr/bin/hello"], &s.uri(""), json!({})).await.expect("start");
    assert_eq!(r, json!({"processId": "p1", "sandboxType": "none"}));
    let f = c.collect("p1").await.expect("collect");
    assert_eq!(f.stdout_str(), "hello from wasm\n");
    assert_eq!(f.exit_code, 0);
    assert_eq!(f.events.last().map(String::as_str), Some("process/closed"));
    let t = c.request("process/terminate", json!({"processId": "p1"})).await.expect("terminate");
    assert_eq!(t, json!({"running": false}));
}

/// The pump answers `process/start` itself, after the command's first poll
/// (so a command that finishes at once goes out with its answer). The
/// answer must still come before anything the process sends, and must not
/// wait for a command that keeps running: a builtin loop, a spinning guest,
/// a command blocked on stdin.
#[tokio::test]
async fn the_start_answer_comes_first_and_does_not_wait_for_the_command() {
    let s = TestServer::start().await;
    let mut ws = raw_socket(&s.url).await;
    exchange(&mut ws, r#"{"id":0,"method":"initialize","params":{"clientName":"t"}}"#)
        .await
        .expect("initialize");
    ws.send(Message::Text(r#"{"method":"initialized","params":{}}"#.into()))
        .await
        .expect("initialized");
    let cwd = s.uri("");
    let next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| -> Value {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("a frame within 5 s")
            {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("json"),
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    };
    let start = |id: u64, pid: &str, argv: Value, pipe: bool| {
        json!({
            "id": id,
            "method": "process/start",
            "params": {
                "processId": pid,
                "argv": argv,
                "cwd": cwd,
                "env": {},
                "tty": false,
                "pipeStdin": pipe,
                "arg0": null
            }
        })
        .to_string()
    };
    // Finishes in its first poll: the answer, then output, exited, closed.
    ws.send(Message::Text(start(1, "quick", json!(["/bin/bash", "-lc", "echo hi"]), false).into()))
        .await
        .expect("send");
    let first = next(&mut ws).await;
    assert_eq!(first["id"], 1, "the answer comes first: {first}");
    assert_eq!(first["result"]["processId"], "quick");
    let mut methods = vec![];
    while methods.last().map(String::as_str) != Some("process/closed") {
        let v = next(&mut ws).await;
        assert_eq!(v["params"]["processId"], "quick", "{v}");
        methods.push(v["method"].as_str().expect("a notification").to_owned());
    }
    assert_eq!(methods, ["process/output", "process/exited", "process/closed"]);
    // Never finish on their own: each is answered while it runs.
    let runners = [
        ("loop", json!(["/bin/bash", "-lc", "while :; do :; done"]), false),
        ("spin", json!(["spin"]), false),
        ("stdin", json!(["line-echo"]), true),
    ];
    let mut answered = std::collections::BTreeSet::new();
    for (i, (pid, argv, pipe)) in runners.into_iter().enumerate() {
        let id = 10 + i as u64;
        ws.send(Message::Text(start(id, pid, argv, pipe).into())).await.expect("send");
        loop {
            let v = next(&mut ws).await;
            if let Some(of) =
                v["params"]["processId"].as_str().filter(|_| v.get("method").is_some())
            {
                assert!(answered.contains(of), "a notification before its start's answer: {v}");
                continue;
            }
            assert_eq!(
                (v["id"].as_u64(), v["result"]["processId"].as_str()),
                (Some(id), Some(pid)),
                "{v}"
            );
            answered.insert(pid.to_owned());
            break;
        }
    }
    for (i, pid) in ["loop", "spin", "stdin"].into_iter().enumerate() {
        let t = json!({"id": 20 + i, "method": "process/terminate", "params": {"processId": pid}})
            .to_string();
        ws.send(Message::Text(t.into())).await.expect("send");
    }
    let mut closed = std::collections::BTreeSet::new();
    while closed.len() < 3 {
        let v = next(&mut ws).await;
        if v["method"] == "process/closed" {
            closed.insert(v["params"]["processId"].as_str().expect("id").to_owned());
        }
    }
}

#[tokio::test]
async fn exit_codes_reach_the_client_unchanged() {
    let s = TestServer::start().await;
    let c = s.client().await;
    for code in [0, 1, 3, 126, 200, 255] {
        let f = c
            .run(&format!("e{code}"), &["exit-code", &code.to_string()], &s.uri(""))
            .await
            .expect("run");
        assert_eq!(f.exit_code, code, "exit-code {code}: {f:?}");
        assert_eq!(f.stdout_str(), format!("exiting with {code}\n"));
        assert_eq!(f.stderr_str(), "this goes to stderr\n");
    }
}

#[tokio::test]
async fn unknown_program_fails_the_start_and_unknown_command_is_127() {
    let s = TestServer::start().await;
    // An argv program that does not exist: the start fails, as the
    // reference's spawn does (Codex's `ProcessStartErrorData`).
    let mut ws = raw_socket(&s.url).await;
    let init = r#"{"id":1,"method":"initialize","params":{"clientName":"t"}}"#;
    exchange(&mut ws, init).await.expect("initialize");
    ws.send(Message::text(r#"{"method":"initialized"}"#)).await.expect("initialized");
    let start = json!({
        "id": 2,
        "method": "process/start",
        "params": {
            "processId": "nf",
            "argv": ["/usr/bin/definitely-missing"],
            "cwd": s.uri(""),
            "env": {},
            "tty": false
        }
    })
    .to_string();
    let v = exchange(&mut ws, &start).await.expect("answer");
    assert_eq!(
        v["error"],
        json!({"code": -32603, "message": "No such file or directory (os error 2)",
               "data": {"kind": "spawnNotFound"}}),
        "{v}"
    );
    // In a command line it is bash's 127.
    let c = s.client().await;
    let f = c
        .run("nf", &["bash", "-lc", "/usr/bin/definitely-missing"], &s.uri(""))
        .await
        .expect("run");
    assert_eq!(f.exit_code, 127);
    assert!(f.stderr_str().contains("definitely-missing: No such file or directory"), "{f:?}");
}

#[tokio::test]
async fn trap_is_134_with_a_diagnostic() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let f = c.run("t", &["trap"], &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 134);
    assert_eq!(f.stdout_str(), "about to trap\n");
    assert!(f.stderr_str().starts_with("trap: wasm trap:"), "{}", f.stderr_str());
}

#[tokio::test]
async fn terminate_stops_a_spinning_guest_with_137() {
    let s = TestServer::start().await;
    let c = s.client().await;
    c.start("spin", &["spin"], &s.uri(""), json!({})).await.expect("start");
    let first = c.next_notification().await.expect("output");
    assert_eq!(first["method"], "process/output");
    let r = c.request("process/terminate", json!({"processId": "spin"})).await.expect("terminate");
    assert_eq!(r, json!({"running": true}));
    let exited = c.next_notification().await.expect("exited");
    assert_eq!(exited["method"], "process/exited");
    assert_eq!(exited["params"]["exitCode"], 137);
    assert_eq!(exited["params"]["seq"], 2);
    let closed = c.next_notification().await.expect("closed");
    assert_eq!(closed["params"], json!({"processId": "spin", "seq": 3}));
    let again =
        c.request("process/terminate", json!({"processId": "spin"})).await.expect("terminate");
    assert_eq!(again, json!({"running": false}));
    let unknown =
        c.request("process/terminate", json!({"processId": "nope"})).await.expect("terminate");
    assert_eq!(unknown, json!({"running": false}));
}

#[tokio::test]
async fn interrupt_is_130() {
    let s = TestServer::start().await;
    let c = s.client().await;
    c.start("spin", &["spin"], &s.uri(""), json!({})).await.expect("start");
    c.next_notification().await.expect("output");
    let r = c
        .request("process/signal", json!({"processId": "spin", "signal": "interrupt"}))
        .await
        .expect("signal");
    assert_eq!(r, json!({}));
    let exited = c.next_notification().await.expect("exited");
    assert_eq!(exited["params"]["exitCode"], 130);
    let e = c
        .request("process/signal", json!({"processId": "spin", "signal": "kill"}))
        .await
        .expect_err("kill");
    assert_eq!(e.code(), Some(-32602));
    assert!(e.to_string().contains("unknown variant `kill`, expected `interrupt`"), "{e}");
    let r = c
        .request("process/signal", json!({"processId": "gone", "signal": "interrupt"}))
        .await
        .expect("signal");
    assert_eq!(r, json!({}));
}

#[tokio::test]
async fn stdin_from_process_write_streams_through() {
    let s = TestServer::start().await;
    let c = s.client().await;
    c.start("le", &["line-echo"], &s.uri(""), json!({"pipeStdin": true})).await.expect("start");
    let w = c.write("le", b"first\n", "1").await.expect("write");
    assert_eq!(w, json!({"status": "accepted"}));
    // The answer to the first line arrives while stdin is still open: output streams.
    let n = c.next_notification().await.expect("output");
    assert_eq!(n["params"]["chunk"], json!("ZWNobzogZmlyc3QK")); // "echo: first\n"
    // A repeated writeId is accepted and not written again.
    assert_eq!(c.write("le", b"first\n", "1").await.expect("dup"), json!({"status": "accepted"}));
    assert_eq!(c.write("le", b"", "2").await.expect("empty"), json!({"status": "accepted"}));
    c.write("le", b"second\n", "3").await.expect("write");
    let n = c.next_notification().await.expect("output");
    assert_eq!(n["params"]["seq"], 2);
    // No way to close stdin on a pipe: terminate, as the client does.
    c.request("process/terminate", json!({"processId": "le"})).await.expect("terminate");
    let exited = c.next_notification().await.expect("exited");
    assert_eq!(exited["params"]["exitCode"], 137);
}

#[tokio::test]
async fn write_statuses() {
    let s = TestServer::start().await;
    let c = s.client().await;
    assert_eq!(
        c.write("nobody", b"x", "1").await.expect("write"),
        json!({"status": "unknownProcess"})
    );
    c.start("closed", &["line-echo"], &s.uri(""), json!({})).await.expect("start");
    assert_eq!(
        c.write("closed", b"x\n", "1").await.expect("write"),
        json!({"status": "stdinClosed"})
    );
    let f = c.collect("closed").await.expect("collect");
    assert_eq!(f.stdout_str(), "bye\n", "stdin is closed when not requested");
    let e = c.write("closed", b"x", "").await.expect_err("empty writeId");
    assert_eq!(e.code(), Some(-32602));
}

#[tokio::test]
async fn tty_mode_emulates_a_terminal() {
    let s = TestServer::start().await;
    let c = s.client().await;
    c.start("tty", &["cat-files"], &s.uri(""), json!({"tty": true})).await.expect("start");
    c.write("tty", b"hello tty\n\x04", "1").await.expect("write");
    let f = c.collect("tty").await.expect("collect");
    assert_eq!(f.exit_code, 0);
    assert!(f.stdout.is_empty() && f.stderr.is_empty());
    assert_eq!(String::from_utf8_lossy(&f.pty), "hello tty\r\nhello tty\r\n");
}

#[tokio::test]
async fn tty_ctrl_c_interrupts() {
    let s = TestServer::start().await;
    let c = s.client().await;
    c.start("tty", &["line-echo"], &s.uri(""), json!({"tty": true})).await.expect("start");
    c.write("tty", b"\x03", "1").await.expect("write");
    let f = c.collect("tty").await.expect("collect");
    assert_eq!(f.exit_code, 1, "interrupted tty processes report 1, as the reference does");
}

#[tokio::test]
async fn environment_is_exactly_the_request_env_plus_pwd() {
    let s = TestServer::start().await;
    std::fs::create_dir(s.root().join("sub")).expect("mkdir");
    let c = s.client().await;
    c.start(
        "env",
        &["echo-args", "--all-env"],
        &s.uri("sub"),
        json!({"env": {"A": "1", "TERM": "dumb"}}),
    )
    .await
    .expect("start");
    let f = c.collect("env").await.expect("collect");
    assert_eq!(f.stdout_str(), format!("A=1\nPWD={}/sub\nTERM=dumb\n", s.visible));
    // With an envPolicy the base is a fixed sandbox environment, never ours.
    let policy = json!({
        "inherit": "all",
        "ignoreDefaultExcludes": true,
        "exclude": [],
        "set": {},
        "includeOnly": []
    });
    c.start(
        "env2",
        &["echo-args", "--all-env"],
        &s.uri(""),
        json!({"envPolicy": policy, "env": {"X": "y"}}),
    )
    .await
    .expect("start");
    let out = c.collect("env2").await.expect("collect").stdout_str();
    assert!(out.contains("PATH=/usr/local/bin:/usr/bin:/bin\n"), "{out}");
    assert!(out.contains("X=y\n") && out.contains("USER=sandbox\n"), "{out}");
    for (k, _) in std::env::vars() {
        if !["PATH", "HOME", "USER", "LANG", "LOGNAME", "SHELL", "PWD"].contains(&k.as_str()) {
            assert!(!out.contains(&format!("\n{k}=")), "server variable {k} leaked: {out}");
        }
    }
}

#[tokio::test]
async fn cwd_is_the_working_directory_of_the_guest() {
    let s = TestServer::start().await;
    s.write("sub/dir/file.txt", "in subdir\n");
    let c = s.client().await;
    let f = c.run("pwd", &["echo-args", "--pwd"], &s.uri("sub/dir")).await.expect("run");
    assert_eq!(f.stdout_str(), format!("{}/sub/dir\n", s.visible));
    let f = c.run("cat", &["cat-files", "file.txt"], &s.uri("sub/dir")).await.expect("run");
    assert_eq!(f.stdout_str(), "in subdir\n");
}

#[tokio::test]
async fn visible_path_can_differ_from_the_host_path() {
    let s = TestServer::start_with(Limits::default(), Some("/workspace")).await;
    s.write("a.txt", "A\n");
    let c = s.client().await;
    let f =
        c.run("cat", &["cat-files", "/workspace/a.txt"], "file:///workspace").await.expect("run");
    assert_eq!(f.stdout_str(), "A\n");
    let f = c.run("pwd", &["echo-args", "--pwd"], "file:///workspace").await.expect("run");
    assert_eq!(f.stdout_str(), "/workspace\n");
    assert_eq!(c.read_file("file:///workspace/a.txt").await.expect("read"), b"A\n");
}

#[tokio::test]
async fn process_start_errors() {
    let s = TestServer::start().await;
    s.write("file.txt", "x");
    let c = s.client().await;
    let e = c.start("a", &[], &s.uri(""), json!({})).await.expect_err("empty argv");
    assert_eq!((e.code(), e.to_string().contains("argv must not be empty")), (Some(-32602), true));
    let e = c.start("b", &["hello"], &s.uri("missing"), json!({})).await.expect_err("missing cwd");
    assert_eq!(e.code(), Some(-32603));
    assert!(e.to_string().contains("No such file or directory (os error 2)"), "{e}");
    let e = c.start("c", &["hello"], &s.uri("file.txt"), json!({})).await.expect_err("file cwd");
    assert!(e.to_string().contains("Not a directory (os error 20)"), "{e}");
    let e = c.start("d", &["hello"], "file:///etc", json!({})).await.expect_err("outside cwd");
    assert_eq!(e.code(), Some(-32603));
    let e = c.start("e", &["hello"], "/plain/path", json!({})).await.expect_err("not a uri");
    assert_eq!(e.code(), Some(-32602));
    c.run("dup", &["hello"], &s.uri("")).await.expect("first");
    let e = c.start("dup", &["hello"], &s.uri(""), json!({})).await.expect_err("duplicate");
    assert_eq!(e.code(), Some(-32600));
    assert!(e.to_string().contains("process dup already exists"), "{e}");
}

#[tokio::test]
async fn process_read_replays_retained_output() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let f = c.run("r", &["exit-code", "3"], &s.uri("")).await.expect("run");
    assert_eq!(f.events.len(), 4);
    let r = c
        .request(
            "process/read",
            json!({"processId": "r", "afterSeq": 0, "maxBytes": null, "waitMs": 0}),
        )
        .await
        .expect("read");
    assert_eq!(r["nextSeq"], 5);
    assert_eq!(
        (r["exited"].clone(), r["exitCode"].clone(), r["closed"].clone()),
        (json!(true), json!(3), json!(true))
    );
    assert_eq!(r["chunks"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["failure"], Value::Null);
    let r =
        c.request("process/read", json!({"processId": "r", "afterSeq": 1})).await.expect("read");
    assert_eq!(r["chunks"][0]["seq"], 2);
    assert_eq!(r["chunks"][0]["stream"], "stderr");
    let r = c
        .request("process/read", json!({"processId": "r", "afterSeq": 0, "maxBytes": 1}))
        .await
        .expect("read");
    assert_eq!((r["chunks"].as_array().map(Vec::len), r["nextSeq"].clone()), (Some(1), json!(2)));
    let e = c.request("process/read", json!({"processId": "zzz"})).await.expect_err("unknown");
    assert_eq!(e.code(), Some(-32600));
}

/// Closed processes keep their output for `process/read`, but a session's
/// closed processes keep at most 16 × `retained-output` between them: the
/// oldest lose their output (not their status) past it. Without the bound,
/// short commands printing a lot made the server hold all of it for 80 s.
#[tokio::test]
async fn closed_processes_keep_a_bounded_amount_of_output() {
    let retained = 64 << 10;
    let limits = Limits { retained_output: retained, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    let n = 40;
    for i in 0..n {
        let f = c.run(&format!("f{i}"), &["flood", "1"], &s.uri("")).await.expect("run");
        assert_eq!((f.exit_code, f.stdout.len()), (0, 64 << 10), "f{i}");
    }
    let mut kept = vec![];
    for i in 0..n {
        let r = c
            .request("process/read", json!({"processId": format!("f{i}"), "afterSeq": 0}))
            .await
            .expect("the entry is still there");
        assert_eq!(
            (r["exited"].clone(), r["exitCode"].clone(), r["closed"].clone()),
            (json!(true), json!(0), json!(true))
        );
        let bytes: usize = r["chunks"]
            .as_array()
            .expect("chunks")
            .iter()
            .map(|ch| {
                wasm_exec_server::b64::decode(ch["chunk"].as_str().expect("chunk").as_bytes())
                    .expect("b64")
                    .len()
            })
            .sum();
        kept.push(bytes);
    }
    let total: usize = kept.iter().sum();
    assert!(total <= 16 * retained, "closed processes keep {total} bytes: {kept:?}");
    assert_eq!(kept[0], 0, "the oldest lost its output: {kept:?}");
    assert_eq!(kept[n - 1], 64 << 10, "the newest kept all of it: {kept:?}");
}

/// A session remembers at most 1024 closed processes: past that the oldest
/// are forgotten before their 80 s, so a client running commands back to
/// back does not grow the server by ~1.7 KiB a command for 80 s.
#[tokio::test]
async fn a_session_remembers_a_bounded_number_of_closed_processes() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let n = 1024 + 8;
    for i in 0..n {
        let f =
            c.run(&format!("t{i}"), &["/bin/bash", "-lc", "true"], &s.uri("")).await.expect("run");
        assert_eq!(f.exit_code, 0);
    }
    let read = |id: String| c.request("process/read", json!({"processId": id, "afterSeq": 0}));
    for i in 0..8 {
        let e = read(format!("t{i}")).await.expect_err("forgotten");
        assert_eq!(e.code(), Some(-32600), "t{i}: {e}");
    }
    for i in [8, n / 2, n - 1] {
        let r = read(format!("t{i}")).await.expect("remembered");
        assert_eq!((r["closed"].clone(), r["exitCode"].clone()), (json!(true), json!(0)), "t{i}");
    }
}

#[tokio::test]
async fn process_read_waits_without_blocking_the_connection() {
    let s = TestServer::start().await;
    let c = std::sync::Arc::new(s.client().await);
    c.start("le", &["line-echo"], &s.uri(""), json!({"pipeStdin": true})).await.expect("start");
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        c2.request("process/read", json!({"processId": "le", "afterSeq": 0, "waitMs": 10_000}))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The connection still answers while the read waits.
    let st = c.request("environment/status", json!({})).await.expect("status while waiting");
    assert_eq!(st["status"], "ready");
    c.write("le", b"wake\n", "1").await.expect("write");
    let r = waiter.await.expect("join").expect("read");
    assert_eq!(r["chunks"][0]["seq"], 1);
    c.request("process/terminate", json!({"processId": "le"})).await.expect("terminate");
}

#[tokio::test]
async fn memory_limit_is_enforced_and_named() {
    let limits = Limits { max_memory: 64 << 20, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    let f = c.run("m", &["memhog"], &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 137);
    assert!(
        f.stderr_str().contains("memory limit exceeded (max-memory is 64 MiB)"),
        "{}",
        f.stderr_str()
    );
    let f = c.run("m2", &["memhog", "8"], &s.uri("")).await.expect("run");
    assert_eq!((f.exit_code, f.stdout_str()), (0, "allocated 8 MiB\n".into()));
}

#[tokio::test]
async fn wall_clock_limit_stops_a_spinner() {
    let limits = Limits { max_wall: Duration::from_millis(300), ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    let f = c.run("w", &["spin"], &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 137);
    assert!(
        f.stderr_str().contains("timed out") && f.stderr_str().contains("max-wall"),
        "{}",
        f.stderr_str()
    );
}

#[tokio::test]
async fn output_limit_stops_a_flood() {
    let limits = Limits { max_output: 1 << 20, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    let f = c.run("f", &["flood"], &s.uri("")).await.expect("run");
    assert_eq!(f.exit_code, 137);
    assert!(f.stderr_str().contains("output limit exceeded (max-output)"), "{}", f.stderr_str());
    assert!(f.stdout.len() >= 1 << 20 && f.stdout.len() < 4 << 20, "{}", f.stdout.len());
}

#[tokio::test]
async fn process_limit_per_session() {
    let limits = Limits { max_processes: 2, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    c.start("a", &["spin"], &s.uri(""), json!({})).await.expect("a");
    c.start("b", &["spin"], &s.uri(""), json!({})).await.expect("b");
    let e = c.start("c", &["spin"], &s.uri(""), json!({})).await.expect_err("third");
    assert_eq!(e.code(), Some(-32600));
    assert!(e.to_string().contains("max-processes"), "{e}");
}

#[tokio::test]
async fn disconnect_stops_the_sessions_processes() {
    let limits = Limits { detach_grace: Duration::ZERO, ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = s.client().await;
    c.start("t", &["ticker", "ticks.txt"], &s.uri(""), json!({})).await.expect("start");
    c.next_notification().await.expect("first tick");
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let len = std::fs::metadata(s.root().join("ticks.txt")).expect("ticks").len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = std::fs::metadata(s.root().join("ticks.txt")).expect("ticks").len();
    assert_eq!(len, later, "the ticker kept running after its client left");
    // And the server still serves.
    let c = s.client().await;
    assert_eq!(c.run("h", &["hello"], &s.uri("")).await.expect("run").exit_code, 0);
}

#[tokio::test]
async fn many_processes_in_parallel_have_their_own_seq() {
    let s = TestServer::start().await;
    let mut handles = Vec::new();
    for i in 0..8 {
        let url = s.url.clone();
        let cwd = s.uri("");
        handles.push(tokio::spawn(async move {
            let c = Client::connect(&url).await.expect("connect");
            let f = c
                .run(&format!("p{i}"), &["echo-args", "n", &i.to_string()], &cwd)
                .await
                .expect("run");
            assert_eq!(f.stdout_str(), format!("n {i}\n"));
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
}

// ------------------------------------------------------------------ resume

fn ticks(s: &TestServer) -> u64 {
    std::fs::metadata(s.root().join("ticks.txt")).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_its_output() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let init = c.request("environment/info", json!({})).await.expect("info");
    assert!(init["cwd"].is_string());
    let session_id = {
        // The handshake result is not kept by `client()`: ask again on a raw client.
        let c2 = Client::connect_with(&s.url, None).await.expect("connect");
        let r = c2.initialize().await.expect("init");
        c2.start("t", &["ticker", "ticks.txt"], &s.uri(""), json!({})).await.expect("start");
        let mut last = 0;
        for _ in 0..2 {
            let n = c2.next_notification().await.expect("tick");
            last = n["params"]["seq"].as_u64().expect("seq");
        }
        drop(c2);
        (r["sessionId"].as_str().expect("id").to_owned(), last)
    };
    let (id, last_seen) = session_id;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The command kept running while detached.
    let before = ticks(&s);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(ticks(&s) > before, "the command stopped while its session was detached");
    let c3 = Client::connect_with(&s.url, None).await.expect("reconnect");
    let r = c3
        .request("initialize", json!({"clientName": "codex-environment", "resumeSessionId": id}))
        .await
        .expect("resume");
    assert_eq!(r["sessionId"], json!(id));
    c3.send_raw(json!({"method": "initialized", "params": {}}).to_string())
        .await
        .expect("initialized");
    let read = c3
        .request(
            "process/read",
            json!({"processId": "t", "afterSeq": last_seen, "maxBytes": null, "waitMs": 0}),
        )
        .await
        .expect("read");
    let chunks = read["chunks"].as_array().expect("chunks");
    assert!(!chunks.is_empty(), "output produced while detached is retained: {read}");
    assert_eq!(chunks[0]["seq"].as_u64(), Some(last_seen + 1), "no gap: {read}");
    assert_eq!(read["exited"], json!(false));
    // Notifications flow to the new connection.
    let n = c3.next_notification().await.expect("live tick");
    assert_eq!(n["method"], "process/output");
    let t = c3.request("process/terminate", json!({"processId": "t"})).await.expect("terminate");
    assert_eq!(t, json!({"running": true}));
    // A second connection cannot take the attached session.
    let c4 = Client::connect_with(&s.url, None).await.expect("connect");
    let e = c4
        .request("initialize", json!({"clientName": "x", "resumeSessionId": id}))
        .await
        .expect_err("attached elsewhere");
    assert_eq!(e.code(), Some(-32010));
    assert!(e.to_string().contains("is already attached to another connection"), "{e}");
    let e = c4
        .request("initialize", json!({"clientName": "x", "resumeSessionId": "no-such-session"}))
        .await
        .expect_err("unknown");
    assert_eq!(e.to_string(), "server error -32600: unknown session id no-such-session");
}

#[tokio::test]
async fn a_detached_session_expires_and_its_commands_stop() {
    let limits = Limits { detach_grace: Duration::from_millis(300), ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let c = Client::connect_with(&s.url, None).await.expect("connect");
    let id = c.initialize().await.expect("init")["sessionId"].as_str().expect("id").to_owned();
    c.start("t", &["ticker", "ticks.txt"], &s.uri(""), json!({})).await.expect("start");
    c.next_notification().await.expect("tick");
    drop(c);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = ticks(&s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ticks(&s), before, "commands of an expired session kept running");
    let c = Client::connect_with(&s.url, None).await.expect("connect");
    let e = c
        .request("initialize", json!({"clientName": "x", "resumeSessionId": id}))
        .await
        .expect_err("expired");
    assert_eq!(e.code(), Some(-32600));
}

// ------------------------------------------------------------------ observability

async fn http_get(url: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock =
        tokio::net::TcpStream::connect(url.trim_start_matches("ws://")).await.expect("tcp");
    sock.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    sock.read_to_string(&mut out).await.expect("read");
    out
}

/// The value of one sample line (`name{labels} value`) in a scrape.
fn sample(scrape: &str, prefix: &str) -> f64 {
    scrape
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_connections_processes_and_fs_calls() {
    let s = TestServer::start().await;
    let before = http_get(&s.url, "/metrics").await;
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    // An OpenMetrics body, served as one.
    assert!(
        before
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{before}"
    );
    assert!(before.trim_end().ends_with("# EOF"), "{before}");
    let c = s.client().await;
    c.run("m1", &["exit-code", "0"], &s.uri("")).await.expect("run");
    c.run("m2", &["trap"], &s.uri("")).await.expect("run");
    let _ = c.read_file(&s.uri("missing")).await;
    c.start("m3", &["spin"], &s.uri(""), json!({})).await.expect("start");
    c.next_notification().await.expect("out");
    c.request("process/terminate", json!({"processId": "m3"})).await.expect("terminate");
    c.collect_streaming("m3", &mut |_, _| {}).await.ok();
    let after = http_get(&s.url, "/metrics").await;
    let moved = |prefix: &str| sample(&after, prefix) - sample(&before, prefix);
    assert!(moved(r#"wasm_exec_server_connections_total{tenant="default"}"#) >= 1.0, "{after}");
    assert!(
        moved(r#"wasm_exec_server_processes_started_total{tenant="default"}"#) >= 3.0,
        "{after}"
    );
    assert!(
        moved(r#"wasm_exec_server_processes_finished_total{tenant="default",outcome="exit"}"#)
            >= 1.0,
        "{after}"
    );
    assert!(
        moved(r#"wasm_exec_server_processes_finished_total{tenant="default",outcome="trap"}"#)
            >= 1.0,
        "{after}"
    );
    assert!(
        moved(
            r#"wasm_exec_server_processes_finished_total{tenant="default",outcome="terminated"}"#
        ) >= 1.0,
        "{after}"
    );
    assert!(
        moved(concat!(
            r#"wasm_exec_server_fs_calls_total{tenant="default","#,
            r#"method="fs/readFile",code="-32004"}"#
        )) >= 1.0,
        "{after}"
    );
    assert!(moved(r#"wasm_exec_server_output_bytes_total{tenant="default"}"#) > 0.0, "{after}");
    assert!(after.contains("wasm_exec_server_command_duration_seconds_bucket"), "{after}");
    assert!(after.contains("wasm_exec_server_module_cache_total"), "{after}");
    // Gauges read at scrape time, and the version.
    let running = r#"wasm_exec_server_processes_running{tenant="default"}"#;
    assert!(after.contains(running), "{after}");
    // (Other tests share this engine and its metrics, so the count is
    // theirs too; it can never go below zero.)
    assert!(sample(&after, running) >= 0.0, "{after}");
    assert!(after.contains(r#"wasm_exec_server_disk_used_bytes{tenant="default"}"#), "{after}");
    assert!(after.contains(r#"wasm_exec_server_disk_quota_bytes{tenant="default"}"#), "{after}");
    assert!(after.contains(r#"wasm_exec_server_instances_live{tenant="default"}"#), "{after}");
    assert!(after.contains("wasm_exec_server_build_info{version="), "{after}");
}

#[tokio::test]
async fn exited_carries_resource_usage() {
    let s = TestServer::start().await;
    let c = s.client().await;
    c.start("u", &["memhog", "16"], &s.uri(""), json!({})).await.expect("start");
    let mut exited = Value::Null;
    loop {
        let n = c.next_notification().await.expect("event");
        if n["method"] == "process/closed" {
            break;
        }
        if n["method"] == "process/exited" {
            exited = n;
        }
    }
    let usage = &exited["params"]["usage"];
    assert!(usage["peakMemoryBytes"].as_u64().expect("peak") >= 16 << 20, "{exited}");
    assert_eq!(usage["outputBytes"], json!("allocated 16 MiB\n".len()), "{exited}");
    assert_eq!(usage["instances"], json!(1));
    assert!(usage["wallMs"].is_u64() && usage["cpuMs"].is_u64(), "{exited}");
}

// ------------------------------------------------------------------ filesystem

#[tokio::test]
async fn fs_methods_success_and_not_found() {
    let s = TestServer::start().await;
    s.write("notes.md", "# project notes\n");
    let c = s.client().await;
    let md = c
        .request("fs/getMetadata", json!({"path": s.uri("notes.md"), "sandbox": null}))
        .await
        .expect("md");
    assert_eq!(
        (
            md["isFile"].clone(),
            md["isDirectory"].clone(),
            md["isSymlink"].clone(),
            md["size"].clone()
        ),
        (json!(true), json!(false), json!(false), json!(16))
    );
    assert!(md["modifiedAtMs"].as_i64().expect("mtime") > 1_600_000_000_000);
    assert!(md["createdAtMs"].is_i64());
    let e = c
        .request("fs/getMetadata", json!({"path": s.uri("AGENTS.md")}))
        .await
        .expect_err("missing");
    assert_eq!(e.code(), Some(-32004));
    assert!(e.to_string().contains("No such file or directory (os error 2)"), "{e}");
    assert_eq!(c.read_file(&s.uri("notes.md")).await.expect("read"), b"# project notes\n");
    assert!(c.read_file(&s.uri("src/new.txt")).await.expect_err("missing").is_not_found());
    // apply_patch's "add file in a new directory": -32004, mkdir -p, retry.
    assert!(
        c.write_file(&s.uri("src/new.txt"), b"new file\n")
            .await
            .expect_err("no parent")
            .is_not_found()
    );
    c.request("fs/createDirectory", json!({"path": s.uri("src"), "recursive": true}))
        .await
        .expect("mkdir");
    c.write_file(&s.uri("src/new.txt"), b"new file\n").await.expect("write");
    assert_eq!(std::fs::read(s.root().join("src/new.txt")).expect("on disk"), b"new file\n");
    let e = c
        .request("fs/createDirectory", json!({"path": s.uri("a/b"), "recursive": false}))
        .await
        .expect_err("np");
    assert_eq!(e.code(), Some(-32004));
    let e = c
        .request("fs/createDirectory", json!({"path": s.uri("src"), "recursive": false}))
        .await
        .expect_err("exists");
    assert_eq!(e.code(), Some(-32603));
    let e = c
        .request("fs/createDirectory", json!({"path": s.uri("notes.md"), "recursive": true}))
        .await
        .expect_err("file");
    assert_eq!((e.code(), e.to_string().contains("File exists")), (Some(-32603), true));
    let d = c.request("fs/readDirectory", json!({"path": s.uri("src")})).await.expect("readdir");
    assert_eq!(
        d,
        json!({"entries": [{"fileName": "new.txt", "isDirectory": false, "isFile": true}]})
    );
    let e =
        c.request("fs/readDirectory", json!({"path": s.uri("nope")})).await.expect_err("missing");
    assert_eq!(e.code(), Some(-32004));
    let e =
        c.request("fs/readDirectory", json!({"path": s.uri("notes.md")})).await.expect_err("file");
    assert_eq!(e.code(), Some(-32603));
    c.request(
        "fs/copy",
        json!({"sourcePath": s.uri("src"), "destinationPath": s.uri("src2"), "recursive": true}),
    )
    .await
    .expect("copy");
    assert_eq!(std::fs::read(s.root().join("src2/new.txt")).expect("copied"), b"new file\n");
    c.request(
        "fs/copy",
        json!({
            "sourcePath": s.uri("notes.md"),
            "destinationPath": s.uri("n2.md"),
            "recursive": false
        }),
    )
    .await
    .expect("copy file");
    let e = c
        .request(
            "fs/copy",
            json!({"sourcePath": s.uri("src"), "destinationPath": s.uri("x"), "recursive": false}),
        )
        .await
        .expect_err("dir without recursive");
    assert_eq!(e.code(), Some(-32600));
    assert!(e.to_string().contains("requires recursive: true"), "{e}");
    let e = c
        .request(
            "fs/copy",
            json!({"sourcePath": s.uri("nope"), "destinationPath": s.uri("x"), "recursive": false}),
        )
        .await
        .expect_err("missing source");
    assert_eq!(e.code(), Some(-32004));
    let r = c
        .request("fs/canonicalize", json!({"path": s.uri("src2/../src/new.txt")}))
        .await
        .expect("canon");
    assert_eq!(r, json!({"path": s.uri("src/new.txt")}));
    assert_eq!(
        c.request("fs/canonicalize", json!({"path": s.uri("nope")})).await.expect_err("m").code(),
        Some(-32004)
    );
    c.request("fs/remove", json!({"path": s.uri("src2"), "recursive": true, "force": true}))
        .await
        .expect("rm -rf");
    assert!(!s.root().join("src2").exists());
    let e = c
        .request(
            "fs/remove",
            json!({"path": s.uri("gone.txt"), "recursive": false, "force": false}),
        )
        .await
        .expect_err("m");
    assert_eq!(e.code(), Some(-32004));
    c.request("fs/remove", json!({"path": s.uri("gone.txt"), "force": true})).await.expect("force");
    let e = c
        .request("fs/remove", json!({"path": s.uri("src"), "recursive": false, "force": false}))
        .await
        .expect_err("ne");
    assert_eq!((e.code(), e.to_string().contains("Directory not empty")), (Some(-32603), true));
    let e = c
        .request("fs/readFile", json!({"path": "/home/dev/project/notes.md"}))
        .await
        .expect_err("plain");
    assert_eq!(e.to_string(), "server error -32602: invalid URI: relative URL without a base");
    let e = c.request("fs/readFile", json!({"path": s.uri("src")})).await.expect_err("dir");
    assert_eq!(e.code(), Some(-32600));
    let e = c
        .request("fs/writeFile", json!({"path": s.uri("b64"), "dataBase64": "!!!"}))
        .await
        .expect_err("b64");
    assert_eq!(e.code(), Some(-32600));
    assert!(e.to_string().contains("fs/writeFile requires valid base64 dataBase64"), "{e}");
    let e = c
        .request("fs/writeFile", json!({"path": s.uri("src"), "dataBase64": ""}))
        .await
        .expect_err("dir");
    assert_eq!(
        (e.code(), e.to_string().contains("Is a directory (os error 21)")),
        (Some(-32603), true)
    );
}

#[cfg(unix)]
#[tokio::test]
async fn fs_symlinks_inside_the_root_work() {
    let s = TestServer::start().await;
    s.write("real/target.txt", "T");
    std::os::unix::fs::symlink("real/target.txt", s.root().join("link.txt")).expect("symlink");
    std::os::unix::fs::symlink("missing", s.root().join("dangling")).expect("symlink");
    let c = s.client().await;
    let md = c.request("fs/getMetadata", json!({"path": s.uri("link.txt")})).await.expect("md");
    assert_eq!(
        (md["isSymlink"].clone(), md["isFile"].clone(), md["size"].clone()),
        (json!(true), json!(true), json!(1))
    );
    assert_eq!(
        c.request("fs/getMetadata", json!({"path": s.uri("dangling")}))
            .await
            .expect_err("d")
            .code(),
        Some(-32004)
    );
    let r = c.request("fs/canonicalize", json!({"path": s.uri("link.txt")})).await.expect("canon");
    assert_eq!(r["path"], json!(s.uri("real/target.txt")));
    c.write_file(&s.uri("link.txt"), b"new").await.expect("write through link");
    assert_eq!(std::fs::read(s.root().join("real/target.txt")).expect("target"), b"new");
    let d = c.request("fs/readDirectory", json!({"path": s.uri("")})).await.expect("ls");
    let names: Vec<&str> = d["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["fileName"].as_str())
        .collect();
    assert!(names.contains(&"link.txt") && !names.contains(&"dangling"), "{names:?}");
    let e = c
        .request("fs/getMetadata", json!({"path": s.uri("link.txt"), "followSymlinks": false}))
        .await
        .expect_err("nofollow");
    assert_eq!(e.to_string(), "server error -32600: path contains a symbolic link");
}

// ------------------------------------------------------------------ escapes

/// Plants a secret next to the root and symlinks pointing at it.
#[cfg(unix)]
fn plant(s: &TestServer) {
    std::fs::write(s.dir.path().join("secret"), "TOP SECRET").expect("secret");
    std::fs::create_dir(s.dir.path().join("outdir")).expect("outdir");
    std::fs::write(s.dir.path().join("outdir/secret"), "TOP SECRET").expect("secret");
    std::os::unix::fs::symlink(s.dir.path().join("secret"), s.root().join("abs-link"))
        .expect("link");
    std::os::unix::fs::symlink("../secret", s.root().join("rel-link")).expect("link");
    std::os::unix::fs::symlink(s.dir.path().join("outdir"), s.root().join("planted-link"))
        .expect("link");
}

#[cfg(unix)]
#[tokio::test]
async fn fs_escape_attempts_are_blocked() {
    let s = TestServer::start().await;
    plant(&s);
    let before = snapshot_outside(s.dir.path());
    let c = s.client().await;
    let outside_uri = format!("file://{}", s.dir.path().join("secret").display());
    let attempts: Vec<(&str, Value)> = vec![
        ("readFile ..", json!(["fs/readFile", {"path": s.uri("../secret")}])),
        ("readFile %2e%2e", json!(["fs/readFile", {"path": s.uri("%2e%2e/secret")}])),
        ("readFile absolute outside", json!(["fs/readFile", {"path": outside_uri}])),
        ("readFile /etc/passwd", json!(["fs/readFile", {"path": "file:///etc/passwd"}])),
        (
            "readFile /proc/self/environ",
            json!(["fs/readFile", {"path": "file:///proc/self/environ"}]),
        ),
        ("readFile abs symlink", json!(["fs/readFile", {"path": s.uri("abs-link")}])),
        ("readFile rel symlink", json!(["fs/readFile", {"path": s.uri("rel-link")}])),
        (
            "readFile through dir symlink",
            json!(["fs/readFile", {"path": s.uri("planted-link/secret")}]),
        ),
        ("getMetadata outside", json!(["fs/getMetadata", {"path": outside_uri}])),
        (
            "readDirectory through link",
            json!(["fs/readDirectory", {"path": s.uri("planted-link")}]),
        ),
        ("readDirectory /", json!(["fs/readDirectory", {"path": "file:///"}])),
        ("canonicalize link", json!(["fs/canonicalize", {"path": s.uri("abs-link")}])),
        (
            "writeFile ..",
            json!(["fs/writeFile", {"path": s.uri("../secret"), "dataBase64": "cHduZWQ="}]),
        ),
        (
            "writeFile abs symlink",
            json!(["fs/writeFile", {"path": s.uri("abs-link"), "dataBase64": "cHduZWQ="}]),
        ),
        (
            "writeFile rel symlink",
            json!(["fs/writeFile", {"path": s.uri("rel-link"), "dataBase64": "cHduZWQ="}]),
        ),
        (
            "writeFile through dir link",
            json!([
                "fs/writeFile",
                {"path": s.uri("planted-link/secret"), "dataBase64": "cHduZWQ="}
            ]),
        ),
        (
            "writeFile new through dir link",
            json!(["fs/writeFile", {"path": s.uri("planted-link/new"), "dataBase64": "cHduZWQ="}]),
        ),
        ("createDirectory outside", json!(["fs/createDirectory", {"path": s.uri("../newdir")}])),
        (
            "createDirectory through link",
            json!(["fs/createDirectory", {"path": s.uri("planted-link/newdir")}]),
        ),
        ("remove outside", json!(["fs/remove", {"path": s.uri("../secret")}])),
        ("remove through link", json!(["fs/remove", {"path": s.uri("planted-link/secret")}])),
        ("remove root", json!(["fs/remove", {"path": s.uri(""), "recursive": true}])),
        (
            "copy from outside",
            json!([
                "fs/copy",
                {
                    "sourcePath": outside_uri,
                    "destinationPath": s.uri("stolen"),
                    "recursive": false
                }
            ]),
        ),
        (
            "copy from link",
            json!([
                "fs/copy",
                {
                    "sourcePath": s.uri("abs-link"),
                    "destinationPath": s.uri("stolen"),
                    "recursive": false
                }
            ]),
        ),
        (
            "copy to outside",
            json!([
                "fs/copy",
                {"sourcePath": s.uri(""), "destinationPath": s.uri("../copy"), "recursive": true}
            ]),
        ),
        ("remote host", json!(["fs/readFile", {"path": "file://evil.example/etc/passwd"}])),
    ];
    for (what, call) in attempts {
        let r = c.request(call[0].as_str().expect("method"), call[1].clone()).await;
        match r {
            Err(e) => assert!(e.code().is_some(), "{what}: {e}"),
            Ok(v) => panic!("{what}: escaped with {v}"),
        }
    }
    // Reads outside answer not-found; writes outside answer permission denied.
    let e = c.request("fs/readFile", json!({"path": s.uri("../secret")})).await.expect_err("read");
    assert_eq!(e.code(), Some(-32004));
    let e = c
        .request("fs/writeFile", json!({"path": s.uri("../x"), "dataBase64": ""}))
        .await
        .expect_err("write");
    assert_eq!(e.to_string(), "server error -32600: Permission denied (os error 13)");
    assert!(!s.root().join("stolen").exists());
    assert_eq!(snapshot_outside(s.dir.path()), before, "something outside the root changed");
}

#[cfg(unix)]
#[tokio::test]
async fn guest_escape_attempts_are_blocked() {
    let s = TestServer::start().await;
    plant(&s);
    let before = snapshot_outside(s.dir.path());
    let c = s.client().await;
    let secret = s.dir.path().join("secret").display().to_string();
    let f = c.run("esc", &["escape", &secret], &s.uri("")).await.expect("run");
    let out = f.stdout_str();
    assert!(!out.contains("ESCAPED"), "{out}\n{}", f.stderr_str());
    assert_eq!(out.lines().filter(|l| l.starts_with("BLOCKED")).count(), 12, "{out}");
    assert_eq!(f.exit_code, 0);
    // The guest's own symlinks may exist, but they lead nowhere.
    let r = c.request("fs/readFile", json!({"path": s.uri("escape-link/passwd")})).await;
    assert!(r.is_err());
    assert_eq!(snapshot_outside(s.dir.path()), before, "something outside the root changed");
    // Files the guest reads through a planted link stay unreadable.
    let f = c
        .run("cat", &["cat-files", "planted-link/secret", "abs-link"], &s.uri(""))
        .await
        .expect("run");
    assert_eq!((f.exit_code, f.stdout.len()), (1, 0), "{}", f.stderr_str());
}

// ------------------------------------------------------------------ the binary

#[tokio::test]
async fn binary_prints_its_url_first_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_server(&["--listen", "ws://127.0.0.1:0"], dir.path(), &[]);
    let url = server_url(&mut child, Duration::from_secs(60)).await;
    assert!(url.starts_with("ws://127.0.0.1:") && !url.ends_with(":0"), "{url}");
    let c = Client::connect(&url).await.expect("connect");
    let cwd = format!("file://{}", std::fs::canonicalize(dir.path()).expect("canon").display());
    let f = c.run("h", &["hello"], &cwd).await.expect("run");
    assert_eq!(f.stdout_str(), "hello from wasm\n");
    child.kill().await.expect("kill");
}

/// One thread serves connections by default; more (or one per core, 0)
/// serve as well, in workers and in one process, connections side by side.
#[tokio::test]
async fn the_server_serves_with_any_number_of_connection_threads() {
    for args in [
        &["--connection-threads", "0"][..],
        &["--connection-threads", "3"][..],
        &["--connection-threads", "3", "--confinement", "off"][..],
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = spawn_server(args, dir.path(), &[]);
        let url = server_url(&mut child, Duration::from_secs(60)).await;
        let cwd = format!("file://{}", std::fs::canonicalize(dir.path()).expect("canon").display());
        let runs = (0..4).map(|i| {
            let (url, cwd) = (url.clone(), cwd.clone());
            async move {
                let c = Client::connect(&url).await.expect("connect");
                let mut out = Vec::new();
                for j in 0..2 {
                    let f = c.run(&format!("p{i}-{j}"), &["hello"], &cwd).await.expect("run");
                    out.push(f.stdout_str());
                }
                out
            }
        });
        for out in futures::future::join_all(runs).await {
            assert_eq!(out, vec!["hello from wasm\n"; 2], "{args:?}");
        }
        child.kill().await.expect("kill");
    }
}

#[tokio::test]
async fn stdio_transport_speaks_newline_delimited_json() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = format!("file://{}", std::fs::canonicalize(dir.path()).expect("canon").display());
    let mut child = spawn_server(&["--listen", "stdio"], dir.path(), &[]);
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(T, lines.next_line())
            .await
            .expect("in time")
            .expect("read")
            .expect("line");
        serde_json::from_str(&line).expect("json line")
    };
    let send = |v: Value| format!("{v}\n");
    stdin
        .write_all(
            send(json!({"id": 1, "method": "initialize", "params": {"clientName": "stdio"}}))
                .as_bytes(),
        )
        .await
        .expect("w");
    assert!(next().await["result"]["sessionId"].is_string());
    stdin.write_all(send(json!({"method": "initialized"})).as_bytes()).await.expect("w");
    let start = json!({
        "id": 2,
        "method": "process/start",
        "params": {"processId": "h", "argv": ["hello"], "cwd": cwd, "env": {}, "tty": false}
    });
    stdin.write_all(send(start).as_bytes()).await.expect("w");
    assert_eq!(next().await, json!({"id": 2, "result": {"processId": "h", "sandboxType": "none"}}));
    let out = next().await;
    assert_eq!(out["params"]["chunk"], json!("aGVsbG8gZnJvbSB3YXNtCg==")); // "hello from wasm\n"
    assert_eq!(next().await["method"], "process/exited");
    assert_eq!(next().await["method"], "process/closed");
    drop(stdin);
    let status = tokio::time::timeout(T, child.wait()).await.expect("exits on EOF").expect("wait");
    assert!(status.success());
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_drains_then_stops_commands_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = format!("file://{}", std::fs::canonicalize(dir.path()).expect("canon").display());
    let mut child = spawn_server(&["--shutdown-grace", "300ms"], dir.path(), &[]);
    let url = server_url(&mut child, T).await;
    let c = Client::connect(&url).await.expect("connect");
    // One command that finishes within the grace period, one that never does.
    c.start("spin", &["spin"], &cwd, json!({})).await.expect("start");
    c.next_notification().await.expect("spinning");
    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(kill.success());
    let exited = c.next_notification().await.expect("exited");
    assert_eq!(
        (exited["method"].as_str(), exited["params"]["exitCode"].as_i64()),
        (Some("process/exited"), Some(137))
    );
    assert_eq!(c.next_notification().await.expect("closed")["method"], "process/closed");
    let status = tokio::time::timeout(T, child.wait()).await.expect("server exits").expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn exec_subcommand_streams_output_and_returns_the_status() {
    let s = TestServer::start().await;
    s.write("sub/f.txt", "content\n");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .args(["exec", "--url", &s.url, "--cwd", &format!("{}/sub", s.visible), "--"])
        .arg("cat-files f.txt; echo err >&2; exit 3")
        .output()
        .await
        .expect("exec");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "content\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // Without --cwd it runs in the server's workspace root.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .args(["exec", "--url", &s.url, "--", "echo-args", "--pwd"])
        .output()
        .await
        .expect("exec");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()),
        (Some(0), format!("{}\n", s.visible))
    );
    // A server that is not there is a clear error.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .args(["exec", "--url", "ws://127.0.0.1:9", "--", "true"])
        .output()
        .await
        .expect("exec");
    // A client-side failure is 255, as ssh's, never a command's status.
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to ws://127.0.0.1:9"));
}

/// The README's configuration reference names every flag of every command.
#[test]
fn readme_documents_every_flag() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for cmd in ["serve", "exec", "run", "tools"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
            .args([cmd, "--help"])
            .output()
            .expect("--help");
        let help = String::from_utf8_lossy(&out.stdout);
        let flags: std::collections::BTreeSet<&str> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2 && *w != "--help")
            .collect();
        assert!(!flags.is_empty(), "{cmd} --help lists no flags");
        for flag in flags {
            assert!(
                readme.contains(&format!("`{flag}`")) || readme.contains(&format!("{flag} ")),
                "README does not document `{cmd} {flag}`"
            );
        }
    }
}

#[test]
fn help_explains_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .args(["serve", "--help"])
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--workspace",
        "--tools",
        "--max-memory",
        "--max-wall",
        "--max-output",
        "--cache-dir",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}:\n{help}");
    }
}
