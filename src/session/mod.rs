//! Per-connection protocol state: the handshake, the session that owns the
//! process table, and one handler per method (named after it).
//!
//! The connection layer hands every decoded request to
//! [`Connection::request`] and sends back the [`Reply`]. Params are decoded
//! before the handshake is checked, as the reference does. Wire types are
//! translated to domain calls here; `exec` and `fs` never see JSON.

mod env;
mod fs;
mod process;
mod registry;

pub use registry::Session;

use crate::exec::Executor;
use crate::protocol::*;
use crate::rpc::{self, RpcError};
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// What every connection shares: the executor and what we tell clients.
pub struct ServerContext {
    pub executor: Executor,
    pub env_info: EnvironmentInfo,
    /// Every live session (attached or detached), by id, for resume and
    /// shutdown.
    pub sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// The tenant's id (the `tenant` label of metrics; `default` without a
    /// config file).
    pub tenant: String,
    /// Connections open now, against `max-connections`.
    pub open_connections: std::sync::atomic::AtomicUsize,
    /// Processes running now, against `max-processes`.
    pub running_processes: std::sync::atomic::AtomicUsize,
    /// Request budget (token bucket), against `requests-per-second`.
    rate: Mutex<RateBucket>,
    /// This tenant's own threads for its commands.
    pub guests: crate::exec::GuestPool,
}

/// A token bucket: `rate` tokens a second, up to twice that in a burst.
struct RateBucket {
    tokens: f64,
    last: std::time::Instant,
}

impl ServerContext {
    pub fn new(executor: Executor) -> Self {
        let root = crate::fs::to_file_uri(executor.workspace.visible_root());
        let env_info = EnvironmentInfo {
            shell: ShellInfo { name: "bash".into(), path: "/bin/bash".into() },
            executor_version: env!("CARGO_PKG_VERSION").into(),
            cwd: Some(root.clone()),
            user_home_dir: root,
            platform_os: "linux".into(),
            capabilities: Default::default(),
        };
        let burst = f64::from(executor.limits.requests_per_second) * 2.0;
        Self {
            executor,
            env_info,
            sessions: Mutex::new(HashMap::new()),
            tenant: "default".into(),
            open_connections: Default::default(),
            running_processes: Default::default(),
            rate: Mutex::new(RateBucket { tokens: burst, last: std::time::Instant::now() }),
            guests: crate::exec::GuestPool::new("default", crate::exec::engine::batch_nice())
                .unwrap_or_else(|e| {
                    // Without a pool of its own, commands share the server's threads.
                    tracing::warn!(error = %e, "could not start a guest thread pool");
                    crate::exec::GuestPool::current()
                }),
        }
    }

    /// Names the tenant (for metrics and logs).
    pub fn with_tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.to_owned();
        self
    }

    /// Takes one request from the budget; `false` when it is spent.
    fn take_request(&self) -> bool {
        let rate = f64::from(self.executor.limits.requests_per_second);
        let mut b = lock(&self.rate);
        let now = std::time::Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate * 2.0);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs after the reply has been queued (delivers a stop), so that the reply
/// precedes the notifications it causes.
pub type AfterReply = Box<dyn FnOnce() + Send>;

/// Where the answer to one request goes, when it is sent by someone other
/// than the connection's request loop.
pub struct Responder {
    tx: mpsc::Sender<String>,
    id: crate::protocol::RequestId,
}

impl Responder {
    pub fn new(tx: mpsc::Sender<String>, id: crate::protocol::RequestId) -> Self {
        Self { tx, id }
    }

    /// Queues the answer on the connection that asked (dropped if it has
    /// gone, also when the session has moved to another connection since).
    pub async fn send(self, result: Result<Value, RpcError>) {
        let _ = self.tx.send(rpc::response_text(self.id, result)).await;
    }
}

/// The answer to one request.
pub enum Reply {
    Now(Result<Value, RpcError>, Option<AfterReply>),
    /// Answered by whoever the function hands the [`Responder`] to: a
    /// process answers its own `process/start` after its first poll, so a
    /// command that finishes at once goes out with its answer in one write.
    Handoff(Box<dyn FnOnce(Responder) + Send>),
    /// A result already serialized as JSON text (`fs/readFile`: megabytes of
    /// base64 are written once, not copied into a `Value` and out again).
    Raw(Result<String, RpcError>),
    /// Answered later without holding up the connection (`process/read` waits).
    Later(BoxFuture<'static, Result<Value, RpcError>>),
}

impl From<Result<Value, RpcError>> for Reply {
    fn from(r: Result<Value, RpcError>) -> Self {
        Reply::Now(r, None)
    }
}

/// What the connection should do after a notification.
#[derive(Debug, PartialEq, Eq)]
pub enum NotificationOutcome {
    Continue,
    /// Protocol violation: close the connection (reference behaviour).
    Close(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    New,
    /// `initialize` answered, `initialized` not yet received.
    Initializing,
    Ready,
}

/// Protocol state of one connection.
pub struct Connection {
    ctx: Arc<ServerContext>,
    stage: Stage,
    session: Option<Arc<Session>>,
    /// The writer's queue, given to the session for notifications.
    outbound: mpsc::Sender<String>,
}

impl Connection {
    pub fn new(ctx: Arc<ServerContext>, outbound: mpsc::Sender<String>) -> Self {
        Self { ctx, stage: Stage::New, session: None, outbound }
    }

    /// The session, for logging.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref().map(|s| s.id.as_str())
    }

    pub fn notification(&mut self, method: &str) -> NotificationOutcome {
        match (method, self.stage) {
            (method::INITIALIZED, Stage::Initializing) => {
                self.stage = Stage::Ready;
                NotificationOutcome::Continue
            }
            (method::INITIALIZED, Stage::Ready) => NotificationOutcome::Continue,
            (method::INITIALIZED, Stage::New) => {
                NotificationOutcome::Close("initialized before initialize")
            }
            _ => NotificationOutcome::Close("unexpected notification"),
        }
    }

    fn require(&self, family: &str) -> Result<&Arc<Session>, RpcError> {
        match (self.stage, &self.session) {
            (Stage::Ready, Some(s)) => Ok(s),
            (Stage::New, _) => Err(RpcError::invalid_request(format!(
                "client must call initialize before using {family} methods"
            ))),
            _ => Err(RpcError::invalid_request(format!(
                "client must send initialized before using {family} methods"
            ))),
        }
    }

    pub async fn request(&mut self, method: &str, params: Option<Value>) -> Reply {
        if !self.ctx.take_request() {
            return Reply::Now(
                Err(RpcError::invalid_request(format!(
                    "rate limit exceeded: more than {} requests per second (requests-per-second)",
                    self.ctx.executor.limits.requests_per_second
                ))),
                None,
            );
        }
        let reply = match self.dispatch(method, params).await {
            Ok(reply) => reply,
            Err(e) => Reply::Now(Err(e), None),
        };
        if method.starts_with("fs/") {
            let code = match &reply {
                Reply::Now(Ok(_), _) | Reply::Raw(Ok(_)) => Some("ok".to_owned()),
                Reply::Now(Err(e), _) | Reply::Raw(Err(e)) => Some(e.code.to_string()),
                Reply::Later(_) | Reply::Handoff(_) => None,
            };
            if let Some(code) = code {
                let labels = crate::metrics::FsLabels {
                    tenant: self.ctx.tenant.clone(),
                    method: method.to_owned(),
                    code,
                };
                self.ctx.executor.runtime.metrics.fs_calls.get_or_create(&labels).inc();
            }
        }
        reply
    }

    async fn dispatch(&mut self, method: &str, params: Option<Value>) -> Result<Reply, RpcError> {
        use crate::protocol::method as m;
        Ok(match method {
            m::INITIALIZE => {
                let p: InitializeParams = rpc::params(params)?;
                Reply::from(self.initialize(p))
            }
            m::ENVIRONMENT_INFO => {
                self.require("environment info")?;
                rpc::to_value(&self.ctx.env_info).into()
            }
            m::ENVIRONMENT_STATUS => {
                self.require("environment status")?;
                rpc::to_value(EnvironmentStatusResponse { status: "ready" }).into()
            }
            m::PROCESS_START => {
                let p: ProcessStartParams = rpc::params(params)?;
                let s = self.require("exec")?.clone();
                s.process_start(p)?
            }
            m::PROCESS_READ => {
                let p: ProcessReadParams = rpc::params(params)?;
                let s = self.require("exec")?.clone();
                s.process_read(p)?
            }
            m::PROCESS_WRITE => {
                let p: ProcessWriteParams = rpc::params(params)?;
                self.require("exec")?.process_write(p).into()
            }
            m::PROCESS_SIGNAL => {
                let p: ProcessSignalParams = rpc::params(params)?;
                self.require("exec")?.process_signal(p)
            }
            m::PROCESS_TERMINATE => {
                let p: ProcessTerminateParams = rpc::params(params)?;
                self.require("exec")?.process_terminate(p)
            }
            m::FS_READ_FILE => {
                let p: FsPathParams = rpc::params(params)?;
                Reply::Raw(
                    fs::fs_read_file(
                        self.workspace("filesystem")?,
                        p,
                        self.ctx.executor.limits.max_file,
                    )
                    .await,
                )
            }
            m::FS_WRITE_FILE => {
                let p: FsWriteFileParams = rpc::params(params)?;
                fs::fs_write_file(
                    self.workspace("filesystem")?,
                    p,
                    self.ctx.executor.limits.max_file,
                )
                .await
                .into()
            }
            m::FS_CREATE_DIRECTORY => {
                let p: FsCreateDirectoryParams = rpc::params(params)?;
                fs::fs_create_directory(self.workspace("filesystem")?, p).await.into()
            }
            m::FS_GET_METADATA => {
                let p: FsPathParams = rpc::params(params)?;
                fs::fs_get_metadata(self.workspace("filesystem")?, p).await.into()
            }
            m::FS_READ_DIRECTORY => {
                let p: FsPathParams = rpc::params(params)?;
                fs::fs_read_directory(self.workspace("filesystem")?, p).await.into()
            }
            m::FS_REMOVE => {
                let p: FsRemoveParams = rpc::params(params)?;
                fs::fs_remove(self.workspace("filesystem")?, p).await.into()
            }
            m::FS_COPY => {
                let p: FsCopyParams = rpc::params(params)?;
                fs::fs_copy(self.workspace("filesystem")?, p).await.into()
            }
            m::FS_CANONICALIZE => {
                let p: FsPathParams = rpc::params(params)?;
                fs::fs_canonicalize(self.workspace("filesystem")?, p).await.into()
            }
            other => return Err(RpcError::method_not_found(other)),
        })
    }

    fn initialize(&mut self, p: InitializeParams) -> Result<Value, RpcError> {
        if self.stage != Stage::New {
            return Err(RpcError::invalid_request(
                "initialize may only be sent once per connection",
            ));
        }
        let session = match p.resume_session_id {
            Some(id) => {
                let found = lock(&self.ctx.sessions).get(&id).cloned();
                let session = found
                    .ok_or_else(|| RpcError::invalid_request(format!("unknown session id {id}")))?;
                session.attach(self.outbound.clone())?;
                session
            }
            None => Session::new(self.ctx.clone(), self.outbound.clone()),
        };
        tracing::info!(session_id = %session.id, client = %p.client_name, "session started");
        let result = InitializeResponse {
            session_id: session.id.clone(),
            environment_info: self.ctx.env_info.clone(),
        };
        self.session = Some(session);
        self.stage = Stage::Initializing;
        rpc::to_value(result)
    }

    /// The connection is gone: detach the session (its processes go on for
    /// the grace period, waiting for a resume) or end it.
    pub fn close(&mut self) {
        if let Some(s) = self.session.take() {
            s.detach();
        }
    }

    fn workspace(&self, family: &str) -> Result<crate::fs::Workspace, RpcError> {
        self.require(family)?;
        Ok(self.ctx.executor.workspace.clone())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// Locks, ignoring poisoning: the data behind these locks stays valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServerContext {
    /// Every live session.
    pub fn all_sessions(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions).values().cloned().collect()
    }
}
