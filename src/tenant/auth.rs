//! Authentication: which [`Tenant`] (root, limits) a WebSocket upgrade
//! gets, decided from its bearer token before any JSON-RPC.
//!
//! Tokens are never stored or logged: only their sha256 digests are kept,
//! and a presented token is hashed and compared with every tenant's digest
//! in constant time (all digests are compared, whatever matches).

use super::Tenant;
pub use crate::config::{digest_of_token, parse_digest};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Why an upgrade was refused; the texts are the reference server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing websocket bearer token")]
    Missing,
    #[error("invalid websocket bearer token")]
    Invalid,
    #[error("invalid authorization header")]
    BadHeader,
}

/// One tenant that can be reached with a token: its live state, or (in the
/// front process, which keeps none) its id.
pub struct TenantEntry<T = Arc<Tenant>> {
    /// sha256 of the tenant's token.
    pub digest: [u8; 32],
    pub tenant: T,
}

/// Who may connect.
pub enum Gate<T = Arc<Tenant>> {
    /// No authentication: everyone gets the one workspace.
    Open(T),
    /// A bearer token picks the tenant.
    Tokens(Vec<TenantEntry<T>>),
}

impl<T: Clone> Gate<T> {
    /// Decides an upgrade from its `Authorization` header value.
    pub fn authorize(&self, header: Option<&[u8]>) -> Result<T, AuthError> {
        let entries = match self {
            Gate::Open(tenant) => return Ok(tenant.clone()),
            Gate::Tokens(entries) => entries,
        };
        let header = header.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::BadHeader)?.trim();
        let (scheme, token) = header.split_once(' ').ok_or(AuthError::BadHeader)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::BadHeader);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&T> = None;
        for e in entries {
            if bool::from(e.digest.ct_eq(&digest)) {
                found = Some(&e.tenant);
            }
        }
        found.cloned().ok_or(AuthError::Invalid)
    }

    /// Every tenant (for shutdown and metrics).
    pub fn tenants(&self) -> Vec<T> {
        match self {
            Gate::Open(tenant) => vec![tenant.clone()],
            Gate::Tokens(entries) => entries.iter().map(|e| e.tenant.clone()).collect(),
        }
    }
}

impl From<Arc<Tenant>> for Gate {
    fn from(tenant: Arc<Tenant>) -> Self {
        Gate::Open(tenant)
    }
}
