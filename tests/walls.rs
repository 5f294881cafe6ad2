//! The two walls, attacked as the issue's attacker did: nested repositories
//! whose `.git` entries lead out of the tenant's root (to another tenant's
//! repository, or to a device), a `.git` swapped with an outward link while
//! git runs on it, and a worker killed mid-command. Each runs against the
//! real server binary, as a front process with one worker per tenant.
//!
//! `WES_TEST_HOOKS=1` (debug builds only) turns the in-process checks of
//! git off and adds the `__wes_probe` builtin: with it the second wall
//! (Landlock, seccomp) is tested alone. The same attacks with both walls
//! off must leak, which shows the attacks are real.

mod common;

use common::server_url;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasm_exec_server::client::Client;

/// What tenant `b` keeps in its root and tenant `a` must never see.
const SECRET: &str = "CANARY-SECRET-5f1c0e";
const PASSWORD: &str = "CANARY-PASSWORD-93ad7b";
const FILE: &str = "CANARY-FILE-a17e42";

struct Host {
    dir: tempfile::TempDir,
    /// The commit id of `b`'s repository (a canary too: an outward ref).
    b_commit: String,
}

impl Host {
    fn root(&self, tenant: &str) -> PathBuf {
        self.dir.path().join(tenant).join("root")
    }
    /// `b`'s repository's `.git`, the target of every outward link.
    fn out(&self) -> PathBuf {
        self.root("b").join("repo/.git")
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("host git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Two tenants, `a` and `b`. `b`'s root holds a canary file and a canary
/// repository (a committed secret, a remote URL with a password, packed
/// objects and refs); `a`'s holds a clean repository to attack from.
fn host() -> Host {
    let dir = tempfile::tempdir().expect("tempdir");
    for t in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(t).join("root")).expect("root");
    }
    let b = dir.path().join("b/root");
    std::fs::write(b.join("canary.txt"), FILE).expect("canary");
    let repo = b.join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("secret.txt"), format!("{SECRET}\n")).expect("secret");
    git(&repo, &["add", "secret.txt"]);
    git(&repo, &["commit", "-qm", SECRET]);
    git(&repo, &["remote", "add", "origin", &format!("https://user:{PASSWORD}@example.com/x")]);
    git(&repo, &["gc", "-q"]);
    let b_commit = git(&repo, &["rev-parse", "HEAD"]);
    let clean = dir.path().join("a/clean");
    std::fs::create_dir_all(&clean).expect("clean");
    git(&clean, &["init", "-q"]);
    std::fs::write(clean.join("a.txt"), "a\n").expect("a.txt");
    git(&clean, &["add", "a.txt"]);
    git(&clean, &["commit", "-qm", "a's own commit"]);
    Host { dir, b_commit }
}

/// Writes the tenants file: each tenant's id and token (roots `<id>/root`).
fn write_config(h: &Host, tenants: &[(&str, &str)]) -> PathBuf {
    use sha2::Digest;
    let digest = |t: &str| hex::encode(sha2::Sha256::digest(t.as_bytes()));
    let config = h.dir.path().join("tenants.toml");
    let mut text = String::new();
    for (id, token) in tenants {
        std::fs::create_dir_all(h.root(id)).expect("root");
        text += &format!(
            "[[tenant]]\nid = \"{id}\"\ntoken_sha256 = \"{}\"\nroot = \"{}\"\n",
            digest(token),
            h.root(id).display()
        );
    }
    std::fs::write(&config, text).expect("config");
    config
}

/// Starts the server on the two tenants (tokens `token-a`, `token-b`).
async fn serve(h: &Host, args: &[&str], envs: &[(&str, &str)]) -> (tokio::process::Child, String) {
    let mut child = command(h, args, envs)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn server");
    // A cold module cache is compiled before the server listens.
    let url = server_url(&mut child, Duration::from_secs(900)).await;
    (child, url)
}

/// [`serve`] with `--log-format json`. The task returned reads every line
/// the server and its workers log (passing each on to this test's stderr)
/// and gives them all once the last of them has closed its stderr.
async fn serve_json_logs(
    h: &Host,
) -> (tokio::process::Child, String, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::AsyncBufReadExt;
    let mut child = command(h, &["--log-format", "json"], &[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let logs = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
            all.push(line);
        }
        all
    });
    let url = server_url(&mut child, Duration::from_secs(900)).await;
    (child, url, logs)
}

/// The server's command line on the two tenants, stdout piped for its URL.
fn command(h: &Host, args: &[&str], envs: &[(&str, &str)]) -> tokio::process::Command {
    let config = write_config(h, &[("a", "token-a"), ("b", "token-b")]);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"));
    cmd.arg("serve")
        .args(args)
        .arg("--config")
        .arg(&config)
        .arg("--detach-grace")
        .arg("2s")
        .arg("--cache-dir")
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache"))
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn client(url: &str, tenant: &str) -> Client {
    client_with(url, &format!("token-{tenant}")).await
}

async fn sh(c: &Client, root: &Path, line: &str) -> (String, i32) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = format!("w-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let cwd = wasm_exec_server::fs::to_file_uri(&root.to_string_lossy());
    let f = c.run(&id, &["/bin/bash", "-lc", line], &cwd).await.expect("run");
    (format!("{}{}", f.stdout_str(), f.stderr_str()), f.exit_code)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(ok.success());
}

fn link(target: &Path, at: &Path) {
    if at.is_dir() && !at.is_symlink() {
        std::fs::remove_dir_all(at).expect("rm dir");
    } else {
        let _ = std::fs::remove_file(at);
    }
    std::os::unix::fs::symlink(target, at).expect("symlink");
}

/// One attack: how `a/root/sub/.git` (a copy of a clean repository) is
/// bent to lead out.
struct Attack {
    name: &'static str,
    bend: fn(&Host, &Path),
}

fn attacks() -> Vec<Attack> {
    vec![
        Attack { name: ".git is a link", bend: |h, git| link(&h.out(), git) },
        Attack {
            name: "HEAD, refs and objects are links",
            bend: |h, git| {
                for e in ["HEAD", "refs", "objects"] {
                    link(&h.out().join(e), &git.join(e));
                }
            },
        },
        Attack {
            name: "config is a link (remote URL with credentials)",
            bend: |h, git| link(&h.out().join("config"), &git.join("config")),
        },
        Attack {
            name: "packed-refs and objects/pack are links",
            bend: |h, git| {
                std::fs::remove_dir_all(git.join("refs/heads")).expect("rm");
                std::fs::create_dir(git.join("refs/heads")).expect("mkdir");
                link(&h.out().join("packed-refs"), &git.join("packed-refs"));
                link(&h.out().join("objects/pack"), &git.join("objects/pack"));
            },
        },
        Attack {
            name: "a nested ref is a link",
            bend: |h, git| {
                link(&h.out().join("objects/pack"), &git.join("objects/pack"));
                std::fs::write(git.join("refs/heads/main"), "").expect("ref");
                std::fs::remove_file(git.join("refs/heads/main")).expect("rm");
                let packed = std::fs::read_to_string(h.out().join("packed-refs")).expect("packed");
                let line = packed.lines().find(|l| l.contains("refs/heads/main")).expect("ref");
                let tmp = h.dir.path().join("a/ref");
                std::fs::write(&tmp, format!("{}\n", &line[..40])).expect("ref");
                link(&tmp, &git.join("refs/heads/main"));
            },
        },
        Attack {
            name: "objects/info/alternates points out",
            bend: |h, git| {
                let objects = h.out().join("objects");
                std::fs::write(
                    git.join("objects/info/alternates"),
                    format!("{}\n", objects.display()),
                )
                .expect("alternates");
                std::fs::write(git.join("refs/heads/main"), format!("{}\n", h.b_commit))
                    .expect("ref");
            },
        },
        Attack {
            name: "commondir points out",
            bend: |h, git| {
                std::fs::write(git.join("commondir"), format!("{}\n", h.out().display()))
                    .expect("c");
            },
        },
        Attack {
            name: "config.worktree is a link",
            bend: |h, git| {
                let mut config = std::fs::read_to_string(git.join("config")).expect("config");
                config += "[extensions]\n\tworktreeConfig = true\n";
                std::fs::write(git.join("config"), config).expect("config");
                link(&h.out().join("config"), &git.join("config.worktree"));
            },
        },
        Attack {
            name: "core.excludesFile and info/exclude are devices",
            bend: |_, git| {
                let mut config = std::fs::read_to_string(git.join("config")).expect("config");
                config += "[core]\n\texcludesFile = /dev/zero\n";
                std::fs::write(git.join("config"), config).expect("config");
                std::fs::create_dir_all(git.join("info")).expect("info");
                link(Path::new("/dev/zero"), &git.join("info/exclude"));
            },
        },
    ]
}

/// What `a` runs in the bent repository: everything git can print.
const SHOW: &str = "cd sub && { git log --all -p; git show HEAD; git config --list; \
                    git remote -v; git status; git diff HEAD; git branch -a; } 2>&1";

/// Runs every attack; returns, per attack, whether a canary leaked and the
/// output.
/// `devices`: also the attack that points git at `/dev/zero` (left out with
/// both walls off, where it takes all the machine's memory).
async fn run_attacks(h: &Host, url: &str, devices: bool) -> Vec<(&'static str, bool, String)> {
    let a = client(url, "a").await;
    let clean = h.dir.path().join("a/clean");
    let sub = h.root("a").join("sub");
    let mut results = Vec::new();
    for attack in attacks().into_iter().filter(|a| devices || !a.name.contains("devices")) {
        copy_dir(&clean, &sub);
        (attack.bend)(h, &sub.join(".git"));
        let started = Instant::now();
        let (out, _) = sh(&a, &h.root("a"), SHOW).await;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}: took {:?}",
            attack.name,
            started.elapsed()
        );
        let leaked = [SECRET, PASSWORD, FILE, h.b_commit.as_str()].iter().any(|c| out.contains(c));
        results.push((attack.name, leaked, out));
    }
    results
}

fn snapshot(h: &Host) -> Vec<(PathBuf, Vec<u8>)> {
    common::snapshot_outside(&h.dir.path().join("b"))
}

fn assert_nothing_leaked(results: &[(&str, bool, String)]) {
    for (name, leaked, out) in results {
        assert!(!leaked, "{name}: a canary reached tenant a:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outward_git_links_fail_with_both_walls() {
    let h = host();
    let before = snapshot(&h);
    let (_server, url) = serve(&h, &[], &[]).await;
    let results = run_attacks(&h, &url, true).await;
    assert_nothing_leaked(&results);
    assert_eq!(before, snapshot(&h), "tenant b's root changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outward_git_links_fail_with_the_second_wall_alone() {
    let h = host();
    let before = snapshot(&h);
    let (_server, url) =
        serve(&h, &["--confinement", "required"], &[("WES_TEST_HOOKS", "1")]).await;
    let results = run_attacks(&h, &url, true).await;
    assert_nothing_leaked(&results);
    // The first wall really was off: git went past the checks that refuse
    // an outward `.git` and reached the kernel's refusal.
    let (_, _, out) = &results[0];
    assert!(!out.contains("is a file or a symlink"), "the in-process check still ran: {out}");
    assert_eq!(before, snapshot(&h), "tenant b's root changed");
}

/// In one process (`--confinement off`), the in-process checks alone refuse
/// every static attack, the device included (the swap race is the second
/// wall's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outward_git_links_fail_with_the_first_wall_alone() {
    let h = host();
    let before = snapshot(&h);
    let (_server, url) = serve(&h, &["--confinement", "off"], &[]).await;
    let results = run_attacks(&h, &url, true).await;
    assert_nothing_leaked(&results);
    assert_eq!(before, snapshot(&h), "tenant b's root changed");
}

/// With both walls off the same attacks do leak: they are real attacks, and
/// the two tests above would notice a wall that stopped holding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attacks_leak_with_both_walls_off() {
    let h = host();
    let (_server, url) = serve(&h, &["--confinement", "off"], &[("WES_TEST_HOOKS", "1")]).await;
    let results = run_attacks(&h, &url, false).await;
    let leaked: Vec<&str> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
    assert!(leaked.len() >= 3, "only {leaked:?} leaked with both walls off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cannot_open_sockets_run_programs_or_read_outside_its_root() {
    let h = host();
    let (_server, url) =
        serve(&h, &["--confinement", "required"], &[("WES_TEST_HOOKS", "1")]).await;
    std::fs::write(h.root("a").join("inside.txt"), "mine").expect("inside");
    let a = client(&url, "a").await;
    let outside = h.root("b").join("canary.txt");
    let inside = h.root("a").join("inside.txt");
    let line = format!("__wes_probe {} {} /etc/hostname", outside.display(), inside.display());
    let (out, status) = sh(&a, &h.root("a"), &line).await;
    assert_eq!(status, 0, "{out}");
    for what in ["tcp-listen", "tcp-connect", "udp", "unix", "exec"] {
        let l = out.lines().find(|l| l.starts_with(&format!("{what}:"))).expect(what);
        assert!(l.contains("denied"), "{l}");
    }
    let read = |p: &Path| {
        out.lines().find(|l| l.starts_with(&format!("read {}:", p.display()))).expect("read line")
    };
    assert!(read(&outside).contains("denied"), "{out}");
    assert!(read(Path::new("/etc/hostname")).contains("denied"), "{out}");
    // The probe can tell: a file in the root is readable.
    assert!(read(&inside).ends_with("allowed"), "{out}");
}

/// `sub/.git` flips between a real directory and a link to `b`'s `.git`
/// for five seconds while `a` runs git on it again and again.
///
/// The server logs JSON here: gitoxide's status reopens the object store by
/// path and panics (`arc conversion always works`) when `.git` is missing at
/// that moment, which this race makes happen a few times a run. The panic
/// is caught (that git fails) and must reach the log as one of its JSON
/// lines, not as raw text beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_dir_swapped_with_an_outward_link_in_a_loop_leaks_nothing() {
    let h = host();
    let (mut server, url, logs) = serve_json_logs(&h).await;
    let sub = h.root("a").join("sub");
    copy_dir(&h.dir.path().join("a/clean"), &sub);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = std::thread::spawn({
        let (git, real, out, stop) =
            (sub.join(".git"), sub.join(".git-real"), h.out(), stop.clone());
        move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::rename(&git, &real);
                let _ = std::os::unix::fs::symlink(&out, &git);
                std::thread::yield_now();
                let _ = std::fs::remove_file(&git);
                let _ = std::fs::rename(&real, &git);
                swaps += 1;
            }
            swaps
        }
    });
    let a = client(&url, "a").await;
    let started = Instant::now();
    let mut runs = 0;
    while started.elapsed() < Duration::from_secs(5) || runs < 10 {
        let (out, _) = sh(&a, &h.root("a"), SHOW).await;
        for c in [SECRET, PASSWORD, h.b_commit.as_str()] {
            assert!(!out.contains(c), "run {runs}: a canary leaked:\n{out}");
        }
        runs += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper");
    assert!(swaps > 100, "only {swaps} swaps");
    // Stopped, so that its log is complete: the reader ends when the server
    // and its workers have all closed their stderr.
    let _ = server.start_kill();
    let _ = server.wait().await;
    let logs = tokio::time::timeout(Duration::from_secs(30), logs)
        .await
        .expect("the workers' stderr closed within 30 s of the server's end")
        .expect("log reader");
    assert!(!logs.is_empty(), "the server logged nothing");
    for line in logs.iter() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(v.is_object(), "a log line that is not a JSON object: {line}");
    }
    let panics = logs.iter().filter(|l| l.contains("a thread panicked")).count();
    eprintln!("{runs} runs, {swaps} swaps, {panics} panics logged as JSON");
}

/// Killing one tenant's worker mid-command ends only that tenant's sessions;
/// the other tenant's command runs on, and the killed tenant reconnects to a
/// fresh worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_ends_only_its_tenants_sessions() {
    let h = host();
    let (_server, url) = serve(&h, &[], &[("WES_TEST_HOOKS", "1")]).await;
    let a = client(&url, "a").await;
    let b = client(&url, "b").await;
    let (probe, _) = sh(&a, &h.root("a"), "__wes_probe").await;
    let pid: i32 = probe
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("pid: "))
        .expect("pid")
        .parse()
        .expect("pid");
    let (b_probe, _) = sh(&b, &h.root("b"), "__wes_probe").await;
    assert!(!b_probe.starts_with(&format!("pid: {pid}\n")), "both tenants share a worker");
    // A raw connection of a's, to see how it ends.
    let mut raw = raw_ws(&url, "a").await;
    let cwd = |t: &str| wasm_exec_server::fs::to_file_uri(&h.root(t).to_string_lossy());
    a.start("a-long", &["/bin/bash", "-lc", "sleep 30"], &cwd("a"), serde_json::json!({}))
        .await
        .expect("start a");
    b.start(
        "b-long",
        &["/bin/bash", "-lc", "sleep 2; echo b-done"],
        &cwd("b"),
        serde_json::json!({}),
    )
    .await
    .expect("start b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(killed.expect("kill").success());
    // a's connection is gone.
    let mut a_gone = false;
    for _ in 0..50 {
        if a.request("process/read", serde_json::json!({"processId": "a-long"})).await.is_err() {
            a_gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a_gone, "tenant a's connection outlived its worker");
    // Its clients are told why, in a close frame from the front.
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        use futures::StreamExt;
        while let Some(frame) = raw.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(c)) = frame {
                return c;
            }
        }
        None
    })
    .await
    .expect("the connection ended in time")
    .expect("a close frame");
    assert_eq!(u16::from(close.code), 1011);
    assert!(close.reason.contains("worker process ended unexpectedly"), "{close:?}");
    // b's command finishes as if nothing happened.
    let f = b.collect("b-long").await.expect("b's command");
    assert_eq!((f.stdout_str().as_str(), f.exit_code), ("b-done\n", 0));
    // a comes back on a fresh worker.
    let a2 = client(&url, "a").await;
    let (out, status) = sh(&a2, &h.root("a"), "echo back; __wes_probe | head -1").await;
    assert_eq!(status, 0, "{out}");
    assert!(out.starts_with("back\npid: ") && !out.contains(&format!("pid: {pid}\n")), "{out}");
    // The front counted the crash.
    let metrics = http_get(&url, "/metrics").await;
    assert!(metrics.contains("wasm_exec_server_worker_crashes_total{tenant=\"a\"} 1"), "{metrics}");
    assert!(metrics.contains("wasm_exec_server_worker_resident_bytes{tenant=\"b\"}"), "{metrics}");
}

/// The names in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    let list = std::fs::read_dir(dir).expect("read_dir");
    list.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect()
}

/// A confined worker may not remove its guests' scratch directory (their
/// `/tmp` and the skeleton above the root) from the system's temporary
/// directory, so the front does once the worker is gone: when it crashed,
/// and when the server shuts down. Nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_scratch_directory_goes_with_it() {
    let h = host();
    let tmp = h.dir.path().join("system-tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let tmp_env = tmp.to_string_lossy().into_owned();
    let (mut server, url) =
        serve(&h, &[], &[("WES_TEST_HOOKS", "1"), ("TMPDIR", tmp_env.as_str())]).await;
    let a = client(&url, "a").await;
    let b = client(&url, "b").await;
    let (probe, status) = sh(&a, &h.root("a"), "echo left > /tmp/left; __wes_probe").await;
    assert_eq!(status, 0, "{probe}");
    let pid = probe.lines().find_map(|l| l.strip_prefix("pid: ")).expect("pid").to_owned();
    assert_eq!(sh(&b, &h.root("b"), "echo b > /tmp/b").await.1, 0);
    let made = entries(&tmp);
    assert_eq!(made.len(), 2, "one scratch directory per worker: {made:?}");
    // a's worker dies: its directory goes, b's stays.
    let killed = std::process::Command::new("kill").args(["-9", &pid]).status();
    assert!(killed.expect("kill").success());
    let mut left = made.clone();
    for _ in 0..100 {
        left = entries(&tmp);
        if left.len() < 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left.len(), 1, "the crashed worker's scratch directory stayed: {left:?}");
    assert_eq!(sh(&b, &h.root("b"), "cat /tmp/b").await, ("b\n".to_owned(), 0));
    // The server shuts down: b's worker stops and its directory goes too.
    let term = std::process::Command::new("kill")
        .args(["-TERM", &server.id().expect("pid").to_string()])
        .status();
    assert!(term.expect("kill").success());
    let exit = tokio::time::timeout(Duration::from_secs(30), server.wait()).await;
    assert!(exit.expect("the server stopped in time").expect("wait").success());
    assert_eq!(entries(&tmp), Vec::<String>::new(), "scratch left after shutdown");
}

/// An initialized raw WebSocket connection of `tenant`'s.
async fn raw_ws(
    url: &str,
    tenant: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let mut req = url.into_client_request().expect("request");
    let auth = format!("Bearer token-{tenant}").parse().expect("header");
    req.headers_mut().insert("authorization", auth);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("connect");
    let init =
        serde_json::json!({"id": 1, "method": "initialize", "params": {"clientName": "raw"}});
    ws.send(Message::text(init.to_string())).await.expect("send");
    let answer = ws.next().await.expect("answer").expect("frame");
    assert!(answer.to_text().expect("text").contains("sessionId"), "{answer:?}");
    ws
}

/// A dropped connection's session is resumed through the front: it reaches
/// the same worker, where the command kept running, and no output is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_through_the_front_with_no_output_lost() {
    let h = host();
    let (_server, url) = serve(&h, &[], &[]).await;
    let cwd = wasm_exec_server::fs::to_file_uri(&h.root("a").to_string_lossy());
    let line = "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.3; done";
    let c1 = Client::connect_with(&url, Some("token-a")).await.expect("connect");
    let init = c1.initialize().await.expect("initialize");
    let id = init["sessionId"].as_str().expect("session id").to_owned();
    c1.start("p", &["/bin/bash", "-lc", line], &cwd, serde_json::json!({})).await.expect("start");
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(c1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let c2 = Client::connect_with(&url, Some("token-a")).await.expect("reconnect");
    let r = c2
        .request("initialize", serde_json::json!({"clientName": "x", "resumeSessionId": id}))
        .await
        .expect("resume");
    assert_eq!(r["sessionId"], serde_json::json!(id));
    c2.send_raw(serde_json::json!({"method": "initialized", "params": {}}).to_string())
        .await
        .expect("initialized");
    // Everything from the first byte, read back after the command ends.
    let out = common::read_back(&c2, "p").await;
    let want: String = (1..=6).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(out, want);
}

async fn http_get(url: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    out
}

/// A tenant whose worker passes `max-tenant-memory` loses that worker (its
/// sessions close), and its next connection gets a fresh one; the other
/// tenant is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_over_max_tenant_memory_is_ended() {
    let h = host();
    let (_server, url) = serve(&h, &["--max-tenant-memory", "300M"], &[]).await;
    let b = client(&url, "b").await;
    let a = client(&url, "a").await;
    // 2^28 bytes by doubling: about 400 MB at once while the last copy is
    // made (within max-memory, 1G).
    let line = "x=a; for i in $(seq 28); do x=$x$x; done; sleep 5; echo survived";
    let cwd = wasm_exec_server::fs::to_file_uri(&h.root("a").to_string_lossy());
    a.start("hog", &["/bin/bash", "-lc", line], &cwd, serde_json::json!({})).await.expect("start");
    let ended = a.collect("hog").await;
    assert!(
        ended.as_ref().map_or(true, |f| !f.stdout_str().contains("survived")),
        "the hog survived: {ended:?}"
    );
    let (out, status) = sh(&b, &h.root("b"), "echo b-fine").await;
    assert_eq!((out.as_str(), status), ("b-fine\n", 0));
    let a2 = client(&url, "a").await;
    let (out, status) = sh(&a2, &h.root("a"), "echo a-back").await;
    assert_eq!((out.as_str(), status), ("a-back\n", 0));
    let metrics = http_get(&url, "/metrics").await;
    assert!(
        metrics.contains("wasm_exec_server_worker_memory_kills_total{tenant=\"a\"} 1"),
        "{metrics}"
    );
}

/// SIGHUP reads the tenants file again: a rotated token, an added tenant
/// and a removed one take effect for new connections at once, the removed
/// tenant's sessions end, and an invalid file changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tenants() {
    let h = host();
    let (server, url) = serve(&h, &["--shutdown-grace", "1s"], &[]).await;
    let pid = server.id().expect("pid").to_string();
    let connects = |token: &'static str| {
        let url = url.clone();
        async move {
            match Client::connect_with(&url, Some(token)).await {
                Ok(c) => c.initialize().await.is_ok(),
                Err(_) => false,
            }
        }
    };
    let b = client(&url, "b").await;
    let cwd_b = wasm_exec_server::fs::to_file_uri(&h.root("b").to_string_lossy());
    b.start("b-long", &["/bin/bash", "-lc", "sleep 30"], &cwd_b, serde_json::json!({}))
        .await
        .expect("start");
    write_config(&h, &[("a", "token-a2"), ("c", "token-c")]);
    let hup = std::process::Command::new("kill").args(["-HUP", &pid]).status();
    assert!(hup.expect("kill").success());
    let mut rotated = false;
    for _ in 0..50 {
        if connects("token-a2").await {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the new token was not accepted");
    assert!(!connects("token-a").await, "the old token still works");
    assert!(connects("token-c").await, "the added tenant cannot connect");
    assert!(!connects("token-b").await, "the removed tenant can still connect");
    // The removed tenant's running command ends with its worker (within the
    // shutdown grace of 1 s), and its connection closes.
    let ended = tokio::time::timeout(Duration::from_secs(20), b.collect("b-long")).await;
    assert!(ended.is_ok(), "the removed tenant's command outlived its removal");
    // Its connection closes with a close frame that says why.
    let mut reason = None;
    for _ in 0..100 {
        reason = b.close_reason();
        if reason.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = reason.expect("a close frame");
    assert!(reason.contains("removed from the server's configuration"), "{reason}");
    // An invalid file is refused; the tenants in force stay.
    std::fs::write(h.dir.path().join("tenants.toml"), "[[tenant]]\nid = 3\n").expect("write");
    let hup = std::process::Command::new("kill").args(["-HUP", &pid]).status();
    assert!(hup.expect("kill").success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(connects("token-a2").await, "an invalid file changed the tenants");
    let a = client_with(&url, "token-a2").await;
    let (out, status) = sh(&a, &h.root("a"), "echo still-here").await;
    assert_eq!((out.as_str(), status), ("still-here\n", 0));
    // The front counted the refused tokens.
    let metrics = http_get(&url, "/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with(r#"wasm_exec_server_upgrade_refusals_total{code="401"}"#))
        .unwrap_or_else(|| panic!("no 401 count in {metrics}"));
    let n: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(n >= 2.0, "the old token and the removed tenant's: {line}");
}

async fn client_with(url: &str, token: &str) -> Client {
    let mut c = Client::connect_with(url, Some(token)).await.expect("connect");
    c.initialize().await.expect("initialize");
    c.timeout = Duration::from_secs(120);
    c
}

/// Workers are started from the running binary even after it was replaced
/// or removed on disk (an upgrade in place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_start_after_the_binary_is_removed_from_disk() {
    let h = host();
    let bin = h.dir.path().join("wes-copy");
    std::fs::copy(env!("CARGO_BIN_EXE_wasm-exec-server"), &bin).expect("copy");
    let mut child = tokio::process::Command::new(&bin)
        .args(["serve", "--workspace"])
        .arg(h.root("a"))
        .arg("--cache-dir")
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let url = server_url(&mut child, Duration::from_secs(900)).await;
    std::fs::remove_file(&bin).expect("remove the binary");
    let mut c = Client::connect(&url).await.expect("connect");
    c.timeout = Duration::from_secs(120);
    let (out, status) = sh(&c, &h.root("a"), "echo upgraded-in-place").await;
    assert_eq!((out.as_str(), status), ("upgraded-in-place\n", 0));
}
