//! The HTTP side: the axum router (`/` upgrades to WebSocket after the
//! bearer-token check, `/readyz`, `/metrics`), the accept loop and graceful
//! shutdown.

use crate::session::Registry;
use crate::tenant::{Gate, Tenant};
use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
struct AppState {
    gate: Arc<Gate>,
    /// Every live session, of every tenant.
    registry: Arc<Registry>,
    shutdown: crate::connection::Shutdown,
    /// Upgraded connections, so shutdown can wait for them.
    connections: TaskTracker,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(upgrade))
        .route("/readyz", get(|| async { StatusCode::OK }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

pub(crate) fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let tenants = state.gate.tenants();
    for t in &tenants {
        t.observe();
    }
    let body = tenants.first().map(|t| t.executor.runtime.metrics.encode()).unwrap_or_default();
    // prometheus-client writes OpenMetrics text (it ends in `# EOF`), so it
    // is served as such; Prometheus and its agents negotiate it.
    let openmetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, openmetrics)], body).into_response()
}

/// The one place an upgrade is refused: a browser's request (403), bad
/// token (401), connection limit (429), not a WebSocket request (400).
async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let refused = |code: StatusCode| {
        if let Some(t) = state.gate.tenants().first() {
            t.executor.runtime.metrics.refused(code.as_u16());
        }
    };
    let tenant = match admit(&state.gate, &headers, peer) {
        Ok(tenant) => tenant,
        Err((code, body)) => {
            refused(code);
            return text(code, body);
        }
    };
    let Ok(ws) = ws else {
        refused(StatusCode::BAD_REQUEST);
        return not_websocket();
    };
    let max = tenant.executor.limits.max_connections;
    if let Err(open) =
        tenant
            .open_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
    {
        refused(StatusCode::TOO_MANY_REQUESTS);
        tracing::info!(%peer, tenant = %tenant.id, open, max, "upgrade refused: connection limit");
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "connection limit reached: {open} connections are open (max-connections is {max})"
            ),
        );
    }
    let guard = ConnectionSlot(tenant.clone());
    let max_message = tenant.executor.limits.max_message();
    // A small read buffer keeps idle connections cheap (the default is a
    // zero-filled 128 KiB per connection); it grows for large frames.
    ws.max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(8 * 1024)
        .on_upgrade(move |socket| {
            state.connections.track_future(async move {
                let _slot = guard;
                crate::connection::serve_websocket(
                    socket,
                    tenant,
                    state.registry,
                    state.shutdown,
                    peer,
                )
                .await
            })
        })
}

/// The close reason when the server itself stops.
pub const SHUTTING_DOWN: &str = "the server is shutting down; reconnect to go on";

/// Connections handed over one by one (to a worker, by the front): an axum
/// listener over a channel. Once the channel closes it accepts nothing more.
pub struct HandedListener<T = tokio::net::TcpStream> {
    pub rx: tokio::sync::mpsc::Receiver<T>,
}

/// A connection that knows its client's address (for the logs).
pub trait Peer {
    fn peer(&self) -> SocketAddr;
}

impl Peer for tokio::net::TcpStream {
    fn peer(&self) -> SocketAddr {
        self.peer_addr().unwrap_or(UNKNOWN_PEER)
    }
}

/// The client's address, as the handlers get it from any of our listeners.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

impl<T> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HandedListener<T>>>
    for PeerAddr
where
    HandedListener<T>: axum::serve::Listener<Addr = SocketAddr>,
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HandedListener<T>>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, NoDelay>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, NoDelay>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// A TCP listener whose connections send small frames at once: without
/// TCP_NODELAY a response, then the first notifications, would wait for
/// the client's delayed ACK (every command ~40 ms longer).
pub struct NoDelay(pub TcpListener);

impl axum::serve::Listener for NoDelay {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let _ = tcp.set_nodelay(true);
        (tcp, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The address logged when the socket no longer says (it was reset).
const UNKNOWN_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

impl<T> axum::serve::Listener for HandedListener<T>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Peer + Unpin + Send + 'static,
{
    type Io = T;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(io) => {
                let peer = io.peer();
                (io, peer)
            }
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(UNKNOWN_PEER)
    }
}

/// The checks every upgrade passes first, here and in the front process:
/// no `Origin` header (403) and a valid token (401). The tenant, or the
/// refusal's status and text.
pub(crate) fn admit<T: Clone>(
    gate: &Gate<T>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<T, (StatusCode, String)> {
    // Browsers send `Origin` with every WebSocket upgrade, and let any page
    // open one to localhost: refused, as the reference server does, so that
    // a web page cannot drive a local server. Agents and tools send none.
    if headers.contains_key(header::ORIGIN) {
        tracing::info!(%peer, "upgrade refused: the request carries an Origin header (a browser)");
        return Err((
            StatusCode::FORBIDDEN,
            "requests with an Origin header (from a browser) are not accepted".into(),
        ));
    }
    gate.authorize(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes())).map_err(|e| {
        tracing::info!(%peer, reason = %e, "upgrade refused");
        (StatusCode::UNAUTHORIZED, e.to_string())
    })
}

/// The refusal of a request to `/` that is not a WebSocket upgrade.
pub(crate) fn not_websocket() -> Response {
    text(StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'".into())
}

/// Holds one of a tenant's connection slots until the connection ends.
struct ConnectionSlot(Arc<Tenant>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves until `shutdown` completes, then shuts down gracefully: stops
/// accepting, lets running commands finish for up to `drain`, stops the rest,
/// closes every connection and returns.
pub async fn run(
    listener: TcpListener,
    gate: impl Into<Gate>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let shutdown = async {
        shutdown.await;
        SHUTTING_DOWN.to_owned()
    };
    run_on(NoDelay(listener), Arc::new(gate.into()), Registry::new(), shutdown, drain).await
}

/// [`run`] on connections from any listener (a tenant's worker gets them
/// from the front process), with the sessions kept in `registry`.
pub async fn run_on<L>(
    listener: L,
    gate: Arc<Gate>,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = String> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    PeerAddr: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let connections = TaskTracker::new();
    let app = router(AppState {
        gate: gate.clone(),
        registry: registry.clone(),
        shutdown: stop_rx,
        connections: connections.clone(),
    });
    // Why it stops: what each client's close frame says.
    let why = Arc::new(std::sync::Mutex::new(String::new()));
    let stopped = {
        let why = why.clone();
        async move {
            let reason = shutdown.await;
            if let Ok(mut w) = why.lock() {
                *w = reason;
            }
        }
    };
    axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>())
        .with_graceful_shutdown(stopped)
        .await?;
    tracing::info!(drain_secs = drain.as_secs(), "shutting down: no longer accepting connections");
    let tenants = gate.tenants();
    futures::future::join_all(tenants.iter().map(|t| drain_sessions(&registry, t, drain))).await;
    let reason = why.lock().map(|w| w.clone()).unwrap_or_default();
    let _ = stop_tx.send(Some(reason.into()));
    connections.close();
    if tokio::time::timeout(Duration::from_secs(5), connections.wait()).await.is_err() {
        tracing::warn!("some connections did not close in time");
    }
    for s in registry.all() {
        s.close();
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Serves one local client on stdin/stdout (`--listen stdio`) until it
/// leaves or `shutdown` completes; then drains as [`run`] does.
pub async fn serve_stdio(
    tenant: Arc<Tenant>,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) {
    let registry = Registry::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let conn = crate::connection::serve_stdio(tenant.clone(), registry.clone(), stop_rx);
    tokio::select! {
        () = conn => {}
        () = shutdown => {
            drain_sessions(&registry, &tenant, drain).await;
            let _ = stop_tx.send(Some(SHUTTING_DOWN.into()));
        }
    }
    for s in registry.all() {
        s.close();
    }
}

/// Waits up to `drain` for running commands to finish, then stops the rest
/// and gives their final notifications a moment to go out.
async fn drain_sessions(registry: &Registry, tenant: &Arc<Tenant>, drain: Duration) {
    let running = || registry.of(tenant).iter().map(|s| s.running()).sum::<usize>();
    let deadline = tokio::time::Instant::now() + drain;
    while running() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = running();
    if left > 0 {
        tracing::info!(
            tenant = %tenant.id,
            processes = left,
            "stopping commands still running after the drain period"
        );
        for s in registry.of(tenant) {
            s.stop_all();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
