//! The admin API: a separate listener (`--admin-listen`), for operators
//! only, behind its own bearer token (`--admin-token`; there is no admin
//! API without one). JSON over HTTP:
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/tenants` | every tenant: its worker (pid, memory, CPU, connections), drained or not, starts and crashes |
//! | `GET /v1/tenants/{tenant}/sessions` | the tenant's sessions, attached or not, with their processes and usage |
//! | `POST /v1/tenants/{tenant}/sessions/{session}/processes/{process}/terminate` | stops one process as `process/terminate` does |
//! | `POST /v1/tenants/{tenant}/drain` | refuses the tenant's new connections (503) and drains its worker: commands get the shutdown grace, then its connections close |
//! | `POST /v1/tenants/{tenant}/undrain` | accepts the tenant's connections again |
//!
//! The front answers from what it holds (workers, their usage, counters)
//! and asks the tenant's worker, over the control channel, for what only
//! the worker knows (sessions and processes). A tenant with no worker has
//! no sessions.

use crate::session::Registry;
use crate::tenant::Tenant;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// The most processes one session lists (running ones first); the rest
/// are counted. Keeps an answer well inside one control message.
const MAX_LISTED: usize = 200;

/// What the front asks a worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Sessions and their processes.
    Sessions,
    /// Stop one process.
    Terminate { session: String, process: String },
}

/// A worker's answer to `request`, as JSON.
pub fn answer(request: &AdminRequest, tenant: &Arc<Tenant>, registry: &Registry) -> Value {
    match request {
        AdminRequest::Sessions => sessions(tenant, registry),
        AdminRequest::Terminate { session, process } => {
            let Some(session) = registry.find(tenant, session) else {
                return json!({"error": "no such session"});
            };
            match session.process_by_id(process) {
                None => json!({"error": "no such process"}),
                Some(p) => {
                    let running = p.is_running();
                    if running {
                        p.request_stop(crate::process::Stop::Terminate);
                    }
                    json!({"running": running})
                }
            }
        }
    }
}

fn sessions(tenant: &Arc<Tenant>, registry: &Registry) -> Value {
    let mut list = Vec::new();
    for s in registry.of(tenant) {
        let mut procs = s.processes_snapshot();
        // Running first, then newest first.
        procs.sort_by_key(|p| (!p.is_running(), std::cmp::Reverse(p.started)));
        let total = procs.len();
        let listed: Vec<Value> = procs
            .iter()
            .take(MAX_LISTED)
            .map(|p| {
                json!({
                    "id": p.id,
                    "command": p.command,
                    "running": p.is_running(),
                    "tty": p.tty,
                    "usage": p.usage_now(),
                })
            })
            .collect();
        list.push(json!({
            "id": s.id,
            "attached": s.is_attached(),
            "running": s.running(),
            "processes": listed,
            "unlisted": total.saturating_sub(MAX_LISTED),
        }));
    }
    json!({ "tenant": tenant.id, "sessions": list })
}

/// Serves the admin API on `listener` for the holders of `gate`'s token.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    gate: crate::tenant::Gate<()>,
    front: Arc<super::front::Front>,
) {
    use axum::routing::{get, post};
    let state = AdminState { front, gate: Arc::new(gate) };
    let app = axum::Router::new()
        .route("/v1/tenants", get(tenants))
        .route("/v1/tenants/{tenant}/sessions", get(tenant_sessions))
        .route(
            "/v1/tenants/{tenant}/sessions/{session}/processes/{process}/terminate",
            post(terminate),
        )
        .route("/v1/tenants/{tenant}/drain", post(drain))
        .route("/v1/tenants/{tenant}/undrain", post(undrain))
        .fallback(|| async { reply(StatusCode::NOT_FOUND, json!({"error": "no such endpoint"})) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the admin API stopped");
    }
}

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Clone)]
struct AdminState {
    front: Arc<super::front::Front>,
    gate: Arc<crate::tenant::Gate<()>>,
}

fn reply(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

/// Every request carries the admin token, or is refused (401) and logged.
async fn authorize(
    State(state): State<AdminState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header = request.headers().get(axum::http::header::AUTHORIZATION);
    match state.gate.authorize(header.map(|v| v.as_bytes())) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            tracing::warn!(reason = %e, path = %request.uri().path(), "admin request refused");
            reply(StatusCode::UNAUTHORIZED, json!({"error": e.to_string()}))
        }
    }
}

/// The 404 for a tenant that is not in force, or `None` for one that is.
fn unknown(state: &AdminState, tenant: &str) -> Option<Response> {
    if state.front.tenant_ids().iter().any(|t| t == tenant) {
        None
    } else {
        Some(reply(StatusCode::NOT_FOUND, json!({"error": format!("no tenant `{tenant}`")})))
    }
}

async fn tenants(State(state): State<AdminState>) -> Response {
    let mut list = Vec::new();
    for id in state.front.tenant_ids() {
        let mut t = state.front.tenant_summary(&id).await;
        if t["worker"].is_object() {
            let s = state.front.ask(&id, AdminRequest::Sessions).await;
            let sessions = s.as_ref().and_then(|s| s["sessions"].as_array());
            t["sessions"] = json!(sessions.map_or(0, Vec::len));
            t["processes_running"] = json!(
                sessions.map_or(0, |l| l.iter().filter_map(|s| s["running"].as_u64()).sum::<u64>())
            );
        } else {
            t["sessions"] = json!(0);
            t["processes_running"] = json!(0);
        }
        list.push(t);
    }
    reply(StatusCode::OK, json!({ "tenants": list }))
}

async fn tenant_sessions(State(state): State<AdminState>, Path(tenant): Path<String>) -> Response {
    if let Some(r) = unknown(&state, &tenant) {
        return r;
    }
    match state.front.ask(&tenant, AdminRequest::Sessions).await {
        Some(v) => reply(StatusCode::OK, v),
        // No worker: no sessions.
        None => reply(StatusCode::OK, json!({"tenant": tenant, "sessions": []})),
    }
}

async fn terminate(
    State(state): State<AdminState>,
    Path((tenant, session, process)): Path<(String, String, String)>,
) -> Response {
    if let Some(r) = unknown(&state, &tenant) {
        return r;
    }
    let request = AdminRequest::Terminate { session, process };
    match state.front.ask(&tenant, request).await {
        Some(v) if v.get("error").is_some() => reply(StatusCode::NOT_FOUND, v),
        Some(v) => {
            tracing::info!(tenant, answer = %v, "process terminated by the operator");
            reply(StatusCode::OK, v)
        }
        None => reply(StatusCode::NOT_FOUND, json!({"error": "the tenant has no sessions"})),
    }
}

async fn drain(State(state): State<AdminState>, Path(tenant): Path<String>) -> Response {
    if let Some(r) = unknown(&state, &tenant) {
        return r;
    }
    state.front.drain_tenant(&tenant).await;
    reply(StatusCode::OK, json!({"tenant": tenant, "drained": true}))
}

async fn undrain(State(state): State<AdminState>, Path(tenant): Path<String>) -> Response {
    if let Some(r) = unknown(&state, &tenant) {
        return r;
    }
    let was = state.front.undrain_tenant(&tenant);
    reply(StatusCode::OK, json!({"tenant": tenant, "drained": false, "was_drained": was}))
}
