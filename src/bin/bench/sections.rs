//! The measurements: running one command and timing it, then one function
//! per section of the table (latency, commands/s, streaming, fs, memory,
//! cold start).
//!
//! Over 600 lines: the sections are independent and each short; they share
//! the timing helpers at the top, and a reader compares them side by side.

use crate::server::{
    Launch, cpu_time, descendants_pss_kib, modules_compiled, our_rss_kib, tree_cpu_time, vm_rss_kib,
};
use crate::table::{Better, Figure, Table, Unit};
use crate::{FIXTURE_LINES, Kind, STREAM_BYTES, bash};
use anyhow::{Context, Result, bail, ensure};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wasm_exec_server::client::Client;

/// Process ids must be unique within a session, also after a process ended.
static NEXT_PROCESS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One finished command, as the client saw it.
pub struct Run {
    /// `process/start` sent → `process/closed` received.
    pub total: Duration,
    /// `process/start` sent → first `process/output` received.
    first_byte: Option<Duration>,
    bytes: u64,
    pub stdout: Vec<u8>,
    exit_code: i64,
}

/// Decoded size of a padded base64 string, without decoding it.
fn b64_len(s: &str) -> u64 {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count();
    (s.len() / 4 * 3 - pad) as u64
}

/// Runs one command and waits for `process/closed`. `keep` keeps stdout.
/// `tag` names the process (a counter makes the id unique).
/// `terminate` waits for the `process/terminate` the Codex client sends
/// afterwards; otherwise it is sent without waiting (untimed either way).
pub async fn run(
    c: &Client,
    tag: &str,
    argv: &[String],
    cwd: &str,
    keep: bool,
    terminate: bool,
) -> Result<Run> {
    let id = &format!("{tag}-{}", NEXT_PROCESS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    c.start(id, &argv, cwd, json!({})).await.with_context(|| format!("process/start {argv:?}"))?;
    let mut r =
        Run { total: Duration::ZERO, first_byte: None, bytes: 0, stdout: vec![], exit_code: -1 };
    loop {
        let n = c.next_notification().await.with_context(|| format!("waiting for {argv:?}"))?;
        let p = &n["params"];
        if p["processId"].as_str() != Some(id) {
            continue;
        }
        match n["method"].as_str() {
            Some("process/output") => {
                let chunk = p["chunk"].as_str().unwrap_or("");
                r.first_byte.get_or_insert_with(|| t0.elapsed());
                r.bytes += b64_len(chunk);
                if keep && p["stream"] == "stdout" {
                    r.stdout.extend(wasm_exec_server::b64::decode(chunk.as_bytes())?);
                }
            }
            Some("process/exited") => r.exit_code = p["exitCode"].as_i64().unwrap_or(-1),
            Some("process/closed") => break,
            _ => {}
        }
    }
    r.total = t0.elapsed();
    let params = json!({"processId": id});
    if terminate {
        c.request("process/terminate", params).await?;
    } else {
        // An id the client is not waiting for: the answer is dropped.
        c.send_raw(
            json!({"id": 1i64 << 50, "method": "process/terminate", "params": params}).to_string(),
        )
        .await?;
    }
    Ok(r)
}

/// Runs `argv` once and checks its output and status.
pub async fn check(c: &Client, argv: &[String], cwd: &str, expect: &str) -> Result<()> {
    let r = run(c, "check", argv, cwd, true, true).await?;
    let out = String::from_utf8_lossy(&r.stdout);
    ensure!(
        r.exit_code == 0 && out.trim() == expect.trim(),
        "{argv:?} gave status {} and {out:?}, expected {expect:?}",
        r.exit_code
    );
    Ok(())
}

/// One server under test: where it is and how to address its directory.
pub struct Target {
    pub kind: Kind,
    pub url: String,
    /// The directory commands run in, as a `file:` URI.
    pub cwd: String,
    /// The same directory on this machine, for the fixtures.
    pub dir: std::path::PathBuf,
    /// The server's process, when this program started it (for CPU time).
    pub pid: Option<u32>,
}

impl Target {
    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.cwd)
    }
}

/// A connection with no message-size limits, for large `fs/*` payloads (the
/// library client keeps tungstenite's 16 MiB frame limit).
struct BigConn {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

#[derive(Deserialize)]
struct ReadReply<'a> {
    #[serde(borrow)]
    result: Option<ReadResult<'a>>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ReadResult<'a> {
    #[serde(rename = "dataBase64", borrow)]
    data: &'a str,
}

impl BigConn {
    async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(
            url,
            WebSocketConfig::default().max_message_size(None).max_frame_size(None),
        )
        .await
    }

    /// Connects with `config` and performs the handshake.
    async fn connect_with(url: &str, config: WebSocketConfig) -> Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        let mut c = Self { ws };
        c.call(Message::text(
            json!({"id": 1, "method": "initialize", "params": {"clientName": "bench"}}).to_string(),
        ))
        .await?;
        c.ws.send(Message::text(json!({"method": "initialized", "params": {}}).to_string()))
            .await?;
        Ok(c)
    }

    /// Sends a request and returns the next text frame (this connection runs
    /// no processes, so that is the answer).
    async fn call(&mut self, msg: Message) -> Result<String> {
        self.ws.send(msg).await?;
        while let Some(m) = self.ws.next().await {
            if let Message::Text(t) = m? {
                if t.contains("\"error\"") && t.len() < 4096 {
                    bail!("server error: {t}");
                }
                return Ok(t.to_string());
            }
        }
        bail!("connection closed")
    }
}

/// Writes the fixtures: `f` for the pipeline, and the files `fs/readFile`
/// reads. The server is on this machine (loopback only) and sees `dir` at
/// the same path, so they are written directly: the reference server cannot
/// receive a 50 MB `fs/writeFile` (see [`fs_throughput`]). Returns the
/// pipeline's expected output.
pub fn write_fixtures(dir: &std::path::Path) -> Result<String> {
    let mut f = String::new();
    for i in 0..FIXTURE_LINES {
        f.push_str(&format!("line {i}{}\n", if i % 3 == 0 { " x" } else { "" }));
    }
    std::fs::write(dir.join("f"), f)?;
    for (name, size) in [("r1m.bin", 1_000_000), ("r50m.bin", 50_000_000)] {
        std::fs::write(dir.join(name), fixture_bytes(size))?;
    }
    Ok(FIXTURE_LINES.div_ceil(3).to_string())
}

pub fn fixture_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Runs `argv` sequentially on one connection for the time budget.
pub async fn sample(
    c: &Client,
    argv: &[String],
    cwd: &str,
    budget: Duration,
    max: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    // Warm-up: the first run of a tool may page in its module.
    for i in 0..3 {
        run(c, &format!("w{i}"), argv, cwd, false, true).await?;
    }
    let (mut total, mut first) = (vec![], vec![]);
    let t0 = Instant::now();
    let mut i = 0;
    while (t0.elapsed() < budget || total.len() < 10) && total.len() < max {
        let r = run(c, &format!("s{i}"), argv, cwd, false, true).await?;
        total.push(r.total);
        first.extend(r.first_byte);
        i += 1;
    }
    Ok((total, first))
}

pub async fn latency(
    t: &Target,
    table: &mut Table,
    budget: Duration,
    expect_pipeline: &str,
    extra: &[String],
) -> Result<()> {
    let c = Client::connect(&t.url).await?;
    let pipeline = bash("cat f | grep x | wc -l");
    check(&c, &t.kind.echo_argv(), &t.cwd, "hi").await?;
    check(&c, &bash("echo hi"), &t.cwd, "hi").await?;
    check(&c, &pipeline, &t.cwd, expect_pipeline).await?;
    let echo_name = "`echo hi` argv (ours `[\"echo\",\"hi\"]`, ref `[\"/bin/echo\",\"hi\"]`)";
    let mut cases = vec![
        (echo_name.to_owned(), "`echo hi` argv".to_owned(), t.kind.echo_argv()),
        ("`bash -lc 'echo hi'`".to_owned(), "`bash -lc 'echo hi'`".to_owned(), bash("echo hi")),
        ("`cat f | grep x | wc -l` (bash -lc)".to_owned(), "pipeline".to_owned(), pipeline),
    ];
    for line in extra {
        let r = run(&c, "check", &bash(line), &t.cwd, false, true).await?;
        ensure!(r.exit_code == 0, "`{line}` exited with {}", r.exit_code);
        cases.push((format!("`{line}` (bash -lc)"), format!("`{line}`"), bash(line)));
    }
    let mut ttfb = vec![];
    for (name, short, argv) in cases {
        let (total, first) = sample(&c, &argv, &t.cwd, budget, 100_000).await?;
        table.put(
            t.kind,
            &format!("1. start→closed, {name}: p50 / p90 / p99"),
            Unit::Time,
            Better::Lower,
            Figure::from_samples(total),
        );
        ttfb.push((short, first));
    }
    for (short, first) in ttfb {
        table.put(
            t.kind,
            &format!("2. start→first output byte, {short}: p50 / p90 / p99"),
            Unit::Time,
            Better::Lower,
            Figure::from_samples(first),
        );
    }
    Ok(())
}

/// Commands per second with `conns` connections each running one command
/// after another for the budget. Every command is checked: it must exit 0
/// and print `expect`.
///
/// The load comes from [`LoadConn`], not the library client: both share
/// this machine's cores with the server, and the library client's reader
/// task, channels and timers cost about half as much CPU per command as
/// the server itself, which measured the client as much as the server.
pub async fn commands_per_sec(
    t: &Target,
    conns: usize,
    argv: &[String],
    expect: &str,
    budget: Duration,
) -> Result<Rate> {
    let mut clients = vec![];
    for chunk in (0..conns).collect::<Vec<_>>().chunks(16) {
        let batch =
            futures::future::try_join_all(chunk.iter().map(|_| LoadConn::connect(&t.url))).await?;
        clients.extend(batch);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let frames = c.frames(&format!("warm-{i}"), argv, &t.cwd);
        c.run(frames, expect).await?;
        c.ws.flush().await?;
    }
    let server_cpu = || t.pid.and_then(tree_cpu_time);
    let cpu_before = (server_cpu(), cpu_time("self"));
    let start = Instant::now();
    let deadline = start + budget;
    let tasks = clients.into_iter().enumerate().map(|(i, mut c)| {
        let (argv, cwd, expect) = (argv.to_vec(), t.cwd.clone(), expect.to_owned());
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let frames = c.frames(&format!("c{i}-{n}"), &argv, &cwd);
                c.run(frames, &expect).await?;
                n += 1;
            }
            c.ws.flush().await?;
            anyhow::Ok((n, start.elapsed()))
        })
    });
    let mut total = 0;
    let mut elapsed = Duration::ZERO;
    for r in futures::future::join_all(tasks).await {
        let (n, e) = r??;
        total += n;
        elapsed = elapsed.max(e);
    }
    let per_command = |before: Option<Duration>, after: Option<Duration>| {
        Some(after?.saturating_sub(before?).as_secs_f64() / total.max(1) as f64)
    };
    Ok(Rate {
        per_sec: total as f64 / elapsed.as_secs_f64(),
        server_cpu: per_command(cpu_before.0, server_cpu()),
        client_cpu: per_command(cpu_before.1, cpu_time("self")),
    })
}

/// Commands per second, and the CPU seconds each command cost the server
/// (when this program started it) and this load generator, which share the
/// machine's cores.
pub struct Rate {
    pub per_sec: f64,
    pub server_cpu: Option<f64>,
    pub client_cpu: Option<f64>,
}

/// A load-generating connection: it owns its socket (no reader task) and
/// reads the replies into borrowed structs. It still checks what a client
/// must: the start is accepted, the output is what was expected, the exit
/// status is 0, and `process/closed` ends it.
struct LoadConn {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

/// Any frame the server sends, reduced to what the load loop checks.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow)]
    method: Option<&'a str>,
    id: Option<u64>,
    error: Option<Value>,
    #[serde(borrow)]
    params: Option<IncomingParams<'a>>,
}

#[derive(Deserialize)]
struct IncomingParams<'a> {
    #[serde(rename = "processId", borrow)]
    process_id: Option<&'a str>,
    #[serde(borrow)]
    stream: Option<&'a str>,
    #[serde(borrow)]
    chunk: Option<&'a str>,
    #[serde(rename = "exitCode")]
    exit_code: Option<i64>,
}

/// One command's frames.
struct Frames {
    id: String,
    /// The start's request id, to match its answer.
    start_id: u64,
    start: String,
    terminate: String,
}

impl LoadConn {
    async fn connect(url: &str) -> Result<Self> {
        // tungstenite zero-fills its whole read buffer (128 KiB by default)
        // before every read, also the ones that find nothing to read.
        let config = WebSocketConfig::default().read_buffer_size(8 << 10);
        Ok(Self { ws: BigConn::connect_with(url, config).await?.ws, next_id: 1 })
    }

    /// The frames that start `argv` as process `id` and release it after,
    /// with the Codex client's parameters.
    fn frames(&mut self, id: &str, argv: &[String], cwd: &str) -> Frames {
        let start_id = self.next_id;
        self.next_id += 2;
        let start = json!({"id": start_id, "method": "process/start", "params": {
            "processId": id, "argv": argv, "cwd": cwd, "env": {}, "tty": false,
            "pipeStdin": false, "arg0": null, "sandbox": null}});
        let terminate =
            json!({"id": start_id + 1, "method": "process/terminate", "params": {"processId": id}});
        Frames {
            id: id.to_owned(),
            start_id,
            start: start.to_string(),
            terminate: terminate.to_string(),
        }
    }

    /// Runs one command to `process/closed` and checks it.
    async fn run(&mut self, f: Frames, expect: &str) -> Result<()> {
        self.ws.send(Message::text(f.start)).await?;
        let mut stdout = vec![];
        let mut exit_code = None;
        let mut closed = false;
        // Until both `process/exited` and `process/closed` are in: the
        // reference sometimes sends them the other way round.
        while !(closed && exit_code.is_some()) {
            let next = tokio::time::timeout(std::time::Duration::from_secs(30), self.ws.next());
            let next = next.await.with_context(|| format!("{}: no exit status in 30 s", f.id))?;
            let Message::Text(text) = next.context("connection closed")?? else {
                continue;
            };
            let m: Incoming =
                serde_json::from_str(&text).with_context(|| format!("bad frame {text}"))?;
            if m.method.is_none() {
                // An answer: to this start, or to an earlier terminate (whose
                // outcome does not matter here).
                if let (Some(e), true) = (m.error, m.id == Some(f.start_id)) {
                    bail!("process/start {} failed: {e}", f.id);
                }
                continue;
            }
            let Some(p) = m.params.filter(|p| p.process_id == Some(f.id.as_str())) else {
                continue;
            };
            match m.method {
                Some("process/output") if p.stream == Some("stdout") => {
                    stdout.extend(wasm_exec_server::b64::decode(p.chunk.unwrap_or("").as_bytes())?);
                }
                Some("process/exited") => exit_code = p.exit_code,
                Some("process/closed") => closed = true,
                _ => {}
            }
        }
        ensure!(
            exit_code == Some(0) && stdout == expect.as_bytes(),
            "{} gave status {exit_code:?} and {:?}, expected {expect:?}",
            f.id,
            String::from_utf8_lossy(&stdout)
        );
        // The Codex client sends `process/terminate` after `closed`. Nothing
        // waits for its answer, so it is queued, not flushed: it goes out in
        // one write with the next command's start (or the final flush).
        self.ws.feed(Message::text(f.terminate)).await?;
        Ok(())
    }
}

pub async fn throughput(t: &Target, table: &mut Table, budget: Duration) -> Result<()> {
    for (label, argv) in
        [("`echo hi` argv", t.kind.echo_argv()), ("`bash -lc 'echo hi'`", bash("echo hi"))]
    {
        for conns in [1, 8, 64] {
            let rate = commands_per_sec(t, conns, &argv, "hi\n", budget).await?;
            let name = format!(
                "3. commands/s, {label}, {conns} connection{}",
                if conns == 1 { "" } else { "s" }
            );
            table.put(
                t.kind,
                &name,
                Unit::PerSec,
                Better::Higher,
                Some(Figure::Value(rate.per_sec)),
            );
            if conns == 8 {
                let cpu = |v: Option<f64>| v.map(Figure::Value);
                let name = format!("3. server CPU per command, {label}, 8 connections");
                table.put(t.kind, &name, Unit::Time, Better::Lower, cpu(rate.server_cpu));
                // Not a property of the server (it waits longer on a slower
                // one), so it is shown for ours only: what the load itself
                // took from the two cores.
                if t.kind == Kind::Ours {
                    let name =
                        format!("3. load generator's CPU per command, {label}, 8 connections");
                    table.put(t.kind, &name, Unit::Time, Better::Lower, cpu(rate.client_cpu));
                }
            }
        }
    }
    Ok(())
}

pub async fn streaming(t: &Target, table: &mut Table) -> Result<()> {
    let c = Client::connect(&t.url).await?;
    let argv = t.kind.stream_argv();
    let mut rates = vec![];
    for i in 0..3 {
        let r = run(&c, &format!("flood{i}"), &argv, &t.cwd, false, true).await?;
        ensure!(
            r.bytes == STREAM_BYTES,
            "{argv:?} streamed {} bytes, expected {STREAM_BYTES}",
            r.bytes
        );
        rates.push(r.bytes as f64 / 1e6 / r.total.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let name = "4. output streaming, 100 MiB (ours `flood 1600`, \
                ref `head -c 104857600 /dev/zero`), median of 3";
    table.put(t.kind, name, Unit::MBps, Better::Higher, Some(Figure::Value(rates[1])));
    Ok(())
}

pub async fn fs_throughput(t: &Target, table: &mut Table, budget: Duration) -> Result<()> {
    let mut c = BigConn::connect(&t.url).await?;
    for (label, size, src, dst) in [
        ("1 MB", 1_000_000usize, "r1m.bin", "w1m.bin"),
        ("50 MB", 50_000_000, "r50m.bin", "w50m.bin"),
    ] {
        let iters = if size > 10_000_000 { 3 } else { 200 };
        // fs/readFile
        let frame = Message::text(
            json!({
                "id": 3,
                "method": "fs/readFile",
                "params": {"path": t.path(src), "sandbox": null}
            })
            .to_string(),
        );
        let expected = wasm_exec_server::b64::encode(&fixture_bytes(size));
        let mut times = vec![];
        let t0 = Instant::now();
        while times.len() < iters && (t0.elapsed() < budget || times.len() < 3) {
            let s = Instant::now();
            let text = c.call(frame.clone()).await?;
            let reply: ReadReply = serde_json::from_str(&text)?;
            let took = s.elapsed();
            ensure!(reply.error.is_none(), "fs/readFile {src}: {:?}", reply.error);
            ensure!(
                reply.result.is_some_and(|r| r.data == expected),
                "fs/readFile {src} returned other bytes"
            );
            times.push(took);
        }
        table.put(
            t.kind,
            &format!("5. fs/readFile {label}"),
            Unit::MBps,
            Better::Higher,
            Some(Figure::Value(mbps(size, times))),
        );
        // fs/writeFile
        let frame = Message::text(
            json!({
                "id": 4,
                "method": "fs/writeFile",
                "params": {"path": t.path(dst), "dataBase64": expected, "sandbox": null}
            })
            .to_string(),
        );
        let mut times = vec![];
        let t0 = Instant::now();
        let mut failed = None;
        while times.len() < iters && (t0.elapsed() < budget || times.len() < 3) {
            let s = Instant::now();
            if let Err(e) = c.call(frame.clone()).await {
                // The reference's WebSocket takes at most 16 MiB per frame:
                // a 50 MB file (67 MB of base64) resets the connection.
                failed = Some(format!("fails: {e}"));
                c = BigConn::connect(&t.url).await?;
                break;
            }
            times.push(s.elapsed());
        }
        let fig = match failed {
            Some(why) => Figure::Failed(why),
            None => Figure::Value(mbps(size, times)),
        };
        table.put(
            t.kind,
            &format!("5. fs/writeFile {label}"),
            Unit::MBps,
            Better::Higher,
            Some(fig),
        );
    }
    Ok(())
}

/// MB/s at the median time.
fn mbps(size: usize, mut times: Vec<Duration>) -> f64 {
    times.sort();
    size as f64 / 1e6 / times[times.len() / 2].as_secs_f64()
}

/// Memory per idle connection and per process blocked on stdin, from the
/// server's VmRSS before and after opening `n` of each, on a fresh server.
pub async fn memory(launch: &Launch, cwd: &str, n: usize, table: &mut Table) -> Result<()> {
    let kind = launch.kind;
    // Ours keeps sessions and commands in its tenants' worker processes:
    // they count as the server. The reference's children are its commands,
    // counted in a row of their own below.
    let rss = |pid| match kind {
        Kind::Ours => our_rss_kib(pid),
        _ => vm_rss_kib(pid),
    };
    let server = launch.start(Duration::from_secs(600)).await?;
    {
        let c = Client::connect(&server.url).await?;
        run(&c, "warm", &kind.echo_argv(), cwd, false, true).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss(server.pid)?;
    let mut idle = vec![];
    for _ in 0..n.div_ceil(50) {
        let k = 50.min(n - idle.len());
        idle.extend(
            futures::future::try_join_all((0..k).map(|_| Client::connect(&server.url))).await?,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss(server.pid)?;
    let per_conn = (after as f64 - before as f64) / n as f64;
    table.put(
        kind,
        &format!("6. memory per idle connection (server VmRSS delta / {n})"),
        Unit::KiB,
        Better::Lower,
        Some(Figure::Value(per_conn)),
    );
    drop(idle);
    server.stop().await;

    // Processes blocked on stdin, spread over a few connections, on another
    // fresh server (the allocator may still return what the idle phase used).
    let server = launch.start(Duration::from_secs(600)).await?;
    {
        let c = Client::connect(&server.url).await?;
        run(&c, "warm", &kind.echo_argv(), cwd, false, true).await?;
    }
    let per = 50;
    let mut clients = vec![];
    for _ in 0..n.div_ceil(per) {
        clients.push(Client::connect(&server.url).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss(server.pid)?;
    // (Ours: its workers are already in `rss`.)
    let descendants = |pid| match kind {
        Kind::Ours => 0,
        _ => descendants_pss_kib(pid),
    };
    let children_before = descendants(server.pid);
    let argv = kind.blocked_argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let starts = clients.iter().enumerate().map(|(ci, c)| {
        let argv = argv.clone();
        async move {
            for i in 0..per.min(n - ci * per) {
                c.start(&format!("b{i}"), &argv, cwd, json!({"pipeStdin": true})).await?;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(starts).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Every one of them is still running (blocked on its stdin), or the
    // figure would count processes that failed to start.
    for (ci, c) in clients.iter().enumerate() {
        ensure_running(c, per.min(n - ci * per).saturating_sub(1)).await?;
    }
    let after = rss(server.pid)?;
    let children = descendants(server.pid).saturating_sub(children_before);
    let per_proc = (after as f64 - before as f64) / n as f64;
    let name = format!(
        "6. memory per process blocked on stdin, server VmRSS delta / {n} \
         (ours `line-echo`, ref `/bin/cat`)"
    );
    table.put(kind, &name, Unit::KiB, Better::Lower, Some(Figure::Value(per_proc)));
    let name = format!("6. memory per process blocked on stdin, incl. child processes' PSS / {n}");
    table.put(
        kind,
        &name,
        Unit::KiB,
        Better::Lower,
        Some(Figure::Value(per_proc + children as f64 / n as f64)),
    );
    drop(clients);
    server.stop().await;
    Ok(())
}

/// Fails unless blocked process `b{last}` on `c` is still running (a
/// memory figure must not count processes that failed to start).
async fn ensure_running(c: &Client, last: usize) -> Result<()> {
    let r = c
        .request(
            "process/read",
            json!({"processId": format!("b{last}"), "afterSeq": 0, "maxBytes": null, "waitMs": 0}),
        )
        .await?;
    ensure!(r["exited"] != json!(true), "blocked process b{last} has exited: {r}");
    Ok(())
}

/// How many tenants, idle connections and blocked processes the density
/// figure holds at once.
pub struct Density {
    pub tenants: usize,
    pub idle: usize,
    pub blocked: usize,
}

/// Density: many tenants' idle connections and processes blocked on stdin,
/// held at once on one server (a tenants file, one worker per tenant), with
/// the server's memory per idle connection and per blocked process, and a
/// benign client's `bash -lc 'echo hi'` p50 before and while they are held.
pub async fn density(
    program: &str,
    bundled: Option<&Path>,
    tmp: &Path,
    logs: Option<&Path>,
    d: &Density,
    table: &mut Table,
) -> Result<()> {
    let dir = tmp.join(format!("wes-bench-density-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let per_tenant_conns = d.idle.div_ceil(d.tenants) + 16;
    let per_tenant_procs = d.blocked.div_ceil(d.tenants) + 16;
    let mut config = format!(
        "[defaults]\nmax_connections = {per_tenant_conns}\nmax_processes = {per_tenant_procs}\n\
         max_instances = {}\nrequests_per_second = 100000000\n",
        per_tenant_procs.max(256)
    );
    let mut tokens = vec![];
    for t in 0..d.tenants {
        let root = dir.join(format!("t{t}"));
        std::fs::create_dir_all(&root)?;
        let token = format!("density-token-{t}");
        let token_file = dir.join(format!("t{t}.token"));
        std::fs::write(&token_file, &token)?;
        config.push_str(&format!(
            "\n[[tenant]]\nid = \"t{t}\"\ntoken_file = \"{}\"\nroot = \"{}\"\n",
            token_file.display(),
            root.display()
        ));
        tokens.push((token, crate::file_uri(&root.canonicalize()?.display().to_string())?));
    }
    let config_path = dir.join("tenants.toml");
    std::fs::write(&config_path, config)?;
    let launch = Launch::ours_tenants(program, &config_path, bundled, logs)?;
    let server = launch.start(Duration::from_secs(600)).await?;
    let connect = |i: usize| {
        let (token, _) = &tokens[i % tokens.len()];
        let url = server.url.clone();
        let token = token.clone();
        async move {
            let c = Client::connect_with(&url, Some(&token)).await?;
            c.initialize().await?;
            anyhow::Ok(c)
        }
    };
    // Every tenant's worker started and warm.
    let echo = bash("echo hi");
    let mut warm = vec![];
    for (t, (_, cwd)) in tokens.iter().enumerate() {
        let c = connect(t).await?;
        run(&c, "warm", &echo, cwd, false, true).await?;
        warm.push(c);
    }
    let benign = connect(0).await?;
    let mut unloaded = vec![];
    for _ in 0..100 {
        unloaded.push(run(&benign, "benign", &echo, &tokens[0].1, false, true).await?.total);
    }
    let unloaded_p50 = Figure::from_samples(unloaded.clone()).map_or(f64::NAN, |f| f.headline());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = our_rss_kib(server.pid)?;
    // The idle connections, 100 at a time, spread over the tenants.
    let mut idle = Vec::with_capacity(d.idle);
    while idle.len() < d.idle {
        let from = idle.len();
        let k = 100.min(d.idle - from);
        idle.extend(futures::future::try_join_all((from..from + k).map(connect)).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_idle = our_rss_kib(server.pid)?;
    // The blocked processes: `line-echo` waiting on stdin, spread evenly
    // over the tenants, at most 50 per connection.
    let mut holders = vec![]; // (tenant, client, processes)
    let mut left = d.blocked;
    for t in 0..d.tenants {
        let mut mine = (d.blocked / d.tenants + usize::from(t < d.blocked % d.tenants)).min(left);
        left -= mine;
        while mine > 0 {
            let k = mine.min(50);
            holders.push((t, connect(t).await?, k));
            mine -= k;
        }
    }
    let argv = Kind::Ours.blocked_argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let starts = holders.iter().map(|(t, c, k)| {
        let argv = argv.clone();
        let cwd = tokens[*t].1.clone();
        async move {
            for i in 0..*k {
                c.start(&format!("b{i}"), &argv, &cwd, json!({"pipeStdin": true})).await?;
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(starts).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (_, c, k) in &holders {
        ensure_running(c, k - 1).await?;
    }
    let after_blocked = our_rss_kib(server.pid)?;
    let mut loaded = vec![];
    for _ in 0..100 {
        loaded.push(run(&benign, "benign", &echo, &tokens[0].1, false, true).await?.total);
    }
    let loaded_p50 = Figure::from_samples(loaded.clone()).map_or(f64::NAN, |f| f.headline());
    let (t, i, b) = (d.tenants, d.idle, d.blocked);
    let put = |table: &mut Table, name: String, unit, value: f64| {
        table.put(Kind::Ours, &name, unit, Better::Lower, Some(Figure::Value(value)));
    };
    put(
        table,
        format!(
            "8. density: memory per idle connection ({i} over {t} tenants, server + workers VmRSS delta)"
        ),
        Unit::KiB,
        (after_idle as f64 - before as f64) / i as f64,
    );
    put(
        table,
        format!(
            "8. density: memory per blocked process ({b} over {t} tenants, while the {i} are held)"
        ),
        Unit::KiB,
        (after_blocked as f64 - after_idle as f64) / b as f64,
    );
    put(
        table,
        "8. density: server + workers VmRSS, all held".into(),
        Unit::KiB,
        after_blocked as f64,
    );
    let lat = |table: &mut Table, name: String, v: Vec<Duration>| {
        table.put(Kind::Ours, &name, Unit::Time, Better::Lower, Figure::from_samples(v));
    };
    lat(table, "8. density: benign `bash -lc 'echo hi'`, unloaded".into(), unloaded);
    lat(
        table,
        format!("8. density: benign `bash -lc 'echo hi'`, with {i} idle + {b} blocked held"),
        loaded,
    );
    put(
        table,
        format!(
            "8. density: benign p50 loaded / unloaded ({i} idle + {b} blocked over {t} tenants)"
        ),
        Unit::Ratio,
        loaded_p50 / unloaded_p50,
    );
    drop((idle, holders, warm, benign));
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Server launch → first `bash -lc 'echo hi'` closed, on fresh servers.
pub async fn cold_start(launch: &Launch, cwd: &str, runs: usize, table: &mut Table) -> Result<()> {
    // One launch first, so the module cache and the page cache are warm.
    launch.start(Duration::from_secs(900)).await?.stop().await;
    let (mut first, mut listening) = (vec![], vec![]);
    let mut compiled = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let server = launch.start(Duration::from_secs(120)).await?;
        listening.push(t0.elapsed());
        let c = Client::connect(&server.url).await?;
        let r = run(&c, "cold", &bash("echo hi"), cwd, true, true).await?;
        first.push(t0.elapsed());
        ensure!(
            r.stdout == b"hi\n",
            "cold-start command printed {:?}",
            String::from_utf8_lossy(&r.stdout)
        );
        if launch.kind == Kind::Ours {
            compiled += modules_compiled(&server.url).await?;
        }
        server.stop().await;
    }
    let kind = launch.kind;
    let list = |v: &[Duration]| {
        v.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ")
    };
    table.notes.push(format!(
        "Cold starts ({}), in order, ms: URL printed {}; first command closed {}.",
        kind.label(),
        list(&listening),
        list(&first)
    ));
    table.put(
        kind,
        "7. cold start: launch → URL printed",
        Unit::Time,
        Better::Lower,
        Figure::from_samples(listening),
    );
    table.put(
        kind,
        "7. cold start: launch → first `bash -lc 'echo hi'` closed",
        Unit::Time,
        Better::Lower,
        Figure::from_samples(first),
    );
    if kind == Kind::Ours {
        table.modules_compiled = Some(compiled);
        table.notes.push(format!(
            "Modules compiled at run time during the {runs} cold starts \
             (`module_cache{{result=\"miss\"}}`): {compiled}."
        ));
    }
    Ok(())
}
