//! Per-connection protocol state: the handshake, the session that owns the
//! process table, and one handler per method (named after it).
//!
//! The connection layer hands every decoded request to
//! [`Connection::request`] and sends back the [`Reply`]. Params are decoded
//! before the handshake is checked, as the reference does. Wire types are
//! translated to domain calls here; `exec` and `fs` never see JSON.

mod env;
mod process;

use crate::exec::{CommandSpec, Executor, PipeReader, Sink, Stdin, StreamKind};
use crate::protocol::*;
use crate::rpc::{self, RpcError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::future::BoxFuture;
use process::{Process, Stop};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a closed process stays readable (and its id reserved).
const EXITED_TTL: Duration = Duration::from_secs(80);

/// What every connection shares: the executor and what we tell clients.
pub struct ServerContext {
    pub executor: Executor,
    pub env_info: EnvironmentInfo,
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
        Self { executor, env_info }
    }
}

/// Runs after the reply has been queued (starts a process's pump, delivers
/// a stop), so that the reply precedes the notifications it causes.
pub type AfterReply = Box<dyn FnOnce() + Send>;

/// The answer to one request.
pub enum Reply {
    Now(Result<Value, RpcError>, Option<AfterReply>),
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
            (method::INITIALIZED, Stage::New) => NotificationOutcome::Close("initialized before initialize"),
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
        match self.dispatch(method, params).await {
            Ok(reply) => reply,
            Err(e) => Reply::Now(Err(e), None),
        }
    }

    async fn dispatch(&mut self, method: &str, params: Option<Value>) -> Result<Reply, RpcError> {
        use crate::protocol::method as m;
        let fs_call = |s: &Arc<Session>| s.ctx.executor.workspace.clone();
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
                let ws = fs_call(self.require("filesystem")?);
                let max = self.ctx.executor.limits.max_file;
                blocking(move || {
                    let data = ws.read_file(&p.path, p.follow_symlinks.unwrap_or(true), max)?;
                    Ok(FsReadFileResponse { data_base64: B64.encode(data) })
                })
                .await
                .into()
            }
            m::FS_WRITE_FILE => {
                let p: FsWriteFileParams = rpc::params(params)?;
                let follow = p.follow_symlinks.unwrap_or(true);
                let ws = fs_call(self.require("filesystem")?);
                let max = self.ctx.executor.limits.max_file;
                blocking(move || {
                    let data = B64.decode(p.data_base64.as_bytes()).map_err(|e| {
                        crate::fs::FsError::Invalid(format!("fs/writeFile requires valid base64 dataBase64: {e}"))
                    })?;
                    if data.len() as u64 > max {
                        return Err(crate::fs::FsError::Limit(format!(
                            "data is {} bytes, over the fs/writeFile limit of {max} bytes (max-file)",
                            data.len()
                        )));
                    }
                    ws.write_file(&p.path, &data, follow)?;
                    Ok(Empty {})
                })
                .await
                .into()
            }
            m::FS_CREATE_DIRECTORY => {
                let p: FsCreateDirectoryParams = rpc::params(params)?;
                let ws = fs_call(self.require("filesystem")?);
                blocking(move || ws.create_directory(&p.path, p.recursive.unwrap_or(true)).map(|()| Empty {}))
                    .await
                    .into()
            }
            m::FS_GET_METADATA => {
                let p: FsPathParams = rpc::params(params)?;
                let ws = fs_call(self.require("filesystem")?);
                blocking(move || {
                    let md = ws.get_metadata(&p.path, p.follow_symlinks.unwrap_or(true))?;
                    Ok(FsMetadataResponse {
                        is_directory: md.is_directory,
                        is_file: md.is_file,
                        is_symlink: md.is_symlink,
                        size: md.size,
                        created_at_ms: md.created_at_ms,
                        modified_at_ms: md.modified_at_ms,
                    })
                })
                .await
                .into()
            }
            m::FS_READ_DIRECTORY => {
                let p: FsPathParams = rpc::params(params)?;
                let ws = fs_call(self.require("filesystem")?);
                blocking(move || {
                    let entries = ws
                        .read_directory(&p.path)?
                        .into_iter()
                        .map(|e| FsDirectoryEntry {
                            file_name: e.file_name,
                            is_directory: e.is_directory,
                            is_file: e.is_file,
                        })
                        .collect();
                    Ok(FsReadDirectoryResponse { entries })
                })
                .await
                .into()
            }
            m::FS_REMOVE => {
                let p: FsRemoveParams = rpc::params(params)?;
                let ws = fs_call(self.require("filesystem")?);
                blocking(move || {
                    ws.remove(&p.path, p.recursive.unwrap_or(true), p.force.unwrap_or(true)).map(|()| Empty {})
                })
                .await
                .into()
            }
            m::FS_COPY => {
                let p: FsCopyParams = rpc::params(params)?;
                let ws = fs_call(self.require("filesystem")?);
                blocking(move || ws.copy(&p.source_path, &p.destination_path, p.recursive).map(|()| Empty {}))
                    .await
                    .into()
            }
            m::FS_CANONICALIZE => {
                let p: FsPathParams = rpc::params(params)?;
                let ws = fs_call(self.require("filesystem")?);
                blocking(move || ws.canonicalize(&p.path).map(|path| FsCanonicalizeResponse { path })).await.into()
            }
            other => return Err(RpcError::method_not_found(other)),
        })
    }

    fn initialize(&mut self, p: InitializeParams) -> Result<Value, RpcError> {
        if self.stage != Stage::New {
            return Err(RpcError::invalid_request("initialize may only be sent once per connection"));
        }
        if let Some(id) = p.resume_session_id {
            // Sessions end with their connection, so there is nothing to resume.
            return Err(RpcError::invalid_request(format!("unknown session id {id}")));
        }
        let session = Arc::new(Session {
            id: uuid::Uuid::new_v4().to_string(),
            ctx: self.ctx.clone(),
            outbound: Mutex::new(Some(self.outbound.clone())),
            processes: Mutex::new(HashMap::new()),
        });
        tracing::info!(session_id = %session.id, client = %p.client_name, "session started");
        let result = InitializeResponse { session_id: session.id.clone(), environment_info: self.ctx.env_info.clone() };
        self.session = Some(session);
        self.stage = Stage::Initializing;
        rpc::to_value(result)
    }

    /// The connection is gone: stop everything the session started.
    pub fn close(&mut self) {
        if let Some(s) = self.session.take() {
            s.close();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// Runs a filesystem operation on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<Value, RpcError>
where
    T: Serialize + Send + 'static,
    F: FnOnce() -> Result<T, crate::fs::FsError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => rpc::to_value(v),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => {
            tracing::error!(error = %e, "filesystem task failed");
            Err(RpcError::internal("internal error"))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A session: the processes one client started, and where their
/// notifications go.
pub struct Session {
    pub id: String,
    ctx: Arc<ServerContext>,
    /// The attached connection's queue; `None` once detached.
    outbound: Mutex<Option<mpsc::Sender<String>>>,
    processes: Mutex<HashMap<String, Arc<Process>>>,
}

impl Session {
    /// Sends a notification to the attached connection, if any (dropped when
    /// detached, as PROTOCOL.md §5 specifies).
    async fn notify<P: Serialize>(&self, method: &str, params: P) {
        let tx = lock(&self.outbound).clone();
        let Some(tx) = tx else { return };
        match serde_json::to_string(&Notification { method, params }) {
            Ok(text) => {
                let _ = tx.send(text).await;
            }
            Err(e) => tracing::error!(error = %e, "could not serialize a notification"),
        }
    }

    fn process_finished(&self) {}

    fn process(&self, id: &str) -> Option<Arc<Process>> {
        lock(&self.processes).get(id).cloned()
    }

    fn close(&self) {
        *lock(&self.outbound) = None;
        let procs: Vec<_> = lock(&self.processes).drain().map(|(_, p)| p).collect();
        for p in procs {
            p.abort();
        }
        tracing::info!(session_id = %self.id, "session closed");
    }

    fn process_start(self: &Arc<Self>, p: ProcessStartParams) -> Result<Reply, RpcError> {
        if p.argv.is_empty() {
            return Err(RpcError::invalid_params("argv must not be empty"));
        }
        let exec = &self.ctx.executor;
        let cwd = exec.workspace.resolve_cwd(&p.cwd).map_err(|e| match e {
            crate::fs::FsError::Uri(u) => RpcError::from(u),
            other => RpcError::internal(RpcError::from(other).message),
        })?;
        let limits = &exec.limits;
        let (stdin_tx, stdin) = if p.tty || p.pipe_stdin {
            let (tx, rx) = mpsc::channel(process::stdin_slots(limits.max_stdin_buffer));
            (Some(tx), Stdin::Pipe(PipeReader::from_channel(rx)))
        } else {
            (None, Stdin::Closed)
        };
        let proc = {
            let mut table = lock(&self.processes);
            table.retain(|_, pr| !pr.expired(EXITED_TTL));
            if table.contains_key(&p.process_id) {
                return Err(RpcError::invalid_request(format!("process {} already exists", p.process_id)));
            }
            let running = table.values().filter(|pr| pr.is_running()).count();
            if running >= limits.max_processes {
                return Err(RpcError::invalid_request(format!(
                    "process limit reached: {running} processes are running (max-processes is {})",
                    limits.max_processes
                )));
            }
            let proc = Process::new(p.process_id.clone(), p.tty, stdin_tx, limits.retained_output, limits.max_output);
            table.insert(p.process_id.clone(), proc.clone());
            proc
        };
        let base = env::sandbox_base(exec.workspace.visible_root(), &self.ctx.env_info.shell.path);
        let envs = env::build(&p.env, p.env_policy.as_ref(), base);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (stdout, stderr) = if p.tty {
            let s = Sink::Output { tx: out_tx.clone(), stream: StreamKind::Pty };
            (s.clone(), s)
        } else {
            (
                Sink::Output { tx: out_tx.clone(), stream: StreamKind::Stdout },
                Sink::Output { tx: out_tx.clone(), stream: StreamKind::Stderr },
            )
        };
        let spec = CommandSpec { argv: p.argv, arg0: p.arg0, env: envs, cwd, stdin, stdout, stderr, tty: p.tty };
        let executor = exec.clone();
        let runner = async move { executor.run_command(spec).await };
        let (go_tx, go_rx) = oneshot::channel();
        proc.spawn(self.clone(), runner, out_rx, out_tx, limits.max_wall, go_rx);
        tracing::info!(session_id = %self.id, process_id = %p.process_id, "process started");
        let result = rpc::to_value(ProcessStartResponse { process_id: p.process_id, sandbox_type: "none" });
        Ok(Reply::Now(result, Some(Box::new(move || {
            let _ = go_tx.send(());
        }))))
    }

    fn process_read(self: &Arc<Self>, p: ProcessReadParams) -> Result<Reply, RpcError> {
        let proc = self
            .process(&p.process_id)
            .ok_or_else(|| RpcError::invalid_request(format!("unknown process id {}", p.process_id)))?;
        let wait = Duration::from_millis(p.wait_ms.unwrap_or(0).min(300_000));
        let after = p.after_seq.unwrap_or(0);
        let fut = async move { rpc::to_value(proc.read(after, p.max_bytes, wait).await) };
        Ok(Reply::Later(Box::pin(fut)))
    }

    fn process_write(&self, p: ProcessWriteParams) -> Result<Value, RpcError> {
        if p.write_id.is_empty() {
            return Err(RpcError::invalid_params("writeId must not be empty"));
        }
        let data = B64
            .decode(p.chunk.as_bytes())
            .map_err(|e| RpcError::invalid_params(format!("process/write requires valid base64 chunk: {e}")))?;
        let status = match self.process(&p.process_id) {
            None => WriteStatus::UnknownProcess,
            Some(proc) => proc
                .write(Bytes::from(data), p.write_id, self.ctx.executor.limits.max_stdin_buffer)
                .map_err(RpcError::invalid_request)?,
        };
        rpc::to_value(ProcessWriteResponse { status })
    }

    fn process_signal(&self, p: ProcessSignalParams) -> Reply {
        let SignalName::Interrupt = p.signal;
        let after: Option<AfterReply> = self.process(&p.process_id).map(|proc| {
            Box::new(move || {
                proc.request_stop(Stop::Interrupt);
            }) as AfterReply
        });
        Reply::Now(rpc::to_value(Empty {}), after)
    }

    fn process_terminate(&self, p: ProcessTerminateParams) -> Reply {
        match self.process(&p.process_id) {
            Some(proc) if proc.is_running() => {
                let after: AfterReply = Box::new(move || {
                    proc.request_stop(Stop::Terminate);
                });
                Reply::Now(rpc::to_value(ProcessTerminateResponse { running: true }), Some(after))
            }
            _ => rpc::to_value(ProcessTerminateResponse { running: false }).into(),
        }
    }
}
