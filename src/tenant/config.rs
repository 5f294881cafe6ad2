//! The `--config` file: tenants, each with a token (or its sha256), a root,
//! the path where the root is visible, read-only areas and limits.
//!
//! ```toml
//! [defaults]                 # limits for every tenant (each key optional)
//! max_memory = "512M"
//! max_wall = "10m"
//!
//! [[tenant]]
//! id = "alice"
//! token_sha256 = "…"         # or token_file = "/etc/wes/alice.token"
//! root = "/srv/tenants/alice"
//! visible = "/workspace"     # default: the root's canonical path
//! read_only = [".git"]       # default: [".git"]
//! [tenant.limits]
//! max_processes = 8
//! ```

use crate::config::{
    Limits, TenantSpec, WorkspaceConfig, digest_of_token, parse_digest, parse_duration, parse_size,
};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub defaults: LimitOverrides,
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    #[serde(default)]
    pub token_sha256: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub root: PathBuf,
    #[serde(default)]
    pub visible: Option<String>,
    #[serde(default)]
    pub read_only: Option<Vec<String>>,
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// Every limit, optional; sizes and durations as strings (`512M`, `30s`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub max_memory: Option<String>,
    pub max_wall: Option<String>,
    pub max_cpu: Option<String>,
    pub max_output: Option<String>,
    pub retained_output: Option<String>,
    pub max_processes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_instances: Option<usize>,
    pub max_file: Option<String>,
    pub max_disk: Option<String>,
    pub max_stdin_buffer: Option<String>,
    pub requests_per_second: Option<u32>,
    pub detach_grace: Option<String>,
    pub max_tenant_memory: Option<String>,
}

impl LimitOverrides {
    /// Applies the set keys on top of `base`.
    pub fn apply(&self, mut base: Limits) -> Result<Limits, String> {
        let size = |v: &Option<String>| v.as_deref().map(parse_size).transpose();
        let dur = |v: &Option<String>| v.as_deref().map(parse_duration).transpose();
        if let Some(v) = size(&self.max_memory)? {
            base.max_memory = v as usize;
        }
        if let Some(v) = dur(&self.max_wall)? {
            base.max_wall = v;
        }
        if let Some(v) = dur(&self.max_cpu)? {
            base.max_cpu = v;
        }
        if let Some(v) = size(&self.max_output)? {
            base.max_output = v;
        }
        if let Some(v) = size(&self.retained_output)? {
            base.retained_output = v as usize;
        }
        if let Some(v) = self.max_processes {
            base.max_processes = v.max(1);
        }
        if let Some(v) = self.max_connections {
            base.max_connections = v.max(1);
        }
        if let Some(v) = self.max_instances {
            base.max_instances = v.max(1);
        }
        if let Some(v) = size(&self.max_file)? {
            base.max_file = v;
        }
        if let Some(v) = size(&self.max_disk)? {
            base.max_disk = v;
        }
        if let Some(v) = size(&self.max_stdin_buffer)? {
            base.max_stdin_buffer = v as usize;
        }
        if let Some(v) = self.requests_per_second {
            base.requests_per_second = v.max(1);
        }
        if let Some(v) = dur(&self.detach_grace)? {
            base.detach_grace = v;
        }
        if let Some(v) = size(&self.max_tenant_memory)? {
            base.max_tenant_memory = v;
        }
        Ok(base)
    }
}

impl ConfigFile {
    /// The tenants of the file, validated: limits applied over `base` (the
    /// flags) and the file's `[defaults]`, tokens read from their files. The
    /// error names the tenant and what to fix.
    pub fn tenant_specs(&self, base: Limits) -> Result<Vec<TenantSpec>, String> {
        let defaults = self.defaults.apply(base).map_err(|e| format!("[defaults]: {e}"))?;
        let mut specs = Vec::new();
        for t in &self.tenants {
            let limits =
                t.limits.apply(defaults.clone()).map_err(|e| format!("tenant `{}`: {e}", t.id))?;
            let digest = match (&t.token_sha256, &t.token_file) {
                (Some(hex), _) => parse_digest(hex),
                (None, Some(file)) => std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))
                    .and_then(|t| digest_of_token(&t)),
                (None, None) => Err("no token".into()),
            }
            .map_err(|e| format!("tenant `{}`: {e}", t.id))?;
            let workspace = WorkspaceConfig {
                root: t.root.clone(),
                visible: t.visible.clone(),
                read_only: t.read_only.clone().unwrap_or_else(|| vec![".git".into()]),
                max_disk: limits.max_disk,
                scratch_parent: None,
                scratch_dir: None,
            };
            specs.push(TenantSpec { id: t.id.clone(), digest: Some(digest), workspace, limits });
        }
        Ok(specs)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: ConfigFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if cfg.tenants.is_empty() {
            return Err("the config file defines no [[tenant]]".into());
        }
        let mut ids = std::collections::HashSet::new();
        for t in &cfg.tenants {
            if !ids.insert(&t.id) {
                return Err(format!("tenant `{}` is defined twice", t.id));
            }
            if t.token_sha256.is_some() == t.token_file.is_some() {
                return Err(format!(
                    "tenant `{}` needs exactly one of token_sha256 and token_file",
                    t.id
                ));
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tenants_and_applies_limits() {
        let cfg = ConfigFile::parse(
            r#"
            [defaults]
            max_memory = "256M"
            [[tenant]]
            id = "a"
            token_sha256 = "00"
            root = "/srv/a"
            [tenant.limits]
            max_processes = 3
            max_wall = "5s"
            "#,
        )
        .expect("parses");
        let t = &cfg.tenants[0];
        let limits = t
            .limits
            .apply(cfg.defaults.apply(Limits::default()).expect("defaults"))
            .expect("limits");
        assert_eq!(limits.max_memory, 256 << 20);
        assert_eq!(limits.max_processes, 3);
        assert_eq!(limits.max_wall, std::time::Duration::from_secs(5));
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(ConfigFile::parse("").is_err());
        assert!(ConfigFile::parse("[[tenant]]\nid='a'\nroot='/x'\n").is_err(), "no token");
        assert!(
            ConfigFile::parse("[[tenant]]\nid='a'\nroot='/x'\ntoken_sha256='0'\nbogus=1\n")
                .is_err()
        );
        let dup = "[[tenant]]\nid='a'\nroot='/x'\ntoken_sha256='0'\n\
                   [[tenant]]\nid='a'\nroot='/y'\ntoken_sha256='1'\n";
        assert!(ConfigFile::parse(dup).is_err());
    }
}
