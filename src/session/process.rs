//! Handlers of the `process/*` methods: they act on a session's process
//! table, start commands through the shell (which runs argv-form commands as
//! tools) and turn what the process engine answers into wire responses.

use super::session::{EXITED_TTL, Session};
use super::{AfterReply, Reply, env, lock};
use crate::exec::{CommandSpec, PipeReader, Sink, Stdin, StreamKind};
use crate::metrics::Metrics;
use crate::process::{Output, Owner, Process, StartAck, Started, Stop, stdin_slots};
use crate::protocol::*;
use crate::rpc::{self, RpcError};
use crate::tenant::Tenant;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

impl Session {
    pub(super) fn process_start(
        self: &Arc<Self>,
        p: ProcessStartParams,
    ) -> Result<Reply, RpcError> {
        if p.argv.is_empty() {
            return Err(RpcError::invalid_params("argv must not be empty"));
        }
        let exec = &self.tenant.executor;
        let program = crate::shell::resolve(exec, &p.argv).ok_or_else(RpcError::spawn_not_found)?;
        let cwd = exec.workspace.resolve_cwd(&p.cwd).map_err(|e| match e {
            crate::fs::FsError::Uri(u) => RpcError::from(u),
            other => RpcError::internal(RpcError::from(other).message),
        })?;
        let limits = &exec.limits;
        let (stdin_tx, stdin) = if p.tty || p.pipe_stdin {
            let (tx, rx) = mpsc::channel(stdin_slots(limits.max_stdin_buffer));
            (Some(tx), Stdin::Pipe(PipeReader::from_channel(rx)))
        } else {
            (None, Stdin::Closed)
        };
        let proc = {
            let mut table = lock(&self.processes);
            // Forgetting expired entries scans the table: at most once a second.
            {
                let mut last = lock(&self.last_prune);
                if last.elapsed() >= Duration::from_secs(1) {
                    table.retain(|_, pr| !pr.expired(EXITED_TTL));
                    *last = std::time::Instant::now();
                }
            }
            if table.contains_key(&p.process_id) {
                return Err(RpcError::invalid_request(format!(
                    "process {} already exists",
                    p.process_id
                )));
            }
            let max = limits.max_processes;
            if let Err(running) = self.tenant.running_processes.fetch_update(
                Ordering::AcqRel,
                Ordering::Acquire,
                |n| (n < max).then_some(n + 1),
            ) {
                return Err(RpcError::invalid_request(format!(
                    "process limit reached: {running} processes are running \
                     (max-processes is {max})"
                )));
            }
            let proc = Process::new(
                p.process_id.clone(),
                p.tty,
                stdin_tx,
                limits.retained_output,
                limits.max_output,
                crate::process::summary(&p.argv),
            );
            table.insert(p.process_id.clone(), proc.clone());
            proc
        };
        let base = crate::exec::sandbox_env(
            exec.workspace.visible_root(),
            &self.tenant.env_info.shell.path,
        );
        let envs = env::build(&p.env, p.env_policy.as_ref(), base);
        // 16 × 32 KiB (`OUTPUT_CHUNK`) of output waits for the session at most.
        let (out_tx, out_rx) = mpsc::channel(16);
        let (stdout, stderr) = if p.tty {
            let s = Sink::Output { tx: out_tx.clone(), stream: StreamKind::Pty };
            (s.clone(), s)
        } else {
            (
                Sink::Output { tx: out_tx.clone(), stream: StreamKind::Stdout },
                Sink::Output { tx: out_tx.clone(), stream: StreamKind::Stderr },
            )
        };
        let spec = CommandSpec {
            argv: p.argv,
            arg0: p.arg0,
            env: envs,
            cwd,
            stdin,
            stdout,
            stderr,
            tty: p.tty,
        };
        let executor = exec.clone();
        // Counted (above) as running until the command ends or is dropped.
        let running = RunningGuard(self.tenant.clone());
        // Boxed: moved several times before it first runs.
        let runner = Box::pin(async move {
            let _running = running;
            crate::shell::run_program(&executor, program, spec).await
        });
        let (go_tx, go_rx) = oneshot::channel::<StartAck>();
        let tenant = &self.tenant;
        let metrics = &tenant.executor.runtime.metrics;
        let owner = Owner {
            notifier: self.clone(),
            session_id: self.id.clone(),
            interactive: tenant.executor.runtime.interactive(),
            batch: tenant.guests.handle(),
            tenant: tenant.id.clone(),
            metrics: metrics.clone(),
            max_wall: limits.max_wall,
            max_cpu: limits.max_cpu,
            instances: crate::exec::TenantInstances {
                live: tenant.live_instances.clone(),
                max: limits.max_instances as u64,
            },
            demote_after: crate::exec::engine::ticks(tenant.executor.runtime.tuning.demote_ticks),
        };
        // Counted before it can finish (its end decrements the gauge).
        metrics.processes_started.get_or_create(&Metrics::tenant(&tenant.id)).inc();
        metrics.processes_running.get_or_create(&Metrics::tenant(&tenant.id)).inc();
        proc.spawn(owner, runner, Output { rx: out_rx, note: out_tx }, go_rx);
        tracing::debug!(session_id = %self.id, process_id = %p.process_id, "process started");
        // The engine acknowledges the start after the command's first poll;
        // the answer on the wire is made here.
        Ok(Reply::Handoff(Box::new(move |responder| {
            let ack: StartAck = Box::new(move |started: Started| {
                let answer =
                    ProcessStartResponse { process_id: started.process_id, sandbox_type: "none" };
                responder.answer(rpc::to_value(answer))
            });
            let _ = go_tx.send(ack);
        })))
    }

    pub(super) fn process_read(self: &Arc<Self>, p: ProcessReadParams) -> Result<Reply, RpcError> {
        let proc = self.process(&p.process_id).ok_or_else(|| {
            RpcError::invalid_request(format!("unknown process id {}", p.process_id))
        })?;
        let wait = Duration::from_millis(p.wait_ms.unwrap_or(0).min(300_000));
        let after = p.after_seq.unwrap_or(0);
        let fut = async move { rpc::to_value(proc.read(after, p.max_bytes, wait).await) };
        Ok(Reply::Later(Box::pin(fut)))
    }

    pub(super) fn process_write(&self, p: ProcessWriteParams) -> Result<Value, RpcError> {
        if p.write_id.is_empty() {
            return Err(RpcError::invalid_params("writeId must not be empty"));
        }
        let data = crate::b64::decode(p.chunk.as_bytes()).map_err(|e| {
            RpcError::invalid_params(format!("process/write requires valid base64 chunk: {e}"))
        })?;
        let status = match self.process(&p.process_id) {
            None => WriteStatus::UnknownProcess,
            Some(proc) => proc
                .write(Bytes::from(data), p.write_id, self.tenant.executor.limits.max_stdin_buffer)
                .map_err(RpcError::invalid_request)?,
        };
        rpc::to_value(ProcessWriteResponse { status })
    }

    pub(super) fn process_signal(&self, p: ProcessSignalParams) -> Reply {
        let SignalName::Interrupt = p.signal;
        let after: Option<AfterReply> = self.process(&p.process_id).map(|proc| {
            Box::new(move || {
                proc.request_stop(Stop::Interrupt);
            }) as AfterReply
        });
        Reply::Now(rpc::to_value(Empty {}), after)
    }

    pub(super) fn process_terminate(&self, p: ProcessTerminateParams) -> Reply {
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

/// Keeps a process counted in its tenant's `running_processes` while the
/// command future lives (it is dropped when the command ends or is killed).
struct RunningGuard(Arc<Tenant>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running_processes.fetch_sub(1, Ordering::Relaxed);
    }
}
