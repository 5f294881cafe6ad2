//! [`Handler`]: the protocol state of one connection. It holds the
//! handshake's stage and the session the connection is attached to, checks
//! the session it is attached to; requests go through the router
//! ([`super::router`]), which checks the tenant's request budget and calls
//! the method's handler.

use super::NotificationOutcome;
use super::session::{Registry, Session};
use crate::protocol::*;
use crate::rpc::{self, RpcError};
use crate::tenant::Tenant;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    New,
    /// `initialize` answered, `initialized` not yet received.
    Initializing,
    Ready,
}

/// The protocol state of one connection: where the handshake is, and the
/// session it is attached to.
pub struct Handler {
    pub(super) tenant: Arc<Tenant>,
    /// Every live session, for resume.
    registry: Arc<Registry>,
    stage: Stage,
    session: Option<Arc<Session>>,
    /// The writer's queue, given to the session for notifications.
    outbound: mpsc::Sender<crate::rpc::Queued>,
}

impl Handler {
    pub fn new(
        tenant: Arc<Tenant>,
        registry: Arc<Registry>,
        outbound: mpsc::Sender<crate::rpc::Queued>,
    ) -> Self {
        Self { tenant, registry, stage: Stage::New, session: None, outbound }
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

    pub(super) fn require(&self, family: &str) -> Result<&Arc<Session>, RpcError> {
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

    pub(super) fn initialize(&mut self, p: InitializeParams) -> Result<Value, RpcError> {
        if self.stage != Stage::New {
            return Err(RpcError::invalid_request(
                "initialize may only be sent once per connection",
            ));
        }
        let session = match p.resume_session_id {
            Some(id) => {
                let found = self.registry.find(&self.tenant, &id);
                let session = found
                    .ok_or_else(|| RpcError::invalid_request(format!("unknown session id {id}")))?;
                session.attach(self.outbound.clone())?;
                session
            }
            None => Session::new(self.tenant.clone(), self.registry.clone(), self.outbound.clone()),
        };
        tracing::info!(session_id = %session.id, client = %p.client_name, "session started");
        let result = InitializeResponse {
            session_id: session.id.clone(),
            environment_info: self.tenant.env_info.clone(),
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

    /// The client closed saying it will not resume: end the session and
    /// its processes now.
    pub fn end_session(&mut self) {
        if let Some(s) = self.session.take() {
            tracing::info!(session_id = %s.id, "client ended the session");
            s.close();
        }
    }

    pub(super) fn workspace(&self, family: &str) -> Result<crate::fs::Workspace, RpcError> {
        self.require(family)?;
        Ok(self.tenant.executor.workspace.clone())
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.close();
    }
}
