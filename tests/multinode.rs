//! Scale-out behind a real load balancer: three server processes on one
//! machine behind HAProxy (Debian's package), which routes each tenant to a
//! node by consistent hashing on its bearer token, as the Kubernetes
//! manifests do (packaging/k8s). Thirty tenants; each one's session resumes
//! through the balancer after a dropped connection with no output lost;
//! draining one node (SIGTERM) moves only that node's tenants, which
//! reconnect to another node. Which node holds a tenant is read from each
//! node's admin API. The spread and the reconnect times are printed.
//!
//! HAProxy missing: skipped with a message, unless `WES_REQUIRE_HAPROXY` is
//! set (CI sets it, and `./dev test` installs HAProxy when it can).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasm_exec_server::client::Client;

const TENANTS: usize = 30;
const NODES: usize = 3;
const ADMIN_TOKEN: &str = "multinode-admin";
const LINE: &str = "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.2; done";

fn tenant_id(i: usize) -> String {
    format!("t{i:02}")
}

fn token(id: &str) -> String {
    format!("token-{id}")
}

struct Node {
    child: tokio::process::Child,
    port: u16,
    admin: String,
}

async fn start_node(dir: &Path) -> Node {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("tenants.toml"))
        .args(["--detach-grace", "60s", "--shutdown-grace", "1s"])
        .args(["--admin-listen", "127.0.0.1:0", "--admin-token-file"])
        .arg(dir.join("admin-token"))
        .arg("--cache-dir")
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server");
    let lines = common::server_lines(&mut child, 2, Duration::from_secs(900)).await;
    let url = &lines[0];
    let admin = lines[1].trim_start_matches("admin http://").to_owned();
    let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    Node { child, port, admin }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn haproxy_config(port: u16, nodes: &[Node], stats: &Path) -> String {
    let mut cfg = format!(
        "global\n    maxconn 4096\n    stats socket {}\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 120s\n\
         \x20   timeout server 120s\n    timeout tunnel 1h\n    retries 2\n    option redispatch 1\n\
         frontend exec\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
         backend nodes\n    balance hdr(Authorization)\n    hash-type consistent\n\
         \x20   option httpchk GET /readyz\n    http-check expect status 200\n\
         \x20   default-server check inter 500ms fall 3 rise 2\n",
        stats.display()
    );
    for (i, n) in nodes.iter().enumerate() {
        cfg += &format!("    server n{i} 127.0.0.1:{}\n", n.port);
    }
    cfg
}

async fn connect(url: &str, id: &str) -> Result<Client, String> {
    let mut c = Client::connect_with(url, Some(&token(id))).await.map_err(|e| e.to_string())?;
    c.timeout = Duration::from_secs(60);
    Ok(c)
}

/// The node (index) whose admin API lists sessions of each tenant.
async fn placement(nodes: &[Option<&Node>]) -> BTreeMap<String, BTreeSet<usize>> {
    let mut at: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        let list = admin_get(&node.admin, "/v1/tenants").await;
        for t in list["tenants"].as_array().expect("tenants") {
            if t["sessions"].as_u64().unwrap_or(0) > 0 {
                at.entry(t["id"].as_str().expect("id").to_owned()).or_default().insert(i);
            }
        }
    }
    at
}

async fn admin_get(addr: &str, path: &str) -> serde_json::Value {
    let (status, body) = common::http(addr, "GET", path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Starts the ticking command, drops the connection mid-way, resumes the
/// session through the balancer and reads everything back. Returns the
/// attached client and the reconnect time (connect + resume).
async fn resume_one(url: &str, id: &str, cwd: &str) -> (Client, Duration) {
    let c1 = connect(url, id).await.expect("connect");
    let init = c1.initialize().await.expect("initialize");
    let sid = init["sessionId"].as_str().expect("session id").to_owned();
    c1.start("p", &["/bin/bash", "-lc", LINE], cwd, serde_json::json!({})).await.expect("start");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(c1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let c2 = connect(url, id).await.expect("reconnect");
    let r = c2
        .request("initialize", serde_json::json!({"clientName": "x", "resumeSessionId": sid}))
        .await
        .expect("resume");
    assert_eq!(r["sessionId"], serde_json::json!(sid), "{id}: resumed another session");
    c2.send_raw(serde_json::json!({"method": "initialized", "params": {}}).to_string())
        .await
        .expect("initialized");
    let reconnect = started.elapsed();
    let out = common::read_back(&c2, "p").await;
    let want: String = (1..=6).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(out, want, "{id}: output lost across the resume");
    // The live notifications the resumed connection also got, up to the
    // process's close, are not wanted here.
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(1500), c2.next_notification()).await
    {
        if n["method"] == "process/closed" {
            break;
        }
    }
    (c2, reconnect)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_spread_resume_and_move_behind_haproxy() {
    let Ok(haproxy) = which("haproxy") else {
        assert!(
            std::env::var_os("WES_REQUIRE_HAPROXY").is_none(),
            "haproxy is not installed (apt-get install haproxy)"
        );
        eprintln!("SKIPPED: haproxy is not installed (apt-get install haproxy; ./dev test does)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = String::new();
    for i in 0..TENANTS {
        let id = tenant_id(i);
        let root = dir.path().join(&id);
        std::fs::create_dir_all(&root).expect("root");
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(token(&id).as_bytes()));
        config += &format!(
            "[[tenant]]\nid = \"{id}\"\ntoken_sha256 = \"{digest}\"\nroot = \"{}\"\n",
            root.display()
        );
    }
    std::fs::write(dir.path().join("tenants.toml"), config).expect("config");
    std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).expect("admin token");
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(start_node(dir.path()).await);
    }
    let port = free_port();
    let cfg = dir.path().join("haproxy.cfg");
    let stats = dir.path().join("haproxy.sock");
    std::fs::write(&cfg, haproxy_config(port, &nodes, &stats)).expect("haproxy.cfg");
    let check = std::process::Command::new(&haproxy).arg("-c").arg("-f").arg(&cfg).output();
    let check = check.expect("haproxy -c");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let _lb = tokio::process::Command::new(&haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start haproxy");
    let url = format!("ws://127.0.0.1:{port}");
    // Up once HAProxy has every node UP (two health checks each): a node
    // that came up later would take over tenants already placed.
    let up = async {
        loop {
            if servers_up(&stats) == NODES {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), up).await.expect("every node UP in HAProxy");

    // Every tenant: a command, a dropped connection, a resume with nothing lost.
    let ids: Vec<String> = (0..TENANTS).map(tenant_id).collect();
    let cwd = |id: &str| wasm_exec_server::fs::to_file_uri(&dir.path().join(id).to_string_lossy());
    let resumed = futures::future::join_all(ids.iter().map(|id| {
        let (url, cwd) = (url.clone(), cwd(id));
        async move { resume_one(&url, id, &cwd).await }
    }))
    .await;
    let mut times: Vec<Duration> = resumed.iter().map(|(_, t)| *t).collect();
    times.sort();
    let mut clients: BTreeMap<String, Client> =
        ids.iter().cloned().zip(resumed.into_iter().map(|(c, _)| c)).collect();

    // Each tenant on exactly one node; every node has some.
    let before = placement(&nodes.iter().map(Some).collect::<Vec<_>>()).await;
    assert_eq!(before.len(), TENANTS, "{before:?}");
    let mut spread = [0usize; NODES];
    for (id, at) in &before {
        assert_eq!(at.len(), 1, "{id} has sessions on several nodes: {at:?}");
        spread[*at.iter().next().expect("a node")] += 1;
    }
    println!(
        "multinode: {TENANTS} tenants over {NODES} nodes: {spread:?}; resume through HAProxy \
         (connect + initialize) p50 {:?}, max {:?}",
        percentile(&times, 0.5),
        percentile(&times, 1.0)
    );
    assert!(spread.iter().all(|&n| n > 0), "a node got no tenant: {spread:?}");

    // Drain node 0 (SIGTERM): its tenants reconnect, through the balancer,
    // to another node; the others stay where they are, undisturbed.
    let drained: Vec<String> =
        before.iter().filter(|(_, at)| at.contains(&0)).map(|(id, _)| id.clone()).collect();
    let pid = nodes[0].child.id().expect("pid").to_string();
    let sigterm = Instant::now();
    let term = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(term.expect("kill").success());
    let moved = futures::future::join_all(drained.iter().map(|id| {
        let (url, cwd) = (url.clone(), cwd(id));
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                assert!(Instant::now() < deadline, "{id} did not reconnect within 30 s");
                if let Ok(c) = connect(&url, id).await {
                    if c.initialize().await.is_ok() {
                        let argv = ["/bin/bash", "-lc", "echo moved"];
                        if let Ok(f) = c.run("m", &argv, &cwd).await {
                            assert_eq!(f.stdout_str(), "moved\n");
                            return (sigterm.elapsed(), c);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }))
    .await;
    let mut moved_times: Vec<Duration> = moved.iter().map(|(t, _)| *t).collect();
    moved_times.sort();
    // The others: their connections still work, and a new connection of
    // theirs goes to the same node.
    for (id, at) in before.iter().filter(|(_, at)| !at.contains(&0)) {
        let c = clients.get_mut(id).expect("client");
        let f = c.run("s", &["/bin/bash", "-lc", "echo stayed"], &cwd(id)).await;
        assert_eq!(f.expect("still connected").stdout_str(), "stayed\n", "{id} on {at:?}");
        let fresh = connect(&url, id).await.expect("connect");
        fresh.initialize().await.expect("initialize");
        let f = fresh.run("n", &["/bin/bash", "-lc", "echo fresh"], &cwd(id)).await;
        assert_eq!(f.expect("run").stdout_str(), "fresh\n");
        clients.insert(format!("{id}-fresh"), fresh);
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), nodes[0].child.wait()).await;
    let live: Vec<Option<&Node>> =
        nodes.iter().enumerate().map(|(i, n)| (i != 0).then_some(n)).collect();
    let after = placement(&live).await;
    for (id, at) in &before {
        let now = after.get(id).unwrap_or_else(|| panic!("{id} is on no node after the drain"));
        if at.contains(&0) {
            assert_eq!(now.len(), 1, "{id} moved to several nodes: {now:?}");
        } else {
            assert_eq!(now, at, "{id} moved although its node stayed");
        }
    }
    println!(
        "multinode: drained node 0 ({} tenants): each back on another node, from SIGTERM to \
         its first command there: p50 {:?}, max {:?}; the other {} tenants did not move",
        drained.len(),
        percentile(&moved_times, 0.5),
        percentile(&moved_times, 1.0),
        TENANTS - drained.len()
    );
    drop(moved);
}

/// How many servers HAProxy's stats socket reports UP.
fn servers_up(socket: &Path) -> usize {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else { return 0 };
    let mut csv = String::new();
    if s.write_all(b"show stat\n").is_err() || s.read_to_string(&mut csv).is_err() {
        return 0;
    }
    // pxname,svname,…,status (the 18th field),…
    csv.lines()
        .filter(|l| l.starts_with("nodes,n"))
        .filter(|l| l.split(',').nth(17) == Some("UP"))
        .count()
}

fn which(name: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(())
}
