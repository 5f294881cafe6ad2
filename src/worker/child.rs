//! A tenant's worker process (`wasm-exec-server worker`, started by the
//! front, never by hand): receives its [`WorkerSpec`] on stdin (the control
//! socket), loads the engine, opens the workspace, confines itself, then
//! serves the connections the front hands it until told to stop.
//!
//! The order matters. Landlock applies to the thread that asks and to the
//! threads it starts afterwards, so it is applied on the main thread before
//! the async runtime and the guest pools start; the seccomp filter is
//! installed on every thread at once (`TSYNC`) once they run. Only the epoch
//! ticker and the allocator's release thread start before Landlock; neither
//! opens a file.

use super::confine::{self, Status};
use super::control::{self, Channel, FromWorker, ToWorker};
use super::{Mode, WorkerSpec, hooks, load_runtime};
use crate::exec::{Executor, Runtime};
use crate::fs::Workspace;
use crate::session::Registry;
use crate::tenant::{Gate, Tenant};
use anyhow::{Context, Result, bail};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Descriptors a worker may hold: its connections, their commands' open
/// files and preopens, the module cache's maps.
const OPEN_FILES: u64 = 65_536;

/// How often an idle worker checks whether it may be retired.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// The worker's `main`: returns when the front says stop or goes away.
pub fn main() -> Result<()> {
    let control = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("the worker's stdin is not its control socket")?;
    let spec = match control::recv_blocking::<ToWorker>(control.as_fd())
        .context("cannot read the worker's start message")?
    {
        Some(ToWorker::Start(spec)) => *spec,
        Some(other) => bail!("the first control message was {other:?}, not Start"),
        None => return Ok(()),
    };
    if spec.test_hooks && cfg!(debug_assertions) {
        hooks::enable();
    }
    let id = spec.tenant.id.clone();
    let runtime = load_runtime(&spec.tools)?;
    let workspace = Workspace::from_config(&spec.tenant.workspace).with_context(|| {
        format!("tenant `{id}`: cannot open root {}", spec.tenant.workspace.root.display())
    })?;
    let mut status = Status::default();
    if spec.mode != Mode::Off {
        let mut rw = vec![workspace.host_root()];
        if let Some(scratch) = workspace.scratch() {
            rw.push(scratch.base());
        }
        let applied = confine::landlock(&rw, &mut status);
        check(spec.mode, applied, "Landlock")?;
        if spec.mode == Mode::Required && !status.landlock_full {
            bail!("--confinement required, but Landlock is {}", status.landlock);
        }
    }
    let rt = crate::release::runtime(spec.tools.tuning.connection_threads)
        .context("cannot start the async runtime")?;
    rt.block_on(serve(spec, runtime, workspace, control, status))
}

/// Fails under `required`; logs and goes on under `auto`.
fn check(mode: Mode, result: Result<(), String>, what: &str) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if mode == Mode::Required => bail!("--confinement required: {what}: {e}"),
        Err(e) => {
            tracing::warn!(error = %e, "{what} is not applied to this worker");
            Ok(())
        }
    }
}

async fn serve(
    spec: WorkerSpec,
    runtime: Runtime,
    workspace: Workspace,
    control: OwnedFd,
    mut status: Status,
) -> Result<()> {
    let limits = spec.tenant.limits.clone();
    let executor = Executor { runtime: Arc::new(runtime), workspace, limits };
    let tenant = Arc::new(Tenant::new(executor).with_id(&spec.tenant.id));
    // The shared guest threads start now, so the filter below covers them.
    let _ = tenant.executor.runtime.interactive();
    if spec.mode != Mode::Off {
        check(spec.mode, confine::limits(OPEN_FILES), "process limits")?;
        check(spec.mode, confine::seccomp(&mut status), "seccomp")?;
    } else {
        status.landlock = "off".into();
    }
    let channel = Arc::new(Channel::new(control).context("control socket")?);
    channel.send(&FromWorker::Ready { confinement: status.to_string() }, None).await?;
    tracing::info!(tenant = %tenant.id, confinement = %status, "worker ready");

    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(64);
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    // Each handed connection that ends is reported, so the front drops its
    // copy of the descriptor (kept to send a close frame should this
    // worker die).
    tokio::spawn({
        let channel = channel.clone();
        async move {
            while let Some(seq) = closed_rx.recv().await {
                let _ = channel.send(&FromWorker::Closed { seq }, None).await;
            }
        }
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(None::<String>);
    let received = Arc::new(AtomicU64::new(0));
    let registry = Registry::new();
    // The control socket: connections, metrics and admin requests, stop.
    tokio::spawn({
        let (channel, tenant, received) = (channel.clone(), tenant.clone(), received.clone());
        let registry = registry.clone();
        async move {
            loop {
                match channel.recv::<ToWorker>().await {
                    Ok(Some((ToWorker::Connection { seq }, Some(fd)))) => {
                        received.fetch_add(1, Ordering::AcqRel);
                        let closed = closed_tx.clone();
                        match adopt(fd) {
                            Ok(tcp) => {
                                let _ = conn_tx.send(Handed { tcp, seq, closed }).await;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "a handed connection is unusable");
                                let _ = closed.send(seq);
                            }
                        }
                    }
                    Ok(Some((ToWorker::Metrics, _))) => {
                        tenant.observe();
                        let text = tenant.executor.runtime.metrics.encode();
                        let _ = channel.send(&FromWorker::Metrics(text), None).await;
                    }
                    Ok(Some((ToWorker::Admin { id, request }, _))) => {
                        let reply = super::admin::answer(&request, &tenant, &registry).to_string();
                        let _ = channel.send(&FromWorker::Admin { id, reply }, None).await;
                    }
                    Ok(Some((ToWorker::Connection { .. } | ToWorker::Start(_), _))) => {}
                    Ok(Some((ToWorker::Shutdown { reason }, _))) => {
                        let _ = stop_tx.send(Some(reason));
                        break;
                    }
                    Ok(None) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        tracing::info!("the front process is gone; stopping");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket failed");
                        break;
                    }
                }
            }
            stop_tx.send_if_modified(|r| {
                r.get_or_insert_with(|| crate::server::SHUTTING_DOWN.to_owned());
                true
            });
        }
    });
    // Idle: no connection and no session for the detach grace. The front
    // retires the worker only if no connection is on its way.
    tokio::spawn({
        let (channel, tenant, registry) = (channel.clone(), tenant.clone(), registry.clone());
        let linger = limits_linger(&tenant);
        async move {
            let mut idle = Duration::ZERO;
            loop {
                tokio::time::sleep(IDLE_CHECK).await;
                let busy = tenant.open_connections.load(Ordering::Acquire) > 0
                    || !registry.all().is_empty();
                idle = if busy { Duration::ZERO } else { idle + IDLE_CHECK };
                if idle >= linger {
                    let received = received.load(Ordering::Acquire);
                    let _ = channel.send(&FromWorker::Idle { received }, None).await;
                    idle = Duration::ZERO;
                }
            }
        }
    });
    let stop = async move {
        tokio::select! {
            r = stop_rx.wait_for(|s| s.is_some()) => {
                r.ok().and_then(|r| r.clone()).unwrap_or_default()
            }
            () = signals() => crate::server::SHUTTING_DOWN.to_owned(),
        }
    };
    let listener = crate::server::HandedListener { rx: conn_rx };
    crate::server::run_on(
        listener,
        Arc::new(Gate::Open(tenant)),
        registry,
        stop,
        spec.shutdown_grace,
    )
    .await?;
    Ok(())
}

/// A connection handed over by the front. When it ends, the socket is shut
/// down (the front still holds a copy of the descriptor, so closing ours
/// alone would not end the TCP connection) and the front is told.
struct Handed {
    tcp: tokio::net::TcpStream,
    seq: u64,
    closed: tokio::sync::mpsc::UnboundedSender<u64>,
}

impl Drop for Handed {
    fn drop(&mut self) {
        let _ = rustix::net::shutdown(&self.tcp, rustix::net::Shutdown::Both);
        let _ = self.closed.send(self.seq);
    }
}

impl crate::server::Peer for Handed {
    fn peer(&self) -> std::net::SocketAddr {
        crate::server::Peer::peer(&self.tcp)
    }
}

impl tokio::io::AsyncRead for Handed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Handed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// How long an idle worker stays: the detach grace, at least a second.
fn limits_linger(tenant: &Tenant) -> Duration {
    tenant.executor.limits.detach_grace.max(Duration::from_secs(1))
}

/// A connection's descriptor as a tokio stream.
fn adopt(fd: OwnedFd) -> std::io::Result<tokio::net::TcpStream> {
    let tcp = std::net::TcpStream::from(fd);
    tcp.set_nonblocking(true)?;
    let tcp = tokio::net::TcpStream::from_std(tcp)?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// SIGTERM or SIGINT (a terminal's Ctrl-C reaches the whole process group):
/// drain as the front does.
async fn signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
