//! One WebSocket connection: frames in, messages out, keepalive.
//!
//! A reader loop decodes each frame and hands it to the session layer; one
//! writer task owns the socket's sending half and is fed by a bounded queue,
//! so responses and notifications leave in the order they were queued. The
//! writer also sends a Ping every 30 s. When either side ends, both stop and
//! the session's processes are stopped.

use crate::rpc::{self, Incoming};
use crate::session::{Connection, NotificationOutcome, Reply, ServerContext};
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Keepalive interval (PROTOCOL.md §2.4).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Messages queued for the writer before senders wait.
const OUTBOUND_QUEUE: usize = 256;

/// Requests answered later (`process/read` waits) in flight per connection.
const MAX_DEFERRED: usize = 64;

/// Serves one upgraded socket until it closes or `shutdown` fires.
pub async fn serve(socket: WebSocket, ctx: Arc<ServerContext>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let span = tracing::info_span!("connection", session_id = tracing::field::Empty);
    async move {
        let (mut sink, mut stream) = socket.split();
        let (out_tx, mut out_rx) = mpsc::channel::<String>(OUTBOUND_QUEUE);
        let writer = tokio::spawn(async move {
            let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
            loop {
                tokio::select! {
                    msg = out_rx.recv() => match msg {
                        Some(text) => if sink.send(Message::Text(text.into())).await.is_err() { break },
                        None => break,
                    },
                    _ = ping.tick() => if sink.send(Message::Ping(Default::default())).await.is_err() { break },
                }
            }
            let _ = sink.close().await;
        });
        let mut conn = Connection::new(ctx, out_tx.clone());
        let mut deferred: JoinSet<()> = JoinSet::new();
        tracing::info!("connection opened");
        loop {
            let frame = tokio::select! {
                f = stream.next() => f,
                _ = shutdown.changed() => break,
                Some(_) = deferred.join_next(), if !deferred.is_empty() => continue,
            };
            let text = match frame {
                Some(Ok(Message::Text(t))) => t.to_string(),
                Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                    Ok(t) => t,
                    Err(_) => {
                        let msg = rpc::parse_error_text("failed to parse JSON-RPC message: binary frame is not UTF-8".into());
                        if out_tx.send(msg).await.is_err() { break }
                        continue;
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "websocket read failed");
                    break;
                }
            };
            match rpc::decode(&text) {
                Incoming::Malformed(message) => {
                    if out_tx.send(rpc::parse_error_text(message)).await.is_err() { break }
                }
                Incoming::StrayResponse => {
                    tracing::info!("closing: response frame matches no request");
                    break;
                }
                Incoming::Notification { method } => {
                    if let NotificationOutcome::Close(why) = conn.notification(&method) {
                        tracing::info!(method = %method, why, "closing on notification");
                        break;
                    }
                }
                Incoming::Request { id, method, params } => {
                    tracing::debug!(%method, "request");
                    match conn.request(&method, params).await {
                        Reply::Now(result, after) => {
                            if let Some(sid) = conn.session_id() {
                                tracing::Span::current().record("session_id", sid);
                            }
                            if out_tx.send(rpc::response_text(id, result)).await.is_err() { break }
                            if let Some(after) = after { after(); }
                        }
                        Reply::Later(fut) => {
                            while deferred.len() >= MAX_DEFERRED {
                                let _ = deferred.join_next().await;
                            }
                            let tx = out_tx.clone();
                            deferred.spawn(async move {
                                let result = fut.await;
                                let _ = tx.send(rpc::response_text(id, result)).await;
                            });
                        }
                    }
                }
            }
        }
        conn.close();
        deferred.abort_all();
        drop(out_tx);
        drop(conn);
        let _ = writer.await;
        tracing::info!("connection closed");
    }
    .instrument(span)
    .await
}
