//! The `git` command line: its global options (`-C`, `--no-pager`, …), the
//! table of subcommands served, and the hand-off of one subcommand to the
//! blocking pool. The subcommands themselves are in [`super::status`],
//! [`super::history`] and [`super::diff`]; the repository in [`super::repo`].

use super::repo::{NOT_A_REPO, open};
use crate::fs::Workspace;
use crate::hostcmd::{Context, Status};
use std::path::PathBuf;

/// Subcommands served; everything else is refused.
const SUPPORTED: &[&str] = &[
    "status",
    "diff",
    "log",
    "show",
    "rev-parse",
    "rev-list",
    "branch",
    "ls-files",
    "tag",
    "remote",
    "config",
];

/// One subcommand on the blocking pool: (stdout, stderr, status).
fn dispatch(ws: Workspace, cwd_rel: PathBuf, sub: &str, args: &[String]) -> (Vec<u8>, String, i32) {
    if !SUPPORTED.contains(&sub) {
        return (
            Vec::new(),
            format!("git: '{sub}' is not supported in this sandbox (read-only git)\n"),
            1,
        );
    }
    let mut git = match open(ws, cwd_rel) {
        Ok(g) => g,
        Err(f) => return (Vec::new(), f.msg, f.code),
    };
    let r = match sub {
        "status" => super::status::status(&mut git, args),
        "ls-files" => super::status::ls_files(&mut git, args),
        "diff" => super::diff::diff(&mut git, args),
        "log" => super::history::log(&mut git, args),
        "show" => super::history::show(&mut git, args),
        "rev-parse" => super::history::rev_parse(&mut git, args),
        "rev-list" => super::history::rev_list(&mut git, args),
        "branch" => super::history::branch(&mut git, args),
        "tag" => super::history::tag(&mut git, args),
        "remote" => super::history::remote(&mut git, args),
        _ => super::history::config(&mut git, args),
    };
    match r {
        Ok(code) => (git.out, String::new(), code),
        Err(f) => (git.out, f.msg, f.code),
    }
}

const HELP: &str = "usage: git [-C <path>] <command> [<args>]\n\n\
This sandbox serves read-only git from the host:\n\
   status, diff, log, show, rev-parse, rev-list, branch, ls-files, tag, remote, config (reading)\n\
Commands that change the repository are not supported.\n";

pub async fn run(cx: &Context<'_>, args: &[String]) -> Status {
    let mut cwd = cx.cwd.to_owned();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "--no-pager"
            | "-P"
            | "--no-optional-locks"
            | "--no-replace-objects"
            | "--literal-pathspecs"
            | "-p"
            | "--paginate" => i += 1,
            "-c" => i += 2,
            "-C" => {
                let Some(d) = args.get(i + 1) else {
                    cx.err("error: switch `C' requires a value\n").await;
                    return Ok(129);
                };
                let joined = if d.starts_with('/') { d.clone() } else { format!("{cwd}/{d}") };
                cwd = crate::fs::path::normalize_absolute(&joined);
                i += 2;
            }
            "--version" | "version" => {
                cx.out(b"git version 2.47.0 (read-only, gitoxide)\n").await?;
                return Ok(0);
            }
            "--help" | "help" | "-h" => {
                cx.out(HELP.as_bytes()).await?;
                return Ok(0);
            }
            _ if a.starts_with("--git-dir")
                || a.starts_with("--work-tree")
                || a.starts_with("--namespace") =>
            {
                cx.err(&format!(
                    "git: option '{a}' is not supported in this sandbox (read-only git)\n"
                ))
                .await;
                return Ok(1);
            }
            _ if a.starts_with('-') => {
                cx.err(&format!("unknown option: {a}\n{HELP}")).await;
                return Ok(129);
            }
            _ => break,
        }
    }
    let Some(sub) = args.get(i).cloned() else {
        cx.out(HELP.as_bytes()).await?;
        return Ok(1);
    };
    let rest = args[i + 1..].to_vec();
    let Some(cwd_rel) = cx.workspace.relative(&cwd) else {
        cx.err(&format!("fatal: {NOT_A_REPO}\n")).await;
        return Ok(128);
    };
    if cx
        .workspace
        .dir()
        .metadata(if cwd_rel.as_os_str().is_empty() { ".".as_ref() } else { cwd_rel.as_path() })
        .is_err()
    {
        cx.err(&format!("fatal: cannot change to '{cwd}': No such file or directory\n")).await;
        return Ok(128);
    }
    let ws = cx.workspace.clone();
    let joined = tokio::task::spawn_blocking(move || dispatch(ws, cwd_rel, &sub, &rest)).await;
    let (out, err, code) =
        joined.unwrap_or_else(|_| (Vec::new(), "fatal: git failed unexpectedly\n".into(), 128));
    cx.out(&out).await?;
    if !err.is_empty() {
        cx.err(&err).await;
    }
    Ok(code)
}
