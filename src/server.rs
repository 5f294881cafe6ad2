//! The HTTP side: the axum router (`/` upgrades to WebSocket, `/readyz`),
//! the accept loop and shutdown.

use crate::session::ServerContext;
use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
struct AppState {
    ctx: Arc<ServerContext>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Upgraded connections, so shutdown can wait for them.
    connections: TaskTracker,
}

/// The router; exposed for tests that want to serve it themselves.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(upgrade))
        .route("/readyz", get(|| async { StatusCode::OK }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.ctx.executor.runtime.metrics.encode();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn upgrade(State(state): State<AppState>, ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Response {
    let Ok(ws) = ws else {
        return (StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'").into_response();
    };
    let max = state.ctx.executor.limits.max_message();
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| {
        state.connections.track_future(crate::connection::serve_websocket(socket, state.ctx, state.shutdown))
    })
}

/// Serves until `shutdown` completes, then shuts down gracefully: stops
/// accepting, lets running commands finish for up to `drain`, stops the rest,
/// closes every connection and returns.
pub async fn run(
    listener: TcpListener,
    ctx: Arc<ServerContext>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let connections = TaskTracker::new();
    let app = router(AppState { ctx: ctx.clone(), shutdown: stop_rx, connections: connections.clone() });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    tracing::info!(drain_secs = drain.as_secs(), "shutting down: no longer accepting connections");
    drain_sessions(&ctx, drain).await;
    let _ = stop_tx.send(true);
    connections.close();
    if tokio::time::timeout(Duration::from_secs(5), connections.wait()).await.is_err() {
        tracing::warn!("some connections did not close in time");
    }
    for s in ctx.all_sessions() {
        s.close();
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Waits up to `drain` for running commands to finish, then stops the rest
/// and gives their final notifications a moment to go out.
pub async fn drain_sessions(ctx: &ServerContext, drain: Duration) {
    let running = || ctx.all_sessions().iter().map(|s| s.running()).sum::<usize>();
    let deadline = tokio::time::Instant::now() + drain;
    while running() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = running();
    if left > 0 {
        tracing::info!(processes = left, "stopping commands still running after the drain period");
        for s in ctx.all_sessions() {
            s.stop_all();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
