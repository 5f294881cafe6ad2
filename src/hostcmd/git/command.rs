//! The `git` command line: its global options (`-C`, `--no-pager`, …), the
//! table of subcommands served, and the hand-off of one subcommand to the
//! blocking pool. The subcommands themselves are in [`super::status`],
//! [`super::history`] and [`super::diff`]; the repository in [`super::repo`].

use super::repo::{NOT_A_REPO, Stop, open};
use crate::fs::Workspace;
use crate::hostcmd::{Context, Status};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    "grep",
    "blame",
    "tag",
    "remote",
    "config",
];

/// How one subcommand ended.
enum Ran {
    /// stdout, stderr, status.
    Done(Vec<u8>, String, i32),
    /// It stopped early ([`Stop`]); its output is dropped.
    Stopped(Stop),
}

/// One subcommand on the blocking pool, holding at most `limit` bytes of
/// output and file data, and stopping when `cancel` is set.
fn dispatch(
    ws: Workspace,
    cwd_rel: PathBuf,
    sub: &str,
    args: &[String],
    (limit, cancel, cpu): (usize, Arc<AtomicBool>, crate::exec::BlockingMeter),
) -> Ran {
    if !SUPPORTED.contains(&sub) {
        return Ran::Done(
            Vec::new(),
            format!("git: '{sub}' is not supported in this sandbox (read-only git)\n"),
            1,
        );
    }
    let mut git = match open(ws, cwd_rel) {
        Ok(g) => g,
        Err(f) => return Ran::Done(Vec::new(), f.msg, f.code),
    };
    git.limit = limit;
    git.cancel = cancel;
    let mut cpu = cpu;
    cpu.charge();
    git.cpu = Some(cpu);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match sub {
        "status" => super::status::status(&mut git, args),
        "ls-files" => super::status::ls_files(&mut git, args),
        "grep" => super::grep::grep(&mut git, args),
        "blame" => super::blame::blame(&mut git, args),
        "diff" => super::diff::diff(&mut git, args),
        "log" => super::history::log(&mut git, args),
        "show" => super::history::show(&mut git, args),
        "rev-parse" => super::history::rev_parse(&mut git, args),
        "rev-list" => super::history::rev_list(&mut git, args),
        "branch" => super::history::branch(&mut git, args),
        "tag" => super::history::tag(&mut git, args),
        "remote" => super::history::remote(&mut git, args),
        _ => super::history::config(&mut git, args),
    }));
    match run {
        Ok(Ok(code)) => Ran::Done(git.out, String::new(), code),
        Ok(Err(f)) => Ran::Done(git.out, f.msg, f.code),
        Err(payload) => match payload.downcast::<Stop>() {
            Ok(stop) => Ran::Stopped(*stop),
            // A panic inside gitoxide (its bug, reached by a repository
            // changed under it): this command fails, nothing else does.
            Err(payload) => {
                let what = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown");
                tracing::warn!(panic = what, "git failed inside gitoxide");
                let msg = format!("fatal: git failed reading the repository: {what}\n");
                Ran::Done(git.out, msg, 128)
            }
        },
    }
}

const HELP: &str = "usage: git [-C <path>] <command> [<args>]\n\n\
This sandbox serves read-only git from the host:\n\
   status, diff, log, show, rev-parse, rev-list, branch, ls-files, grep, blame, tag, remote, config (reading)\n\
Commands that change the repository are not supported.\n";

/// Sets its flag when dropped: the command's future went away (terminate,
/// max-wall), so the blocking thread need not go on.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

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
    // What git holds (its output, the files it loads) is held against the
    // line's memory budget: it may take what is left of it.
    let mut held = cx.held();
    let room = cx.room();
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(Arc::clone(&cancel));
    // Its CPU time is the command's, though it runs on the blocking pool.
    let cpu = crate::exec::BlockingMeter::current();
    let joined = tokio::task::spawn_blocking(move || {
        dispatch(ws, cwd_rel, &sub, &rest, (room, cancel, cpu))
    })
    .await;
    let (out, err, code) = match joined {
        Ok(Ran::Done(out, err, code)) => (out, err, code),
        Ok(Ran::Stopped(Stop::Memory)) => {
            // Taking more than the room fails, names the limit and stops
            // the line, as the shell's own values do.
            let msg = held.take(room.saturating_add(1)).err().unwrap_or_default();
            cx.err(&format!("git: {msg}\n")).await;
            return Ok(137);
        }
        Ok(Ran::Stopped(Stop::Cancelled)) => return Ok(137),
        Ok(Ran::Stopped(Stop::Cpu)) => {
            cx.err("git: CPU time limit exceeded (max-cpu); command stopped\n").await;
            return Ok(137);
        }
        Err(_) => (Vec::new(), "fatal: git failed unexpectedly\n".into(), 128),
    };
    if held.take(out.len()).is_ok() {
        cx.out(&out).await?;
    }
    if !err.is_empty() {
        cx.err(&err).await;
    }
    Ok(code)
}
