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
use tokio::net::TcpListener;

#[derive(Clone)]
struct AppState {
    ctx: Arc<ServerContext>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The router; exposed for tests that want to serve it themselves.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(upgrade))
        .route("/readyz", get(|| async { StatusCode::OK }))
        .with_state(state)
}

async fn upgrade(State(state): State<AppState>, ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Response {
    let Ok(ws) = ws else {
        return (StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'").into_response();
    };
    let max = state.ctx.executor.limits.max_message();
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| crate::connection::serve(socket, state.ctx, state.shutdown))
}

/// Serves until `shutdown` completes, then tells every connection to stop
/// (which ends their sessions and processes) and returns.
pub async fn run(listener: TcpListener, ctx: Arc<ServerContext>, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = router(AppState { ctx, shutdown: stop_rx });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await
}
