//! Tenants: each a root, a token and limits, none able to see or starve
//! another.
//!
//! - [`state`]: [`Tenant`], the live state one tenant's connections share.
//! - [`auth`]: which tenant a WebSocket upgrade gets, from its bearer token.
//! - [`config`]: the `--config` file of tenants.
//!
//! Tokens are never stored or logged: only their sha256 digests are kept.

pub mod auth;
pub mod config;
pub mod state;

pub use auth::{AuthError, Gate, TenantEntry, digest_of_token, parse_digest};
pub use state::Tenant;
