//! Validated configuration: what the CLI flags turn into, in one step, before
//! anything starts.

use std::time::Duration;

/// Limits applied to every command and connection. Each has a flag.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Linear memory per wasm instance, and the host memory one command
    /// line's shell may hold, in bytes.
    pub max_memory: usize,
    /// Wall-clock time per command; past it the command is stopped (137).
    pub max_wall: Duration,
    /// Output kept per process for `process/read` (the newest bytes).
    pub retained_output: usize,
    /// Total output one command may produce before it is stopped (137).
    pub max_output: u64,
    /// Processes running at once per session.
    pub max_processes: usize,
    /// Largest file `fs/readFile` returns and `fs/writeFile` accepts.
    pub max_file: u64,
    /// Bytes the workspace root (with the guests' `/tmp`) may take; 0 is
    /// no quota.
    pub max_disk: u64,
    /// Bytes written with `process/write` that the command has not read yet.
    pub max_stdin_buffer: usize,
    /// CPU time per command (all its wasm instances together); past it the
    /// command is stopped (137).
    pub max_cpu: Duration,
    /// WebSocket connections open at once (per tenant).
    pub max_connections: usize,
    /// Wasm instances alive at once (per tenant): the engine's slots are
    /// shared by every tenant.
    pub max_instances: usize,
    /// Requests per second per tenant (bursts of twice this are allowed).
    pub requests_per_second: u32,
    /// How long a session outlives its connection, waiting for a resume.
    /// Zero ends it (and its processes) when the connection closes.
    pub detach_grace: Duration,
    /// Resident memory of the tenant's worker process (all its sessions,
    /// commands and host-side work together); past it the worker is ended.
    /// 0: no ceiling beyond `max-memory` per command.
    pub max_tenant_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory: 1 << 30,
            max_wall: Duration::from_secs(30 * 60),
            retained_output: 1 << 20,
            max_output: 1 << 30,
            max_processes: 64,
            max_file: 64 << 20,
            max_disk: 16 << 30,
            max_stdin_buffer: 1 << 20,
            detach_grace: Duration::from_secs(80),
            max_cpu: Duration::from_secs(30 * 60),
            max_connections: 64,
            max_instances: 256,
            requests_per_second: 1000,
            max_tenant_memory: 0,
        }
    }
}

impl Limits {
    /// The largest WebSocket message we accept: a maximal `fs/writeFile`
    /// (base64 grows data by 4/3) plus room for the envelope.
    pub fn max_message(&self) -> usize {
        (self.max_file as usize / 3 + 1) * 4 + 64 * 1024
    }
}

/// How the engine schedules and allocates guests. The defaults suit every
/// host we know of; `serve` and `run` take each as a flag (with the
/// `WES_*` environment variable as its fallback, see `--help`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tuning {
    /// Epoch ticks (5 ms each) of CPU time after which a command moves from
    /// the interactive pool to its tenant's batch pool; `u64::MAX`: never.
    pub demote_ticks: u64,
    /// Nice value of the batch pools' threads (0: the server's priority).
    pub batch_nice: i32,
    /// Instances come from the pooling allocator's pre-reserved slots
    /// (fast starts); off, each instance maps its own memory, for hosts
    /// that limit address space (`ulimit -v`).
    pub pooling: bool,
    /// Instance slots the pool reserves: a one-process server's tenants
    /// share 1,024; a tenant's worker reserves its `max-instances` (at most
    /// 1,024). Each slot reserves about 4 GiB of address space for its
    /// linear memory (wasmtime's default 4 GiB reservation plus guard).
    pub pool_slots: u32,
    /// The memory limit every guest of this engine runs under, when one
    /// limit holds for all of them (a tenant's worker, `run`). With it the
    /// engine may reserve only that much address space per linear memory
    /// instead of 4 GiB ([`Tuning::compact`], or automatically when the
    /// process's address-space limit is too small for the full layout).
    pub memory_limit: Option<u64>,
    /// Reserve address space per linear memory to [`Tuning::memory_limit`]
    /// (the code then checks bounds explicitly, a little slower) even when
    /// the address-space limit would allow the full 4 GiB layout.
    pub compact: bool,
    /// Threads that serve a tenant's worker's connections (`serve
    /// --connection-threads`); 0: one per core.
    pub connection_threads: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            demote_ticks: 4,
            batch_nice: 10,
            pooling: true,
            pool_slots: MAX_POOL_SLOTS,
            memory_limit: None,
            compact: false,
            connection_threads: 1,
        }
    }
}

/// Address space the full layout needs besides the instance slots (the
/// runtime's threads, code and tables; measured VmSize about 1.8 GiB).
pub const FULL_LAYOUT_BASE: u64 = 2 << 30;
/// Address space one instance slot takes in the full layout: a 4 GiB
/// linear-memory reservation, its guard regions and a stack (measured
/// about 4.03 GiB).
pub const FULL_LAYOUT_SLOT: u64 = (4 << 30) + (64 << 20);

impl Tuning {
    /// The per-memory reservation this engine uses: `Some(bytes)` when it
    /// follows the memory limit (rounded up to whole 64 KiB wasm pages),
    /// `None` for wasmtime's full 4 GiB layout. `address_space` is the
    /// process's address-space limit, if any.
    pub fn compact_reservation(&self, address_space: Option<u64>) -> Option<u64> {
        let limit = self.memory_limit?;
        let slots = if self.pooling { u64::from(self.pool_slots) } else { 1 };
        let full = FULL_LAYOUT_BASE.saturating_add(slots.saturating_mul(FULL_LAYOUT_SLOT));
        let too_small = address_space.is_some_and(|a| a < full);
        (self.compact || too_small).then(|| limit.div_ceil(1 << 16).max(1) << 16)
    }
}

/// Where the engine's tools come from (`serve`'s and `run`'s tool flags).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ToolsSpec {
    /// The bundled toolset built by `tools/build.sh` (skipped with a warning
    /// when missing).
    pub bundled: Option<std::path::PathBuf>,
    /// Directories of extra `*.wasm` tools.
    pub dirs: Vec<std::path::PathBuf>,
    /// Where compiled modules are cached.
    pub cache_dir: Option<std::path::PathBuf>,
    pub tuning: Tuning,
}

/// The most instance slots one engine's pool reserves.
pub const MAX_POOL_SLOTS: u32 = 1024;

/// One tenant, validated: everything needed to build it, from the flags or
/// the `--config` file alike (`Tenant::from_spec`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TenantSpec {
    /// The `tenant` label of metrics and logs (`default` without a file).
    pub id: String,
    /// sha256 of the tenant's bearer token; `None`: no authentication.
    pub digest: Option<[u8; 32]>,
    pub workspace: WorkspaceConfig,
    pub limits: Limits,
}

/// A workspace to open: `Workspace::from_config`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WorkspaceConfig {
    /// The host directory of the root.
    pub root: std::path::PathBuf,
    /// Where clients and commands see the root [default: its canonical path].
    pub visible: Option<String>,
    /// Subpaths that `fs/*` calls and redirections may not change.
    pub read_only: Vec<String>,
    /// Bytes the root (with the guests' `/tmp`) may take; 0: no quota.
    pub max_disk: u64,
    /// Where the guests' `/tmp` and the skeleton above the root are made
    /// [default: the system's temporary directory].
    pub scratch_parent: Option<std::path::PathBuf>,
    /// The scratch directory itself, instead of a fresh one in
    /// `scratch_parent`: a worker's, chosen by the front, which removes it
    /// once the worker has exited (a confined worker may empty it but not
    /// remove it from its parent).
    #[serde(default)]
    pub scratch_dir: Option<std::path::PathBuf>,
}

impl WorkspaceConfig {
    /// A root with the defaults: `.git` read-only, no quota, scratch in the
    /// system's temporary directory.
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        Self {
            root: root.into(),
            visible: None,
            read_only: vec![".git".into()],
            max_disk: 0,
            scratch_parent: None,
            scratch_dir: None,
        }
    }
}

/// Parses a sha256 given in hex.
pub fn parse_digest(hex_digest: &str) -> Result<[u8; 32], String> {
    let bytes =
        hex::decode(hex_digest.trim()).map_err(|e| format!("not a hex sha256 digest: {e}"))?;
    bytes.try_into().map_err(|_| "a sha256 digest has 64 hex digits".to_owned())
}

/// The digest of a token read from a file (surrounding whitespace ignored).
pub fn digest_of_token(token: &str) -> Result<[u8; 32], String> {
    use sha2::Digest;
    let token = token.trim();
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(sha2::Sha256::digest(token.as_bytes()).into())
}

/// `DIR` or `HOST_DIR:VISIBLE_PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSpec {
    pub host: std::path::PathBuf,
    pub visible: Option<String>,
}

impl std::str::FromStr for WorkspaceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the workspace path is empty".into());
        }
        match s.rsplit_once(':') {
            Some((host, visible)) if visible.starts_with('/') && !host.is_empty() => {
                Ok(Self { host: host.into(), visible: Some(visible.to_owned()) })
            }
            Some((_, visible))
                if !visible.is_empty() && !visible.starts_with('/') && s.contains(":/") =>
            {
                Err(format!("the visible path `{visible}` must be absolute"))
            }
            _ => Ok(Self { host: s.into(), visible: None }),
        }
    }
}

/// Parses sizes such as `512M`, `1G`, `64k` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = s[i..].to_ascii_lowercase();
            let mult: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                _ => return Err(format!("unknown size unit in `{s}` (use K, M or G)")),
            };
            (&s[..i], mult)
        }
        None => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 512M, 1G, 65536)"))?;
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses durations such as `30s`, `15m`, `1h30m`, `2h 5m`, `500ms` or
/// plain seconds (`90`), with humantime's units; refuses a duration too
/// large to represent instead of overflowing.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{s}` is too large a number of seconds"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}; examples: 30s, 15m, 1h30m, 500ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservation_follows_the_memory_limit_only_when_it_must() {
        let t = Tuning { pool_slots: 8, memory_limit: Some(100_000), ..Tuning::default() };
        // No address-space limit, or one large enough: the full layout.
        assert_eq!(t.compact_reservation(None), None);
        assert_eq!(t.compact_reservation(Some(FULL_LAYOUT_BASE + 8 * FULL_LAYOUT_SLOT)), None);
        // Too small: the limit, rounded up to whole wasm pages.
        assert_eq!(t.compact_reservation(Some(8 << 30)), Some(2 << 16));
        // Asked for.
        let asked = Tuning { compact: true, ..t.clone() };
        assert_eq!(asked.compact_reservation(None), Some(2 << 16));
        // No single limit (one engine for several tenants): never.
        let shared = Tuning { memory_limit: None, compact: true, ..t };
        assert_eq!(shared.compact_reservation(Some(1 << 30)), None);
    }

    #[test]
    fn workspace_specs() {
        let p = |s: &str| s.parse::<WorkspaceSpec>();
        assert_eq!(p("/srv/ws"), Ok(WorkspaceSpec { host: "/srv/ws".into(), visible: None }));
        assert_eq!(
            p("/srv/t1:/workspace"),
            Ok(WorkspaceSpec { host: "/srv/t1".into(), visible: Some("/workspace".into()) })
        );
        assert_eq!(p("./ws"), Ok(WorkspaceSpec { host: "./ws".into(), visible: None }));
        assert!(p("").is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2h 5m"), Ok(Duration::from_secs(7500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("99999999999999999999999").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("3 weeks"), Ok(Duration::from_secs(3 * 7 * 86400)));
    }
}
