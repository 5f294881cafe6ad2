//! [`Tenant`]: the live state of one tenant, shared by all its connections:
//! the executor (its workspace, limits and the engine), what clients are told
//! about the environment, the counters its limits are checked against, its
//! request budget and its own threads for long commands. Its sessions are
//! the session layer's (`session::Registry`).

use crate::exec::{Executor, GuestPool};
use crate::protocol::{EnvironmentInfo, ShellInfo};
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

/// One tenant: a root, its limits, and what it uses now.
pub struct Tenant {
    /// The tenant's id (the `tenant` label of metrics; `default` without a
    /// config file).
    pub id: String,
    pub executor: Executor,
    /// What `initialize` and `environment/info` tell clients.
    pub env_info: EnvironmentInfo,
    /// Connections open now, against `max-connections`.
    pub open_connections: AtomicUsize,
    /// Processes running now, against `max-processes`.
    pub running_processes: AtomicUsize,
    /// Wasm instances alive now, against `max-instances`.
    pub live_instances: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Request budget (token bucket), against `requests-per-second`.
    rate: Mutex<RateBucket>,
    /// This tenant's own threads for its commands.
    pub guests: GuestPool,
}

/// A token bucket: `rate` tokens a second, up to twice that in a burst.
struct RateBucket {
    tokens: f64,
    last: std::time::Instant,
}

impl Tenant {
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
        let nice = executor.runtime.tuning.batch_nice;
        Self {
            id: "default".into(),
            executor,
            env_info,
            open_connections: Default::default(),
            running_processes: Default::default(),
            live_instances: Default::default(),
            rate: Mutex::new(RateBucket { tokens: burst, last: std::time::Instant::now() }),
            guests: GuestPool::new("default", nice).unwrap_or_else(|e| {
                // Without a pool of its own, commands share the server's threads.
                tracing::warn!(error = %e, "could not start a guest thread pool");
                GuestPool::current()
            }),
        }
    }

    /// Builds a tenant from its spec: opens its workspace and sets it up
    /// with the engine every tenant shares.
    pub fn from_spec(
        spec: &crate::config::TenantSpec,
        runtime: std::sync::Arc<crate::exec::Runtime>,
    ) -> std::io::Result<Self> {
        let workspace = crate::fs::Workspace::from_config(&spec.workspace)?;
        let executor = Executor { runtime, workspace, limits: spec.limits.clone() };
        Ok(Self::new(executor).with_id(&spec.id))
    }

    /// Names the tenant (for metrics and logs).
    pub fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_owned();
        self
    }

    /// Sets the gauges read at scrape time: disk used against the quota,
    /// wasm instances alive.
    pub fn observe(&self) {
        let m = &self.executor.runtime.metrics;
        let label = crate::metrics::Metrics::tenant(&self.id);
        let quota = self.executor.workspace.quota();
        let (used, limit) = quota.map_or((0, 0), |q| (q.used(), q.limit()));
        m.disk_used.get_or_create(&label).set(i64::try_from(used).unwrap_or(i64::MAX));
        m.disk_quota.get_or_create(&label).set(i64::try_from(limit).unwrap_or(i64::MAX));
        let live = self.live_instances.load(std::sync::atomic::Ordering::Relaxed);
        m.instances_live.get_or_create(&label).set(i64::try_from(live).unwrap_or(i64::MAX));
    }

    /// Takes one request from the budget; `false` when it is spent.
    pub fn take_request(&self) -> bool {
        let rate = f64::from(self.executor.limits.requests_per_second);
        let mut b = self.rate.lock().unwrap_or_else(|p| p.into_inner());
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
