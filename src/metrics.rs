//! Prometheus metrics, served at `GET /metrics` in the text format.
//!
//! One [`Metrics`] per server, shared through the runtime. Every family
//! carries a `tenant` label (`default` for a single-workspace server) so a
//! multi-tenant host can be watched per tenant.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

/// How a process ended (the `outcome` label, in lower case).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// It exited by itself (any status).
    Exit,
    /// `process/terminate`, or its session ended.
    Terminated,
    /// `process/signal interrupt` or Ctrl-C on a terminal.
    Interrupted,
    /// A wasm trap.
    Trap,
    /// A limit stopped it: `max-memory`, `max-cpu`, `max-wall`, `max-output`.
    MaxMemory,
    MaxCpu,
    MaxWall,
    MaxOutput,
}

impl Outcome {
    /// Whether a limit ended the process.
    pub fn is_limit(self) -> bool {
        matches!(self, Outcome::MaxMemory | Outcome::MaxCpu | Outcome::MaxWall | Outcome::MaxOutput)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Exit => "exit",
            Outcome::Terminated => "terminated",
            Outcome::Interrupted => "interrupted",
            Outcome::Trap => "trap",
            Outcome::MaxMemory => "max_memory",
            Outcome::MaxCpu => "max_cpu",
            Outcome::MaxWall => "max_wall",
            Outcome::MaxOutput => "max_output",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The HTTP status of the refused upgrade (`401`, `403`, `429`, …).
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub tenant: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FsLabels {
    pub tenant: String,
    pub method: String,
    /// `ok`, or the JSON-RPC error code.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` (loaded from the on-disk cache) or `miss` (compiled).
    pub result: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~100 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 4.0, 11))
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    pub connections_open: Family<TenantLabels, Gauge>,
    pub connections: Family<TenantLabels, Counter>,
    pub processes_started: Family<TenantLabels, Counter>,
    pub processes_finished: Family<OutcomeLabels, Counter>,
    pub processes_running: Family<TenantLabels, Gauge>,
    pub command_seconds: Family<TenantLabels, Histogram, fn() -> Histogram>,
    /// Upgrades refused, by HTTP status (401 bad token, 429 limit, …).
    pub refusals: Family<RefusalLabels, Counter>,
    /// Bytes the tenant's workspace occupies, and its quota (0: none); set
    /// when the metrics are read.
    pub disk_used: Family<TenantLabels, Gauge>,
    pub disk_quota: Family<TenantLabels, Gauge>,
    /// Wasm instances alive now (the engine's slots in use).
    pub instances_live: Family<TenantLabels, Gauge>,
    pub output_bytes: Family<TenantLabels, Counter>,
    pub fs_calls: Family<FsLabels, Counter>,
    pub module_cache: Family<CacheLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wasm_exec_server");
        let m = Metrics {
            connections_open: Family::default(),
            connections: Family::default(),
            processes_started: Family::default(),
            processes_finished: Family::default(),
            processes_running: Family::default(),
            command_seconds: Family::new_with_constructor(latency_histogram),
            refusals: Family::default(),
            disk_used: Family::default(),
            disk_quota: Family::default(),
            instances_live: Family::default(),
            output_bytes: Family::default(),
            fs_calls: Family::default(),
            module_cache: Family::default(),
            registry: Registry::default(),
        };
        registry.register("connections_open", "Connections open now", m.connections_open.clone());
        registry.register("connections", "Connections accepted", m.connections.clone());
        registry.register("processes_started", "Processes started", m.processes_started.clone());
        registry.register(
            "processes_finished",
            "Processes finished, by outcome",
            m.processes_finished.clone(),
        );
        registry.register(
            "processes_running",
            "Processes running now",
            m.processes_running.clone(),
        );
        registry.register(
            "command_duration_seconds",
            "Time from process/start to exit",
            m.command_seconds.clone(),
        );
        registry.register(
            "upgrade_refusals",
            "WebSocket upgrades refused, by HTTP status",
            m.refusals.clone(),
        );
        registry.register(
            "disk_used_bytes",
            "Bytes the workspace occupies on disk (with the commands' /tmp)",
            m.disk_used.clone(),
        );
        registry.register(
            "disk_quota_bytes",
            "The workspace's disk quota (0: none)",
            m.disk_quota.clone(),
        );
        registry.register(
            "instances_live",
            "Wasm instances alive now (the engine's slots in use)",
            m.instances_live.clone(),
        );
        let build: Family<VersionLabels, Gauge> = Family::default();
        build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "The server's version", build);
        registry.register("output_bytes", "Bytes of command output", m.output_bytes.clone());
        registry.register("fs_calls", "fs/* calls by method and result code", m.fs_calls.clone());
        registry.register(
            "module_cache",
            "Module loads from the compiled-module cache",
            m.module_cache.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a refused upgrade.
    pub fn refused(&self, code: u16) {
        self.refusals.get_or_create(&RefusalLabels { code: code.to_string() }).inc();
    }

    pub fn tenant(tenant: &str) -> TenantLabels {
        TenantLabels { tenant: tenant.to_owned() }
    }
}
