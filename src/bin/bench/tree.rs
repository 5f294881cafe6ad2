//! Tools on a real tree (issue 17's first target): the agent's search and
//! listing commands run natively with `bash -c` and through the server with
//! `bash -lc`, side by side over the same tree, each the median of three
//! runs after one untimed run; printed as native time, ours and the ratio,
//! and whether the outputs match.
//!
//! The tree is copied from the cargo registry's unpacked sources (crates in
//! name order, up to the size asked for), or generated with a fixed seed
//! when there are none.

use crate::sections::{Target, run};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};
use wasm_exec_server::client::Client;

/// The commands, as agents write them.
const COMMANDS: &[&str] = &[
    r#"grep -rn "fn main" . | wc -l"#,
    r#"grep -rl unsafe --include="*.rs" . | wc -l"#,
    r#"rg -n "impl Drop" . | wc -l"#,
    r#"rg -j1 -n "impl Drop" . | wc -l"#,
    r#"find . -name "*.rs" | wc -l"#,
    r#"find . -type f -size +20k | wc -l"#,
    r#"wc -l $(find . -name "*.md") | tail -1"#,
    r#"cat $(find . -name "*.toml") | sort | uniq -c | sort -rn | head -3"#,
    r#"du -sk ."#,
];

/// Makes `dir` (once): about `mb` megabytes of sources.
fn build_tree(dir: &Path, mb: u64) -> Result<(usize, u64)> {
    if dir.join(".complete").exists() {
        return count(dir);
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let registry = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("registry/src"));
    let mut crates: Vec<std::path::PathBuf> = registry
        .and_then(|r| std::fs::read_dir(r).ok())
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|index| std::fs::read_dir(index.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    crates.sort();
    let budget = mb << 20;
    let mut total = 0u64;
    for c in crates {
        if total >= budget {
            break;
        }
        let ok = std::process::Command::new("cp").arg("-r").arg(&c).arg(dir).status()?;
        if ok.success() {
            total += du_bytes(&dir.join(c.file_name().context("crate name")?));
        }
    }
    if total == 0 {
        generate(dir, budget)?;
    }
    std::fs::write(dir.join(".complete"), b"")?;
    count(dir)
}

fn du_bytes(p: &Path) -> u64 {
    let out = std::process::Command::new("du").args(["-sb"]).arg(p).output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A tree of pseudo-sources from a fixed seed (no registry on this machine).
fn generate(dir: &Path, budget: u64) -> Result<()> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = ["let", "fn", "impl", "unsafe", "Drop", "main", "self", "match", "return", "pub"];
    let mut total = 0u64;
    let mut i = 0;
    while total < budget {
        let sub = dir.join(format!("crate{:03}/src", i / 40));
        std::fs::create_dir_all(&sub)?;
        let ext = ["rs", "rs", "rs", "md", "toml"][(next() % 5) as usize];
        let mut text = String::new();
        for _ in 0..(next() % 600 + 20) {
            for _ in 0..(next() % 10 + 1) {
                text += words[(next() % words.len() as u64) as usize];
                text.push(' ');
            }
            text.push('\n');
        }
        total += text.len() as u64;
        std::fs::write(sub.join(format!("f{i}.{ext}")), text)?;
        i += 1;
    }
    Ok(())
}

/// Files and bytes under `dir`.
fn count(dir: &Path) -> Result<(usize, u64)> {
    let out = std::process::Command::new("find").arg(dir).args(["-type", "f"]).output()?;
    let files = String::from_utf8_lossy(&out.stdout).lines().count();
    Ok((files, du_bytes(dir)))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The section's own table, in markdown.
pub async fn tree(t: &Target, mb: u64) -> Result<String> {
    let dir = t.dir.join("tree");
    eprintln!("[tree] building a tree of about {mb} MB in {}", dir.display());
    let (files, bytes) = build_tree(&dir, mb)?;
    let cwd = format!("{}/tree", t.cwd);
    let c = Client::connect(&t.url).await?;
    let mut out = format!(
        "\n### Tools on a real tree: {files} files, {} MB\n\n\
         | command | native | ours | ratio | output |\n|---|---|---|---|---|\n",
        bytes >> 20
    );
    for cmd in COMMANDS {
        eprintln!("[tree] {cmd}");
        let native = |cmd: &str| {
            let t0 = Instant::now();
            let o = std::process::Command::new("bash").args(["-c", cmd]).current_dir(&dir).output();
            (t0.elapsed(), o.map(|o| o.stdout).unwrap_or_default())
        };
        let has_native = !cmd.starts_with("rg") || which("rg");
        if !has_native {
            eprintln!(
                "[tree] no native rg on this host: install ripgrep (apt-get install ripgrep) \
                 for the native figure and the ratio"
            );
        }
        let mut native_times = vec![];
        let mut native_out = vec![];
        if has_native {
            native(cmd);
            for _ in 0..3 {
                let (d, o) = native(cmd);
                native_times.push(d);
                native_out = o;
            }
        }
        let argv = vec!["/bin/bash".to_owned(), "-lc".to_owned(), (*cmd).to_owned()];
        run(&c, "tree", &argv, &cwd, false, false).await?;
        let mut ours = vec![];
        let mut ours_out = vec![];
        for _ in 0..3 {
            let r = run(&c, "tree", &argv, &cwd, true, false).await?;
            ours.push(r.total);
            ours_out = r.stdout;
        }
        let ours = median(ours);
        let row = if has_native {
            let native = median(native_times);
            let same =
                if normalize(&native_out) == normalize(&ours_out) { "same" } else { "differs" };
            format!(
                "| `{}` | {:.0} ms | {:.0} ms | {:.1}× | {same} |\n",
                cmd.replace('|', "\\|"),
                native.as_secs_f64() * 1e3,
                ours.as_secs_f64() * 1e3,
                ours.as_secs_f64() / native.as_secs_f64()
            )
        } else {
            format!(
                "| `{}` | (no native rg: install ripgrep) | {:.0} ms | – | – |\n",
                cmd.replace('|', "\\|"),
                ours.as_secs_f64() * 1e3
            )
        };
        out += &row;
    }
    Ok(out)
}

fn which(prog: &str) -> bool {
    std::process::Command::new("bash")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Outputs compared without leading or trailing blanks per line (`wc`
/// pads its counts differently from one implementation to the next).
fn normalize(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}
