//! The front process: what faces the network when tenants run in workers.
//!
//! It accepts, reads each request's head with `MSG_PEEK` (so nothing is
//! consumed), and decides: a WebSocket upgrade to `/` with a valid token and
//! no `Origin` is handed, as its descriptor, to its tenant's worker, which
//! serves it from its first byte; everything else (`/readyz`, `/metrics`,
//! refusals) is served here. The front holds no tenant state beyond tokens'
//! digests and its workers, and runs no command.

use super::control::{self, Channel, FromWorker, ToWorker};
use super::{WorkerSpec, confine};
use crate::tenant::Gate;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The longest request head the front reads before deciding.
const MAX_HEAD: usize = 16 * 1024;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a new worker may take to load its modules and confine itself
/// (a cold module cache is compiled by the front before any worker starts).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How often workers' memory and CPU are read.
const MONITOR_EVERY: Duration = Duration::from_millis(250);

/// The tenants: who may connect and what each tenant's worker gets. A
/// SIGHUP replaces them (`--config` read again).
pub struct Tenants {
    /// Who may connect: tokens' digests to tenant ids.
    pub gate: Gate<String>,
    /// Each tenant's worker spec, by id.
    pub specs: HashMap<String, WorkerSpec>,
}

/// Everything the front is configured with.
pub struct FrontConfig {
    pub tenants: Tenants,
    /// `--log-format`, passed on to workers.
    pub log_format: String,
    /// On shutdown, how long workers' commands may take to finish.
    pub drain: Duration,
    /// The admin API's listener and who may use it (`--admin-listen`).
    pub admin: Option<(TcpListener, Gate<()>)>,
    /// `/metrics` on its own listener instead of the main one
    /// (`--metrics-listen`).
    pub metrics: Option<TcpListener>,
}

/// A running worker.
struct Worker {
    tenant: String,
    pid: u32,
    channel: Channel,
    /// Connections handed over so far.
    sent: AtomicU64,
    /// Told to stop (retired when idle, or shutdown): its exit is expected.
    stopping: AtomicBool,
    /// One metrics request at a time; its answer comes back here.
    metrics: tokio::sync::Mutex<()>,
    metrics_reply: Mutex<Option<oneshot::Sender<String>>>,
    /// Last read resident bytes and CPU seconds.
    usage: Mutex<(u64, f64)>,
    /// A copy of each handed connection's descriptor, until the worker says
    /// it ended: if the worker dies, its clients get a close frame saying so.
    conns: Mutex<HashMap<u64, std::os::fd::OwnedFd>>,
    /// Set when the front ends the worker for a limit: what its clients
    /// are told.
    killed_for: Mutex<Option<&'static str>>,
    /// Admin questions waiting for the worker's answer, by id.
    admin: Mutex<HashMap<u64, oneshot::Sender<String>>>,
    admin_seq: AtomicU64,
    /// The guests' scratch directory (their `/tmp` and the skeleton above
    /// the root), which the front removes once the worker has exited.
    scratch: PathBuf,
}

/// What the clients of a worker ended for `max-tenant-memory` are told.
const MEMORY_REASON: &str =
    "the tenant's worker passed max-tenant-memory and was ended; reconnect to go on";

/// What a crashed worker's clients are told: a WebSocket close frame (1011,
/// internal error) with the reason.
const CRASH_REASON: &str = "the tenant's worker process ended unexpectedly; reconnect to go on";

impl Worker {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, std::os::fd::OwnedFd>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends every connection still open a close frame with `reason`,
    /// and ends it. (A frame the worker left half-written ends up before
    /// it; the client then sees a protocol error instead, and still the
    /// end of the connection.)
    fn close_all(&self, reason: &str) {
        use std::io::Write;
        // A close frame's reason is at most 123 bytes.
        let reason = &reason.as_bytes()[..reason.len().min(123)];
        let mut frame = vec![0x88, (2 + reason.len()) as u8];
        frame.extend_from_slice(&1011u16.to_be_bytes());
        frame.extend_from_slice(reason);
        for (_, fd) in self.conns().drain() {
            let tcp = std::net::TcpStream::from(fd);
            let _ = (&tcp).write_all(&frame);
            let _ = tcp.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Per-tenant counters kept by the front.
#[derive(Default, Clone)]
struct TenantStats {
    starts: u64,
    crashes: u64,
    memory_kills: u64,
    /// CPU seconds of this tenant's workers that have exited.
    cpu_done: f64,
}

/// A tenant's worker slot; its lock orders hand-overs against retirement, so
/// no connection is sent to a worker being retired.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Worker>>>>;

pub(super) struct Front {
    config: FrontConfig,
    /// The tenants in force (replaced on reload).
    tenants: std::sync::RwLock<Arc<Tenants>>,
    exe: PathBuf,
    slots: Mutex<HashMap<String, Slot>>,
    stats: Mutex<BTreeMap<String, TenantStats>>,
    supervisors: tokio_util::task::TaskTracker,
    stopping: AtomicBool,
    /// Upgrades the front refused, by HTTP status.
    refusals: Mutex<BTreeMap<u16, u64>>,
    /// Tenants an operator drained (admin API): their connections are
    /// refused with 503 until undrained.
    drained: Mutex<std::collections::BTreeSet<String>>,
}

/// Serves until `shutdown` completes; then tells every worker to drain,
/// waits for them, and returns.
pub async fn run(
    listener: TcpListener,
    mut config: FrontConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    mut reloads: tokio::sync::mpsc::Receiver<Tenants>,
) -> anyhow::Result<()> {
    // Workers are this very binary: on Linux `/proc/self/exe`, which names
    // the running file even after an upgrade replaced it on disk (its path
    // would then name the new version, or nothing).
    let exe = if cfg!(target_os = "linux") && std::path::Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find this program to start workers: {e}"))?
    };
    let tenants = std::mem::replace(
        &mut config.tenants,
        Tenants { gate: Gate::Tokens(Vec::new()), specs: HashMap::new() },
    );
    let stats = tenants.specs.keys().map(|id| (id.clone(), TenantStats::default())).collect();
    let admin = config.admin.take();
    let metrics_listener = config.metrics.take();
    let drain = config.drain;
    let front = Arc::new(Front {
        config,
        tenants: std::sync::RwLock::new(Arc::new(tenants)),
        exe,
        slots: Mutex::new(HashMap::new()),
        stats: Mutex::new(stats),
        supervisors: Default::default(),
        stopping: AtomicBool::new(false),
        refusals: Mutex::new(BTreeMap::new()),
        drained: Mutex::new(Default::default()),
    });
    let admin = admin
        .map(|(listener, gate)| tokio::spawn(super::admin::serve(listener, gate, front.clone())));
    tokio::spawn(monitor(front.clone()));
    let (local_tx, local_rx) = tokio::sync::mpsc::channel(256);
    let mut app =
        Router::new().route("/", get(refuse)).route("/readyz", get(|| async { StatusCode::OK }));
    let metrics_server = match metrics_listener {
        // Only there: the main listener answers 404 for /metrics.
        Some(listener) => {
            let own = Router::new()
                .route("/metrics", get(metrics))
                .route("/readyz", get(|| async { StatusCode::OK }))
                .with_state(front.clone());
            Some(tokio::spawn(axum::serve(listener, own).into_future()))
        }
        None => {
            app = app.route("/metrics", get(metrics));
            None
        }
    };
    let app = app.with_state(front.clone());
    let local = tokio::spawn(
        axum::serve(
            crate::server::HandedListener { rx: local_rx },
            app.into_make_service_with_connect_info::<crate::server::PeerAddr>(),
        )
        .into_future(),
    );
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            Some(tenants) = reloads.recv() => {
                front.reload(tenants).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (front, local_tx) = (front.clone(), local_tx.clone());
        tokio::spawn(async move {
            match route(&front, &tcp).await {
                Some(tenant) => front.hand_over(&tenant, tcp).await,
                None => {
                    let _ = local_tx.send(tcp).await;
                }
            }
        });
    }
    // Closed now, not when the drain ends: a load balancer's health check
    // and new connections are refused at once, and go to another node.
    drop(listener);
    tracing::info!(
        drain_secs = drain.as_secs(),
        "shutting down: no longer accepting connections; workers drain"
    );
    front.stopping.store(true, Ordering::Release);
    for slot in front.all_slots() {
        stop_worker(&slot, crate::server::SHUTTING_DOWN).await;
    }
    front.supervisors.close();
    let wait = drain + Duration::from_secs(10);
    if tokio::time::timeout(wait, front.supervisors.wait()).await.is_err() {
        tracing::warn!("some workers did not stop in time; they are killed");
    }
    local.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    if let Some(m) = metrics_server {
        m.abort();
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Peeks at the request head: the tenant to hand it to, or `None` to serve
/// it here.
async fn route(front: &Front, tcp: &TcpStream) -> Option<String> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, peek_head(tcp)).await.ok()??;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let path = req.path?.split('?').next()?;
    if req.method != Some("GET") || path != "/" {
        return None;
    }
    let get = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
    let upgrade = get("upgrade").is_some_and(|h| h.value.eq_ignore_ascii_case(b"websocket"));
    if !upgrade || get("origin").is_some() {
        return None;
    }
    front.tenants().gate.authorize(get("authorization").map(|h| h.value)).ok()
}

/// The request head (up to its blank line), without consuming it.
async fn peek_head(tcp: &TcpStream) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut seen = 0;
    loop {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end + 4);
            return Some(buf);
        }
        if n == MAX_HEAD {
            return None;
        }
        // `peek` returns at once while data waits: wait for more.
        if n == seen {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen = n;
    }
}

impl Front {
    /// Hands `tcp` to `tenant`'s worker, starting one if there is none.
    async fn hand_over(self: &Arc<Self>, tenant: &str, mut tcp: TcpStream) {
        if self.is_drained(tenant) {
            if let Ok(mut r) = self.refusals.lock() {
                *r.entry(503).or_default() += 1;
            }
            let msg = "the tenant is drained by the server's operator; try again later";
            return unavailable(&mut tcp, msg).await;
        }
        let slot = self.slot(tenant);
        let mut slot = slot.lock().await;
        for attempt in 0..2 {
            let worker = match slot.as_ref() {
                Some(w) => w.clone(),
                None if self.stopping.load(Ordering::Acquire) => break,
                None => match self.start(tenant).await {
                    Ok(w) => {
                        *slot = Some(w.clone());
                        w
                    }
                    Err(e) => {
                        tracing::error!(tenant, error = %format!("{e:#}"), "cannot start a worker");
                        let msg = format!("the tenant's worker could not start: {e:#}");
                        return unavailable(&mut tcp, &msg).await;
                    }
                },
            };
            let seq = worker.sent.fetch_add(1, Ordering::AcqRel) + 1;
            // Kept before sending: the worker may report it closed at once.
            if let Ok(copy) = tcp.as_fd().try_clone_to_owned() {
                worker.conns().insert(seq, copy);
            }
            let sent = worker.channel.send(&ToWorker::Connection { seq }, Some(tcp.as_fd())).await;
            match sent {
                Ok(()) => return,
                // The worker died since: start another, once.
                Err(e) => {
                    worker.conns().remove(&seq);
                    tracing::warn!(tenant, attempt, error = %e, "worker unreachable");
                    *slot = None;
                }
            }
        }
        unavailable(&mut tcp, "the server is shutting down or the tenant's worker failed").await;
    }

    /// Starts `tenant`'s worker and waits until it is confined and ready.
    async fn start(self: &Arc<Self>, tenant: &str) -> anyhow::Result<Arc<Worker>> {
        use anyhow::Context;
        let mut spec = self.tenants().specs.get(tenant).context("unknown tenant")?.clone();
        // The front names the worker's scratch directory: a confined worker
        // empties its own when it stops but may not remove it from its
        // parent, so the front does, once the worker is gone.
        let workspace = &mut spec.tenant.workspace;
        let parent = workspace.scratch_parent.clone().unwrap_or_else(std::env::temp_dir);
        let scratch = crate::fs::fresh_scratch_dir(&parent);
        workspace.scratch_dir = Some(scratch.clone());
        let (ours, theirs) = control::pair().context("cannot make a control socket")?;
        let started = std::time::Instant::now();
        let mut cmd = tokio::process::Command::new(&self.exe);
        #[cfg(unix)]
        cmd.arg0("wasm-exec-server");
        cmd.arg("--log-format")
            .arg(&self.config.log_format)
            .arg("worker")
            // A fresh, minimal environment: the spec carries the settings.
            .env_clear()
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        for var in ["RUST_LOG", "RUST_BACKTRACE", "NO_COLOR"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let mut child = cmd.spawn().context("cannot start the worker process")?;
        let pid = child.id().unwrap_or_default();
        let channel = Channel::new(ours).context("control socket")?;
        let confinement = match handshake(&channel, &mut child, spec).await {
            Ok(confinement) => confinement,
            Err(e) => {
                let _ = child.kill().await;
                remove_scratch(scratch).await;
                return Err(e);
            }
        };
        tracing::info!(
            tenant,
            pid,
            start_ms = started.elapsed().as_millis() as u64,
            %confinement,
            "worker started"
        );
        let worker = Arc::new(Worker {
            tenant: tenant.to_owned(),
            pid,
            channel,
            sent: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            metrics: Default::default(),
            metrics_reply: Mutex::new(None),
            usage: Mutex::new((0, 0.0)),
            conns: Mutex::new(HashMap::new()),
            killed_for: Mutex::new(None),
            admin: Mutex::new(HashMap::new()),
            admin_seq: AtomicU64::new(0),
            scratch,
        });
        self.stat(tenant, |s| s.starts += 1);
        self.supervisors.spawn(self.clone().supervise(worker.clone(), child));
        Ok(worker)
    }

    fn stat(&self, tenant: &str, f: impl FnOnce(&mut TenantStats)) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(stats.entry(tenant.to_owned()).or_default());
    }

    /// Reads the worker's messages until it exits; then clears its slot.
    async fn supervise(self: Arc<Self>, worker: Arc<Worker>, mut child: tokio::process::Child) {
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                msg = worker.channel.recv::<FromWorker>() => match msg {
                    Ok(Some((FromWorker::Metrics(text), _))) => {
                        let waiter = worker.metrics_reply.lock().ok().and_then(|mut w| w.take());
                        if let Some(tx) = waiter {
                            let _ = tx.send(text);
                        }
                    }
                    Ok(Some((FromWorker::Idle { received }, _))) => self.retire(&worker, received).await,
                    Ok(Some((FromWorker::Closed { seq }, _))) => {
                        worker.conns().remove(&seq);
                    }
                    Ok(Some((FromWorker::Admin { id, reply }, _))) => {
                        let waiter = worker.admin.lock().ok().and_then(|mut w| w.remove(&id));
                        if let Some(tx) = waiter {
                            let _ = tx.send(reply);
                        }
                    }
                    Ok(Some((FromWorker::Ready { .. }, _))) => {}
                    // The worker closed its end: it is exiting.
                    Ok(None) | Err(_) => break child.wait().await,
                },
            }
        };
        let tenant = worker.tenant.as_str();
        self.clear_slot(&worker).await;
        remove_scratch(worker.scratch.clone()).await;
        let cpu = worker.usage.lock().map(|u| u.1).unwrap_or_default();
        self.stat(tenant, |s| s.cpu_done += cpu);
        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let killed_for = *worker.killed_for.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = killed_for {
            worker.close_all(reason);
            tracing::info!(tenant, pid = worker.pid, %status, reason, "worker ended");
        } else if worker.stopping.load(Ordering::Acquire) {
            worker.conns().clear();
            tracing::info!(tenant, pid = worker.pid, %status, "worker stopped");
        } else {
            worker.close_all(CRASH_REASON);
            self.stat(tenant, |s| s.crashes += 1);
            tracing::error!(
                tenant,
                pid = worker.pid,
                %status,
                "worker ended unexpectedly: the tenant's sessions are closed; \
                 its next connection starts a new worker"
            );
        }
    }

    /// Takes `worker` out of its tenant's slot, if it is still there.
    async fn clear_slot(&self, worker: &Arc<Worker>) {
        let slot = self.slot(&worker.tenant);
        let mut slot = slot.lock().await;
        if slot.as_ref().is_some_and(|w| Arc::ptr_eq(w, worker)) {
            *slot = None;
        }
    }

    /// The tenants in force.
    fn tenants(&self) -> Arc<Tenants> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `tenant`'s worker slot (made on first use).
    fn slot(&self, tenant: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(tenant.to_owned()).or_default().clone()
    }

    fn all_slots(&self) -> Vec<Slot> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Puts new tenants in force (SIGHUP). New connections are authorized
    /// against the new tokens at once; a removed tenant's worker is told to
    /// drain and stop (its commands get the shutdown grace, then its
    /// connections close); a tenant whose root or limits changed gets them
    /// with its next worker.
    async fn reload(&self, new: Tenants) {
        let old = self.tenants();
        let added: Vec<&String> =
            new.specs.keys().filter(|k| !old.specs.contains_key(*k)).collect();
        let removed: Vec<String> =
            old.specs.keys().filter(|k| !new.specs.contains_key(*k)).cloned().collect();
        tracing::info!(
            tenants = new.specs.len(),
            added = ?added,
            removed = ?removed,
            "tenants reloaded"
        );
        *self.tenants.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        for id in removed {
            let reason = "the tenant was removed from the server's configuration";
            if stop_worker(&self.slot(&id), reason).await {
                tracing::info!(tenant = %id, "tenant removed: its worker drains and stops");
            }
        }
    }

    pub(super) fn is_drained(&self, tenant: &str) -> bool {
        self.drained.lock().map(|d| d.contains(tenant)).unwrap_or(false)
    }

    /// The tenant ids in force.
    pub(super) fn tenant_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.tenants().specs.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// What the admin API shows of `tenant` without asking its worker.
    pub(super) async fn tenant_summary(&self, tenant: &str) -> serde_json::Value {
        let worker = self.slot(tenant).lock().await.clone();
        let stats = self
            .stats
            .lock()
            .map(|s| s.get(tenant).cloned().unwrap_or_default())
            .unwrap_or_default();
        let worker = worker.map(|w| {
            let (rss, cpu) = w.usage.lock().map(|u| *u).unwrap_or_default();
            serde_json::json!({
                "pid": w.pid,
                "resident_bytes": rss,
                "cpu_seconds": cpu,
                "connections": w.conns().len(),
            })
        });
        serde_json::json!({
            "id": tenant,
            "drained": self.is_drained(tenant),
            "worker": worker,
            "worker_starts": stats.starts,
            "worker_crashes": stats.crashes,
            "memory_kills": stats.memory_kills,
        })
    }

    /// Asks `tenant`'s worker an admin question; `None` when the tenant has
    /// no worker (so no sessions) or it does not answer in time.
    pub(super) async fn ask(
        &self,
        tenant: &str,
        request: super::admin::AdminRequest,
    ) -> Option<serde_json::Value> {
        let worker = self.slot(tenant).lock().await.clone()?;
        let id = worker.admin_seq.fetch_add(1, Ordering::AcqRel);
        let (tx, rx) = oneshot::channel();
        worker.admin.lock().ok()?.insert(id, tx);
        let sent = worker.channel.send(&ToWorker::Admin { id, request }, None).await;
        let reply = match sent {
            Ok(()) => tokio::time::timeout(Duration::from_secs(5), rx).await.ok()?.ok(),
            Err(_) => None,
        };
        if let Ok(mut waiting) = worker.admin.lock() {
            waiting.remove(&id);
        }
        serde_json::from_str(&reply?).ok()
    }

    /// Refuses `tenant`'s new connections and drains its worker: running
    /// commands get the shutdown grace, then its connections close.
    pub(super) async fn drain_tenant(&self, tenant: &str) {
        if let Ok(mut d) = self.drained.lock() {
            d.insert(tenant.to_owned());
        }
        stop_worker(&self.slot(tenant), "the tenant was drained by the server's operator").await;
        tracing::info!(tenant, "tenant drained by the operator");
    }

    pub(super) fn undrain_tenant(&self, tenant: &str) -> bool {
        let was = self.drained.lock().map(|mut d| d.remove(tenant)).unwrap_or(false);
        tracing::info!(tenant, "tenant accepted again by the operator");
        was
    }

    /// Retires an idle worker, unless a connection went to it since it
    /// said so.
    async fn retire(&self, worker: &Arc<Worker>, received: u64) {
        let slot = self.slot(&worker.tenant);
        let mut slot = slot.lock().await;
        if !slot.as_ref().is_some_and(|w| Arc::ptr_eq(w, worker)) {
            return;
        }
        if worker.sent.load(Ordering::Acquire) != received {
            return;
        }
        *slot = None;
        tracing::debug!(tenant = %worker.tenant, "retiring an idle worker");
        tell_to_stop(worker, "idle").await;
    }

    /// The workers running now.
    async fn workers(&self) -> Vec<Arc<Worker>> {
        let mut all = Vec::new();
        for slot in self.all_slots() {
            if let Some(w) = slot.lock().await.as_ref() {
                all.push(w.clone());
            }
        }
        all
    }
}

/// Takes the worker out of `slot`, if there is one, and tells it to drain
/// and stop with `reason` for its clients' close frames; whether there was.
async fn stop_worker(slot: &Slot, reason: &str) -> bool {
    let Some(w) = slot.lock().await.take() else { return false };
    tell_to_stop(&w, reason).await;
    true
}

/// Marks `worker`'s exit as expected and tells it to drain and stop.
async fn tell_to_stop(worker: &Worker, reason: &str) {
    worker.stopping.store(true, Ordering::Release);
    let reason = reason.to_owned();
    let _ = worker.channel.send(&ToWorker::Shutdown { reason }, None).await;
}

/// A worker's metrics text, or nothing if it does not answer in time.
async fn worker_metrics(worker: &Worker) -> Option<String> {
    let _one = worker.metrics.lock().await;
    let (tx, rx) = oneshot::channel();
    *worker.metrics_reply.lock().ok()? = Some(tx);
    worker.channel.send(&ToWorker::Metrics, None).await.ok()?;
    tokio::time::timeout(Duration::from_secs(2), rx).await.ok()?.ok()
}

/// Reads every worker's memory and CPU; ends a worker over its tenant's
/// `max-tenant-memory`.
async fn monitor(front: Arc<Front>) {
    let mut tick = tokio::time::interval(MONITOR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for w in front.workers().await {
            let Some((rss, cpu)) = usage(w.pid) else { continue };
            if let Ok(mut u) = w.usage.lock() {
                *u = (rss, cpu);
            }
            let max = front
                .tenants()
                .specs
                .get(&w.tenant)
                .map_or(0, |s| s.tenant.limits.max_tenant_memory);
            if max > 0 && rss > max && !w.stopping.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    tenant = %w.tenant,
                    pid = w.pid,
                    resident_mib = rss >> 20,
                    max_mib = max >> 20,
                    "the tenant's worker is over max-tenant-memory: it is ended"
                );
                front.stat(&w.tenant, |s| s.memory_kills += 1);
                *w.killed_for.lock().unwrap_or_else(|p| p.into_inner()) = Some(MEMORY_REASON);
                // Out of its slot first: the next connection starts a fresh
                // worker instead of going to this one as it dies.
                front.clear_slot(&w).await;
                kill(w.pid);
            }
        }
    }
}

fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Resident bytes and CPU seconds of a process, from `/proc/PID/stat`.
fn usage(pid: u32) -> Option<(u64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, rss 24 (1-based; the
    // rest starts at field 3).
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks;
    let rss = f.get(21)?.parse::<u64>().ok()? * rustix::param::page_size() as u64;
    Some((rss, cpu))
}

/// Answers with 503 and closes.
async fn unavailable(tcp: &mut TcpStream, msg: &str) {
    let body = format!("{msg}\n");
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let _ = tcp.write_all(body.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// `/` when it was not handed over: the refusal the worker would give.
async fn refuse(
    State(front): State<Arc<Front>>,
    ConnectInfo(crate::server::PeerAddr(peer)): ConnectInfo<crate::server::PeerAddr>,
    headers: HeaderMap,
) -> Response {
    let response = refusal(&front, &headers, peer);
    if let Ok(mut r) = front.refusals.lock() {
        *r.entry(response.status().as_u16()).or_default() += 1;
    }
    response
}

fn refusal(front: &Front, headers: &HeaderMap, peer: std::net::SocketAddr) -> Response {
    if let Err((code, body)) = crate::server::admit(&front.tenants().gate, headers, peer) {
        return crate::server::text(code, body);
    }
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade {
        return crate::server::not_websocket();
    }
    crate::server::text(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        format!("the request head is over {MAX_HEAD} bytes"),
    )
}

/// `/metrics`: the front's own families (each worker's memory and CPU,
/// starts, crashes) and every worker's, merged into one exposition.
async fn metrics(State(front): State<Arc<Front>>) -> Response {
    let workers = front.workers().await;
    let texts = futures::future::join_all(workers.iter().map(|w| worker_metrics(w))).await;
    let mut own = String::new();
    let stats = front.stats.lock().map(|s| s.clone()).unwrap_or_default();
    let live: HashMap<&str, (u64, f64)> = workers
        .iter()
        .map(|w| (w.tenant.as_str(), w.usage.lock().map(|u| *u).unwrap_or_default()))
        .collect();
    let family =
        |own: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&str) -> String| {
            own.push_str(&format!("# HELP wasm_exec_server_{name} {help}\n"));
            own.push_str(&format!("# TYPE wasm_exec_server_{name} {kind}\n"));
            let suffix = if kind == "counter" { "_total" } else { "" };
            for tenant in stats.keys() {
                own.push_str(&format!(
                    "wasm_exec_server_{name}{suffix}{{tenant=\"{tenant}\"}} {}\n",
                    value(tenant)
                ));
            }
        };
    family(
        &mut own,
        "worker_resident_bytes",
        "gauge",
        "Resident memory of the tenant's worker process (0: none running)",
        &|t| live.get(t).map_or(0, |u| u.0).to_string(),
    );
    family(
        &mut own,
        "worker_cpu_seconds",
        "counter",
        "CPU time of the tenant's worker processes",
        &|t| {
            let done = stats.get(t).map_or(0.0, |s| s.cpu_done);
            format!("{:.3}", done + live.get(t).map_or(0.0, |u| u.1))
        },
    );
    family(&mut own, "worker_starts", "counter", "Worker processes started", &|t| {
        stats.get(t).map_or(0, |s| s.starts).to_string()
    });
    family(
        &mut own,
        "worker_crashes",
        "counter",
        "Worker processes that ended unexpectedly",
        &|t| stats.get(t).map_or(0, |s| s.crashes).to_string(),
    );
    family(
        &mut own,
        "worker_memory_kills",
        "counter",
        "Workers ended for exceeding max-tenant-memory",
        &|t| stats.get(t).map_or(0, |s| s.memory_kills).to_string(),
    );
    // The same family as the workers' (429s are theirs), summed in the merge.
    let refusals = front.refusals.lock().map(|r| r.clone()).unwrap_or_default();
    if !refusals.is_empty() {
        own.push_str(
            "# HELP wasm_exec_server_upgrade_refusals WebSocket upgrades refused, by HTTP status\n",
        );
        own.push_str("# TYPE wasm_exec_server_upgrade_refusals counter\n");
        for (code, n) in refusals {
            own.push_str(&format!(
                "wasm_exec_server_upgrade_refusals_total{{code=\"{code}\"}} {n}\n"
            ));
        }
    }
    let mut all = vec![own];
    all.extend(texts.into_iter().flatten());
    let body = merge_openmetrics(&all);
    let openmetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, openmetrics)], body).into_response()
}

/// Merges OpenMetrics texts: each family's `# HELP`/`# TYPE`/`# UNIT` once,
/// then every text's samples of it; the same series in several texts (the
/// module cache's, which has no tenant label) is summed. One `# EOF`.
pub fn merge_openmetrics(texts: &[String]) -> String {
    struct Family {
        meta: Vec<String>,
        samples: Vec<(String, f64)>,
    }
    let mut order: Vec<String> = Vec::new();
    let mut families: HashMap<String, Family> = HashMap::new();
    for text in texts {
        let mut current: Option<String> = None;
        for line in text.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(meta) = line.strip_prefix("# ") {
                let mut parts = meta.splitn(3, ' ');
                let (_, Some(name)) = (parts.next(), parts.next()) else { continue };
                let fam = families.entry(name.to_owned()).or_insert_with(|| {
                    order.push(name.to_owned());
                    Family { meta: Vec::new(), samples: Vec::new() }
                });
                if !fam.meta.iter().any(|m| m == line) {
                    fam.meta.push(line.to_owned());
                }
                current = Some(name.to_owned());
                continue;
            }
            let Some(fam) = current.as_ref().and_then(|c| families.get_mut(c)) else { continue };
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let value: f64 = value.parse().unwrap_or(0.0);
            match fam.samples.iter_mut().find(|(s, _)| s == series) {
                Some((_, v)) => *v += value,
                None => fam.samples.push((series.to_owned(), value)),
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let fam = &families[&name];
        for m in &fam.meta {
            out.push_str(m);
            out.push('\n');
        }
        for (series, value) in &fam.samples {
            out.push_str(&format!("{series} {value}\n"));
        }
    }
    out.push_str("# EOF\n");
    out
}

/// What the kernel offers for `--confinement`, checked once at start-up:
/// an error under `required` when something is missing, one warning under
/// `auto`.
pub fn check_kernel(mode: super::Mode) -> anyhow::Result<()> {
    let (landlock, seccomp) = confine::kernel_support();
    let mut missing = Vec::new();
    if landlock.is_none() {
        missing.push("Landlock (workers may open any path the server's user can)");
    }
    if !seccomp {
        missing.push("seccomp (workers may open sockets and run programs)");
    }
    if missing.is_empty() {
        tracing::info!(
            landlock_abi = landlock,
            "confinement: each tenant runs in its own confined worker"
        );
        return Ok(());
    }
    let missing = missing.join("; ");
    match mode {
        super::Mode::Required => anyhow::bail!(
            "--confinement required, but this kernel lacks {missing}. Use --confinement auto \
             to run with what it has, or a kernel with Landlock (5.13+) and seccomp"
        ),
        _ => {
            tracing::warn!(
                "confinement: tenants run in their own worker processes, but this kernel lacks \
                 {missing}; only the in-process path checks stand there"
            );
            Ok(())
        }
    }
}

/// Sends the worker its spec and waits for its `Ready`: the confinement it
/// reached.
async fn handshake(
    channel: &Channel,
    child: &mut tokio::process::Child,
    spec: WorkerSpec,
) -> anyhow::Result<String> {
    use anyhow::Context;
    channel.send(&ToWorker::Start(Box::new(spec)), None).await.context("worker start")?;
    let ready = tokio::select! {
        r = tokio::time::timeout(START_TIMEOUT, channel.recv::<FromWorker>()) => r,
        status = child.wait() => {
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            anyhow::bail!("the worker exited during start-up ({status}); see its log above")
        }
    };
    match ready {
        Ok(Ok(Some((FromWorker::Ready { confinement }, _)))) => Ok(confinement),
        Ok(Ok(other)) => anyhow::bail!("unexpected first message from the worker: {other:?}"),
        Ok(Err(e)) => anyhow::bail!("the worker's control socket failed: {e}"),
        Err(_) => anyhow::bail!("the worker did not start within {START_TIMEOUT:?}"),
    }
}

/// Removes an exited worker's scratch directory, off the async threads
/// (its guests' `/tmp` may hold many files).
async fn remove_scratch(dir: PathBuf) {
    let removed = tokio::task::spawn_blocking(move || {
        crate::fs::remove_scratch_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))
    })
    .await;
    if let Ok(Err(e)) = removed {
        tracing::warn!(error = %e, "could not remove a worker's scratch directory");
    }
}
