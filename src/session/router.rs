//! The router: every request of a connection comes in through
//! [`Handler::request`], which checks the tenant's request budget, decodes
//! the params for the method, calls its handler, and counts `fs/*` results
//! in the metrics. Params are decoded before the handshake is checked, as
//! the reference does.

use super::handler::Handler;
use super::{Reply, fs};
use crate::protocol::*;
use crate::rpc::{self, RpcError};
use serde_json::Value;

impl Handler {
    /// Answers one request.
    pub async fn request(&mut self, method: &str, params: Option<Value>) -> Reply {
        if !self.tenant.take_request() {
            return Reply::Now(
                Err(RpcError::invalid_request(format!(
                    "rate limit exceeded: more than {} requests per second (requests-per-second)",
                    self.tenant.executor.limits.requests_per_second
                ))),
                None,
            );
        }
        let reply = match dispatch(self, method, params).await {
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
                    tenant: self.tenant.id.clone(),
                    method: method.to_owned(),
                    code,
                };
                self.tenant.executor.runtime.metrics.fs_calls.get_or_create(&labels).inc();
            }
        }
        reply
    }
}

/// Decodes `params` for `method` and calls its handler; an unknown method
/// is an error.
pub(super) async fn dispatch(
    h: &mut Handler,
    method: &str,
    params: Option<Value>,
) -> Result<Reply, RpcError> {
    use crate::protocol::method as m;
    Ok(match method {
        m::INITIALIZE => {
            let p: InitializeParams = rpc::params(params)?;
            Reply::from(h.initialize(p))
        }
        m::ENVIRONMENT_INFO => {
            h.require("environment info")?;
            rpc::to_value(&h.tenant.env_info).into()
        }
        m::ENVIRONMENT_STATUS => {
            h.require("environment status")?;
            rpc::to_value(EnvironmentStatusResponse { status: "ready" }).into()
        }
        m::PROCESS_START => {
            let p: ProcessStartParams = rpc::params(params)?;
            let s = h.require("exec")?.clone();
            s.process_start(p)?
        }
        m::PROCESS_READ => {
            let p: ProcessReadParams = rpc::params(params)?;
            let s = h.require("exec")?.clone();
            s.process_read(p)?
        }
        m::PROCESS_WRITE => {
            let p: ProcessWriteParams = rpc::params(params)?;
            h.require("exec")?.process_write(p).into()
        }
        m::PROCESS_SIGNAL => {
            let p: ProcessSignalParams = rpc::params(params)?;
            h.require("exec")?.process_signal(p)
        }
        m::PROCESS_TERMINATE => {
            let p: ProcessTerminateParams = rpc::params(params)?;
            h.require("exec")?.process_terminate(p)
        }
        m::FS_READ_FILE => {
            let p: FsPathParams = rpc::params(params)?;
            Reply::Raw(
                fs::fs_read_file(h.workspace("filesystem")?, p, h.tenant.executor.limits.max_file)
                    .await,
            )
        }
        m::FS_WRITE_FILE => {
            let p: FsWriteFileParams = rpc::params(params)?;
            fs::fs_write_file(h.workspace("filesystem")?, p, h.tenant.executor.limits.max_file)
                .await
                .into()
        }
        m::FS_CREATE_DIRECTORY => {
            let p: FsCreateDirectoryParams = rpc::params(params)?;
            fs::fs_create_directory(h.workspace("filesystem")?, p).await.into()
        }
        m::FS_GET_METADATA => {
            let p: FsPathParams = rpc::params(params)?;
            fs::fs_get_metadata(h.workspace("filesystem")?, p).await.into()
        }
        m::FS_READ_DIRECTORY => {
            let p: FsPathParams = rpc::params(params)?;
            fs::fs_read_directory(h.workspace("filesystem")?, p).await.into()
        }
        m::FS_REMOVE => {
            let p: FsRemoveParams = rpc::params(params)?;
            fs::fs_remove(h.workspace("filesystem")?, p).await.into()
        }
        m::FS_COPY => {
            let p: FsCopyParams = rpc::params(params)?;
            fs::fs_copy(h.workspace("filesystem")?, p).await.into()
        }
        m::FS_CANONICALIZE => {
            let p: FsPathParams = rpc::params(params)?;
            fs::fs_canonicalize(h.workspace("filesystem")?, p).await.into()
        }
        other => return Err(RpcError::method_not_found(other)),
    })
}
