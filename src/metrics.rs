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

/// How a process ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    /// It exited by itself (any status).
    Exit,
    /// `process/terminate`, or its session ended.
    Terminated,
    /// `process/signal interrupt` or Ctrl-C on a terminal.
    Interrupted,
    /// A limit stopped it: memory, wall-clock time or output.
    Limit,
    /// A wasm trap.
    Trap,
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
    pub command_seconds: Family<TenantLabels, Histogram, fn() -> Histogram>,
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
            command_seconds: Family::new_with_constructor(latency_histogram),
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
            "command_seconds",
            "Time from process/start to exit",
            m.command_seconds.clone(),
        );
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

    pub fn tenant(tenant: &str) -> TenantLabels {
        TenantLabels { tenant: tenant.to_owned() }
    }
}
