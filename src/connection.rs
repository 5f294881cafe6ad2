//! One client connection: frames in, messages out, keepalive.
//!
//! The transport is anything that yields text frames and accepts them: a
//! WebSocket (the normal case) or stdin/stdout with one JSON message per line
//! (`--listen stdio`). A reader loop decodes each frame and hands it to the
//! session layer; one writer task owns the sending half and is fed by a
//! bounded queue, so responses and notifications leave in the order they were
//! queued. On a WebSocket the writer also sends a Ping every 30 s. When either
//! side ends, both stop and the session is detached.

use crate::rpc::{self, Incoming};
use crate::session::{Handler, NotificationOutcome, Registry, Reply};
use crate::tenant::Tenant;
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Keepalive interval (PROTOCOL.md §2.4).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Queued messages are written together (one flush) up to this many bytes.
const FLUSH_BYTES: usize = 16 * 1024;

/// Messages queued for the writer before senders wait. An output message
/// carries up to 64 KiB (88 KB of JSON), so a client that stops reading
/// holds at most about 6 MB here.
const OUTBOUND_QUEUE: usize = 64;

/// Requests answered later (`process/read` waits) in flight per connection.
const MAX_DEFERRED: usize = 64;

/// A frame from the client, transport-neutral.
#[derive(Debug)]
pub enum Inbound {
    Text(String),
    Binary(Vec<u8>),
    /// Control frames (Ping, Pong): nothing to do.
    Control,
    /// A close frame; `end_session` when it carries [`END_SESSION`].
    Close {
        end_session: bool,
    },
}

/// The close reason (with code 1000) of a client that will not resume: its
/// session ends at once instead of being kept for the detach grace. An
/// extension of ours; any other close detaches the session as the protocol
/// says. `wasm-exec-server exec` sends it.
pub const END_SESSION: &str = "end-session";

/// A frame to the client.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Ping,
    /// The server ends the connection (1001, going away) and says why.
    Close(String),
}

/// Why connections are being closed, once the server stops serving them
/// (`None` while it serves): sent to each client in its close frame.
pub type Shutdown = tokio::sync::watch::Receiver<Option<Arc<str>>>;

/// Serves an upgraded WebSocket.
pub async fn serve_websocket(
    socket: axum::extract::ws::WebSocket,
    tenant: Arc<Tenant>,
    registry: Arc<Registry>,
    shutdown: Shutdown,
    peer: std::net::SocketAddr,
) {
    use axum::extract::ws::Message;
    let (sink, stream) = socket.split();
    let sink = sink.with(|o: Outbound| async move {
        Ok::<_, axum::Error>(match o {
            Outbound::Text(t) => Message::Text(t.into()),
            Outbound::Ping => Message::Ping(Default::default()),
            Outbound::Close(reason) => {
                // A close frame's reason is at most 123 bytes.
                let mut end = reason.len().min(123);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: axum::extract::ws::close_code::AWAY,
                    reason: reason[..end].into(),
                }))
            }
        })
    });
    let stream = stream.map(|m| {
        m.map(|m| match m {
            Message::Text(t) => Inbound::Text(t.to_string()),
            Message::Binary(b) => Inbound::Binary(b.to_vec()),
            Message::Ping(_) | Message::Pong(_) => Inbound::Control,
            Message::Close(frame) => Inbound::Close {
                end_session: frame.is_some_and(|f| f.code == 1000 && f.reason == END_SESSION),
            },
        })
    });
    serve(Box::pin(stream), Box::pin(sink), tenant, registry, shutdown, Some(peer)).await
}

/// Serves newline-delimited JSON on stdin/stdout (`--listen stdio`).
pub async fn serve_stdio(tenant: Arc<Tenant>, registry: Arc<Registry>, shutdown: Shutdown) {
    use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};
    let max = tenant.executor.limits.max_message();
    let stream = FramedRead::new(tokio::io::stdin(), LinesCodec::new_with_max_length(max))
        .map(|line| line.map(Inbound::Text));
    let sink =
        FramedWrite::new(tokio::io::stdout(), LinesCodec::new()).with(|o: Outbound| async move {
            Ok::<_, tokio_util::codec::LinesCodecError>(match o {
                Outbound::Text(t) => t,
                // Never sent on stdio (no keepalive, no close frame).
                Outbound::Ping | Outbound::Close(_) => String::new(),
            })
        });
    serve(Box::pin(stream), Box::pin(sink), tenant, registry, shutdown, None).await
}

/// Serves one connection until it closes or `shutdown` turns true.
async fn serve<S, K, E, F>(
    mut stream: S,
    mut sink: K,
    tenant: Arc<Tenant>,
    registry: Arc<Registry>,
    mut shutdown: Shutdown,
    // The client's address, for a WebSocket (which also gets keepalive
    // pings); `None` for stdio.
    peer: Option<std::net::SocketAddr>,
) where
    S: Stream<Item = Result<Inbound, E>> + Unpin + Send,
    K: Sink<Outbound, Error = F> + Unpin + Send + 'static,
    E: std::fmt::Display,
    F: std::fmt::Display,
{
    // Every line of the connection (its session's too) names the tenant and
    // the client's address.
    let span = tracing::info_span!(
        "connection",
        tenant = %tenant.id,
        peer = tracing::field::Empty,
        session_id = tracing::field::Empty
    );
    if let Some(peer) = peer {
        span.record("peer", tracing::field::display(peer));
    }
    let keepalive = peer.is_some();
    async move {
        let (out_tx, mut out_rx) = mpsc::channel::<rpc::Queued>(OUTBOUND_QUEUE);
        // Set when the server closes the connection: the close frame's reason,
        // sent after everything queued.
        let close_reason: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let closing = close_reason.clone();
        let writer = tokio::spawn(async move {
            let mut ping = tokio::time::interval_at(
                tokio::time::Instant::now() + PING_INTERVAL,
                PING_INTERVAL,
            );
            loop {
                let first = tokio::select! {
                    msg = out_rx.recv() => match msg {
                        Some(queued) => Some(queued),
                        None => break,
                    },
                    _ = ping.tick(), if keepalive => None,
                };
                // Everything already queued goes out with one flush (one
                // write for a command's answer, output, exit and close).
                // Bulk output is flushed as it comes (the client reads one
                // message while the next is written).
                let mut pending = 0;
                let mut result = match first {
                    Some(queued) => feed(&mut sink, queued, &mut pending).await,
                    None => sink.feed(Outbound::Ping).await.map_err(|e| e.to_string()),
                };
                while result.is_ok() && pending < FLUSH_BYTES {
                    match out_rx.try_recv() {
                        Ok(queued) => result = feed(&mut sink, queued, &mut pending).await,
                        Err(_) => break,
                    }
                }
                if let Err(e) = result.and(sink.flush().await.map_err(|e| e.to_string())) {
                    tracing::debug!(error = %e, "write failed");
                    break;
                }
            }
            let reason = closing.lock().ok().and_then(|mut r| r.take());
            if let (Some(reason), true) = (reason, keepalive) {
                let _ = sink.send(Outbound::Close(reason)).await;
            }
            let _ = sink.close().await;
        });
        let metrics = tenant.executor.runtime.metrics.clone();
        let label = crate::metrics::Metrics::tenant(&tenant.id);
        metrics.connections.get_or_create(&label).inc();
        metrics.connections_open.get_or_create(&label).inc();
        let _open = scopeguard(move || {
            metrics.connections_open.get_or_create(&label).dec();
        });
        let mut conn = Handler::new(tenant, registry, out_tx.clone());
        let mut deferred: JoinSet<()> = JoinSet::new();
        // Recorded once: each `record` appends the field to later log lines.
        let mut span_has_session = false;
        tracing::info!("connection opened");
        if shutdown.borrow().is_some() {
            return;
        }
        loop {
            let frame = tokio::select! {
                f = stream.next() => f,
                _ = shutdown.changed() => {
                    let why = shutdown.borrow().as_deref().map(str::to_owned);
                    if let (Some(why), Ok(mut r)) = (why, close_reason.lock()) {
                        *r = Some(why);
                    }
                    break;
                }
                Some(_) = deferred.join_next(), if !deferred.is_empty() => continue,
            };
            let text = match frame {
                Some(Ok(Inbound::Text(t))) => t,
                Some(Ok(Inbound::Binary(b))) => match String::from_utf8(b) {
                    Ok(t) => t,
                    Err(_) => {
                        let msg = rpc::parse_error_text(
                            "failed to parse JSON-RPC message: binary frame is not UTF-8".into(),
                        );
                        if out_tx.send(msg.into()).await.is_err() {
                            break;
                        }
                        continue;
                    }
                },
                Some(Ok(Inbound::Control)) => continue,
                Some(Ok(Inbound::Close { end_session })) => {
                    if end_session {
                        conn.end_session();
                    }
                    break;
                }
                None => break,
                Some(Err(e)) => {
                    tracing::info!(error = %e, "read failed; closing");
                    break;
                }
            };
            match rpc::decode(&text) {
                Incoming::Malformed(message) => {
                    if out_tx.send(rpc::parse_error_text(message).into()).await.is_err() {
                        break;
                    }
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
                            if !span_has_session {
                                if let Some(sid) = conn.session_id() {
                                    tracing::Span::current().record("session_id", sid);
                                    span_has_session = true;
                                }
                            }
                            if out_tx.send(rpc::response_text(id, result).into()).await.is_err() {
                                break;
                            }
                            if let Some(after) = after {
                                after();
                            }
                        }
                        Reply::Handoff(hand_over) => {
                            hand_over(crate::session::Responder::new(out_tx.clone(), id))
                        }
                        Reply::Raw(result) => {
                            if out_tx.send(rpc::raw_response_text(id, result).into()).await.is_err()
                            {
                                break;
                            }
                        }
                        Reply::Later(fut) => {
                            while deferred.len() >= MAX_DEFERRED {
                                let _ = deferred.join_next().await;
                            }
                            let tx = out_tx.clone();
                            deferred.spawn(async move {
                                let result = fut.await;
                                let _ = tx.send(rpc::response_text(id, result).into()).await;
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

/// Feeds what was queued to `sink` (one frame per message, unflushed) and
/// adds its bytes to `pending`.
async fn feed<K, F>(sink: &mut K, queued: rpc::Queued, pending: &mut usize) -> Result<(), String>
where
    K: Sink<Outbound, Error = F> + Unpin,
    F: std::fmt::Display,
{
    let (first, rest) = match queued {
        rpc::Queued::One(text) => (Some(text), Vec::new()),
        rpc::Queued::Batch(texts) => (None, texts),
    };
    for text in first.into_iter().chain(rest) {
        *pending += text.len();
        sink.feed(Outbound::Text(text)).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs `f` when dropped (keeps the open-connections gauge right on every
/// way out of [`serve`]).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
