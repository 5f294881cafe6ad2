//! The environment of a new process (PROTOCOL.md §6.8 and its WASI note).
//!
//! Without an `envPolicy` a command gets exactly the request's `env`. With
//! one, the reference starts from its own process environment; we never
//! expose ours, and start from a small fixed sandbox base instead, then apply
//! the policy's steps unchanged.

use crate::protocol::{EnvInherit, EnvPolicy};
use std::collections::BTreeMap;

/// Names kept by `inherit: "core"`.
const CORE: &[&str] = &[
    "PATH", "SHELL", "TMPDIR", "TEMP", "TMP", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "LOGNAME",
    "USER",
];

/// Names dropped unless `ignoreDefaultExcludes`.
const DEFAULT_EXCLUDES: &[&str] = &["*KEY*", "*SECRET*", "*TOKEN*"];

/// Builds the final environment, sorted by name.
pub fn build(
    env: &BTreeMap<String, String>,
    policy: Option<&EnvPolicy>,
    base: BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let Some(policy) = policy else {
        return env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    };
    let mut vars: BTreeMap<String, String> = match policy.inherit {
        EnvInherit::All => base,
        EnvInherit::None => BTreeMap::new(),
        EnvInherit::Core => base
            .into_iter()
            .filter(|(k, _)| CORE.iter().any(|c| c.eq_ignore_ascii_case(k)))
            .collect(),
    };
    if !policy.ignore_default_excludes {
        vars.retain(|k, _| !DEFAULT_EXCLUDES.iter().any(|g| glob_match(g, k)));
    }
    vars.retain(|k, _| !policy.exclude.iter().any(|g| glob_match(g, k)));
    for (k, v) in &policy.set {
        vars.insert(k.clone(), v.clone());
    }
    if !policy.include_only.is_empty() {
        vars.retain(|k, _| policy.include_only.iter().any(|g| glob_match(g, k)));
    }
    for (k, v) in env {
        vars.insert(k.clone(), v.clone());
    }
    vars.into_iter().collect()
}

/// Case-insensitive glob with `*` and `?`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_uppercase().chars().collect();
    let n: Vec<char> = name.to_ascii_uppercase().chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn policy(inherit: EnvInherit) -> EnvPolicy {
        EnvPolicy {
            inherit,
            ignore_default_excludes: false,
            exclude: vec![],
            set: BTreeMap::new(),
            include_only: vec![],
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn globs() {
        assert!(glob_match("*KEY*", "aws_key_id"));
        assert!(glob_match("CODEX_*", "codex_version"));
        assert!(glob_match("A?C", "abc"));
        assert!(!glob_match("*TOKEN*", "PATH"));
    }

    #[test]
    fn no_policy_means_exactly_env() {
        let env = map(&[("A", "1")]);
        assert_eq!(
            build(&env, None, crate::exec::sandbox_env("/w", "/bin/bash")),
            vec![("A".into(), "1".into())]
        );
    }

    #[test]
    fn policy_steps_apply_in_order() {
        let mut base = crate::exec::sandbox_env("/w", "/bin/bash");
        base.insert("API_KEY".into(), "k".into());
        base.insert("EXTRA".into(), "e".into());
        let mut p = policy(EnvInherit::All);
        p.exclude = vec!["extra".into()];
        p.set = map(&[("FROM_SET", "s")]);
        let out: BTreeMap<_, _> =
            build(&map(&[("TERM", "dumb")]), Some(&p), base).into_iter().collect();
        assert!(!out.contains_key("API_KEY"), "default excludes drop *KEY*");
        assert!(!out.contains_key("EXTRA"), "exclude globs are case-insensitive");
        assert_eq!(out.get("FROM_SET").map(String::as_str), Some("s"));
        assert_eq!(out.get("TERM").map(String::as_str), Some("dumb"));
        assert_eq!(out.get("HOME").map(String::as_str), Some("/w"));
    }

    #[test]
    fn core_and_none_and_include_only() {
        let mut base = crate::exec::sandbox_env("/w", "/bin/bash");
        base.insert("OTHER".into(), "o".into());
        let core: BTreeMap<_, _> =
            build(&BTreeMap::new(), Some(&policy(EnvInherit::Core)), base.clone())
                .into_iter()
                .collect();
        assert!(core.contains_key("PATH") && !core.contains_key("OTHER"));
        assert!(build(&BTreeMap::new(), Some(&policy(EnvInherit::None)), base.clone()).is_empty());
        let mut p = policy(EnvInherit::All);
        p.include_only = vec!["PA*".into()];
        let env = map(&[("ZED", "z")]);
        let out: Vec<String> = build(&env, Some(&p), base).into_iter().map(|(k, _)| k).collect();
        assert_eq!(out, vec!["PATH".to_string(), "ZED".to_string()]);
    }
}
