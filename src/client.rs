//! A small client for the exec-server protocol, for people embedding us, for
//! the integration tests and for the benchmark.
//!
//! One background task reads the socket: responses go to the caller waiting
//! on that id, notifications into a queue that [`Client::next_notification`]
//! drains. [`Client::run`] starts a process and collects its output until
//! `process/closed`, checking that `seq` has no gaps.

use crate::protocol::code;
use futures::SinkExt;
use futures::stream::{SplitSink, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Errors a client call can end with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("server error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("connection closed")]
    Closed,
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The JSON-RPC error code, if the server answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            ClientError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(code::NOT_FOUND)
    }
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Result<Value, ClientError>>>>>;

/// A connection to an exec-server.
pub struct Client {
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    pending: Pending,
    notifications: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    next_id: AtomicI64,
    reader: tokio::task::JoinHandle<()>,
    /// The reason of the server's close frame, once it sent one.
    close_reason: Arc<Mutex<Option<String>>>,
    /// How long any single wait may take.
    pub timeout: Duration,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What a finished process produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Finished {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Terminal-mode output.
    pub pty: Vec<u8>,
    pub exit_code: i32,
    /// Every notification's method in order (`process/output`, …, `process/closed`).
    pub events: Vec<String>,
}

impl Finished {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A rustls client trusting the system's roots and the certificates in the
/// PEM file at `path`.
fn tls_connector(path: &std::path::Path) -> Result<tokio_tungstenite::Connector, ClientError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let bad = |what: String| ClientError::Protocol(format!("{}: {what}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no PEM certificate in the file".into()));
    }
    // ring, deprecated in rustls only for lacking post-quantum key exchange:
    // aws-lc-rs, which has it, needs cmake and a long C build.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Connects (no handshake). `bearer` adds an `Authorization` header.
    pub async fn connect_with(url: &str, bearer: Option<&str>) -> Result<Self, ClientError> {
        Self::connect_tls(url, bearer, None).await
    }

    /// As [`Client::connect_with`]; a `wss://` URL is verified against the
    /// system's roots, or, with `ca_pem`, against the certificates of that
    /// PEM file too (a private CA or a self-signed server).
    pub async fn connect_tls(
        url: &str,
        bearer: Option<&str>,
        ca_pem: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request()?;
        if let Some(token) = bearer {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::Protocol("token is not a valid header value".into()))?;
            req.headers_mut().insert("authorization", value);
        }
        // No frame limit of our own (the server enforces its limits), and no
        // Nagle delay on small requests. tungstenite zero-fills its whole
        // read buffer (128 KiB by default) before every read, also the ones
        // that find nothing to read, so it is kept small.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None)
            .read_buffer_size(8 << 10);
        let connector = match ca_pem {
            Some(path) => Some(tls_connector(path)?),
            None => None,
        };
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, connector)
                .await?;
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let (ntx, nrx) = mpsc::unbounded_channel();
        let p = pending.clone();
        let close_reason: Arc<Mutex<Option<String>>> = Arc::default();
        let closed = close_reason.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    Message::Close(frame) => {
                        *lock(&closed) =
                            Some(frame.map(|f| f.reason.to_string()).unwrap_or_default());
                        break;
                    }
                    _ => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                match v.get("id").and_then(Value::as_i64) {
                    Some(id) if v.get("method").is_none() => {
                        let result = match v.get("error") {
                            Some(e) => Err(ClientError::Rpc {
                                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                                message: e
                                    .get("message")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_owned(),
                            }),
                            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                        };
                        if let Some(tx) = lock(&p).remove(&id) {
                            let _ = tx.send(result);
                        } else if id == -1 {
                            let _ = ntx.send(v);
                        }
                    }
                    _ => {
                        let _ = ntx.send(v);
                    }
                }
            }
            lock(&p).clear();
        });
        Ok(Self {
            sink: tokio::sync::Mutex::new(sink),
            pending,
            notifications: tokio::sync::Mutex::new(nrx),
            next_id: AtomicI64::new(1),
            reader,
            close_reason,
            timeout: Duration::from_secs(30),
        })
    }

    /// Closes the connection cleanly, saying the session will not be
    /// resumed: the server ends it and its processes now rather than keeping
    /// them for the detach grace. Waits (briefly) for the server's close.
    pub async fn close(self) -> Result<(), ClientError> {
        use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
        let frame =
            CloseFrame { code: CloseCode::Normal, reason: crate::connection::END_SESSION.into() };
        self.sink.lock().await.send(Message::Close(Some(frame))).await?;
        let mut this = self;
        let reader = &mut this.reader;
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        Ok(())
    }

    /// The reason in the server's close frame, if it closed the connection.
    pub fn close_reason(&self) -> Option<String> {
        lock(&self.close_reason).clone()
    }

    /// Connects and performs the handshake.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let c = Self::connect_with(url, None).await?;
        c.initialize().await?;
        Ok(c)
    }

    /// `initialize` + `initialized`; returns the `initialize` result.
    pub async fn initialize(&self) -> Result<Value, ClientError> {
        let r = self
            .request(
                "initialize",
                json!({"clientName": "wasm-exec-server-client", "resumeSessionId": null}),
            )
            .await?;
        self.send_raw(json!({"method": "initialized", "params": {}}).to_string()).await?;
        Ok(r)
    }

    /// Sends one frame as is.
    pub async fn send_raw(&self, text: String) -> Result<(), ClientError> {
        self.sink.lock().await.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// A request; waits for its response.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        self.send_raw(json!({"id": id, "method": method, "params": params}).to_string()).await?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(ClientError::Timeout)
            }
        }
    }

    /// The next notification (or `id: -1` error), waiting up to the timeout.
    pub async fn next_notification(&self) -> Result<Value, ClientError> {
        let mut rx = self.notifications.lock().await;
        match tokio::time::timeout(self.timeout, rx.recv()).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// Starts a process with the Codex client's defaults; returns its id.
    pub async fn start(
        &self,
        process_id: &str,
        argv: &[&str],
        cwd: &str,
        extra: Value,
    ) -> Result<Value, ClientError> {
        let mut params = json!({
            "processId": process_id, "argv": argv, "cwd": cwd, "env": {}, "tty": false,
            "pipeStdin": false, "arg0": null, "sandbox": null,
        });
        if let (Some(obj), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        self.request("process/start", params).await
    }

    /// Collects a process's notifications until `process/closed`, checking
    /// that `seq` runs 1, 2, 3… without gaps and that `closed` comes last.
    /// Notifications of other processes are an error here: use one process
    /// at a time per client when calling this.
    pub async fn collect(&self, process_id: &str) -> Result<Finished, ClientError> {
        self.collect_streaming(process_id, &mut |_, _| {}).await
    }

    /// Like [`Client::collect`], calling `on_output(stream, bytes)` for each
    /// chunk as it arrives (`stream` is `stdout`, `stderr` or `pty`).
    pub async fn collect_streaming(
        &self,
        process_id: &str,
        on_output: &mut (dyn FnMut(&str, &[u8]) + Send),
    ) -> Result<Finished, ClientError> {
        let mut out = Finished::default();
        let mut expect_seq = 1u64;
        let mut exited = false;
        loop {
            let n = self.next_notification().await?;
            let method = n.get("method").and_then(Value::as_str).unwrap_or("").to_owned();
            let params = n.get("params").cloned().unwrap_or(Value::Null);
            if params.get("processId").and_then(Value::as_str) != Some(process_id) {
                return Err(ClientError::Protocol(format!("unexpected notification {n}")));
            }
            let seq = params.get("seq").and_then(Value::as_u64).unwrap_or(0);
            if seq != expect_seq {
                return Err(ClientError::Protocol(format!(
                    "seq {seq} where {expect_seq} was expected: {n}"
                )));
            }
            expect_seq += 1;
            out.events.push(method.clone());
            match method.as_str() {
                "process/output" => {
                    let data = crate::b64::decode(
                        params.get("chunk").and_then(Value::as_str).unwrap_or("").as_bytes(),
                    )
                    .map_err(|e| ClientError::Protocol(format!("bad base64: {e}")))?;
                    let stream = params.get("stream").and_then(Value::as_str).unwrap_or("");
                    on_output(stream, &data);
                    match Some(stream) {
                        Some("stdout") => out.stdout.extend(data),
                        Some("stderr") => out.stderr.extend(data),
                        Some("pty") => out.pty.extend(data),
                        other => {
                            return Err(ClientError::Protocol(format!("unknown stream {other:?}")));
                        }
                    }
                }
                "process/exited" => {
                    if exited {
                        return Err(ClientError::Protocol("exited twice".into()));
                    }
                    exited = true;
                    out.exit_code =
                        params.get("exitCode").and_then(Value::as_i64).unwrap_or(-1) as i32;
                }
                "process/closed" => {
                    if !exited {
                        return Err(ClientError::Protocol("closed before exited".into()));
                    }
                    return Ok(out);
                }
                other => {
                    return Err(ClientError::Protocol(format!("unknown notification {other}")));
                }
            }
        }
    }

    /// Runs argv in `cwd` to completion (and sends `process/terminate`
    /// afterwards, as the Codex client does).
    pub async fn run(
        &self,
        process_id: &str,
        argv: &[&str],
        cwd: &str,
    ) -> Result<Finished, ClientError> {
        self.start(process_id, argv, cwd, json!({})).await?;
        let f = self.collect(process_id).await?;
        self.request("process/terminate", json!({"processId": process_id})).await?;
        Ok(f)
    }

    /// `process/write` of raw bytes.
    pub async fn write(
        &self,
        process_id: &str,
        data: &[u8],
        write_id: &str,
    ) -> Result<Value, ClientError> {
        self.request(
            "process/write",
            json!({
                "processId": process_id,
                "chunk": crate::b64::encode(data),
                "writeId": write_id
            }),
        )
        .await
    }

    /// `fs/readFile` → bytes.
    pub async fn read_file(&self, uri: &str) -> Result<Vec<u8>, ClientError> {
        let r = self.request("fs/readFile", json!({"path": uri, "sandbox": null})).await?;
        crate::b64::decode(r.get("dataBase64").and_then(Value::as_str).unwrap_or("").as_bytes())
            .map_err(|e| ClientError::Protocol(format!("bad base64: {e}")))
    }

    /// `fs/writeFile`.
    pub async fn write_file(&self, uri: &str, data: &[u8]) -> Result<(), ClientError> {
        self.request(
            "fs/writeFile",
            json!({"path": uri, "dataBase64": crate::b64::encode(data), "sandbox": null}),
        )
        .await
        .map(|_| ())
    }
}
