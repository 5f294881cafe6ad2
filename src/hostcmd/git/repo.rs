//! Finding, checking and opening the repository, and the context every
//! subcommand works in.
//!
//! The repository is found by walking up from the working directory through
//! the workspace capability, never above the workspace root. gitoxide cannot
//! read through a `cap_std::fs::Dir`, so it opens the repository by its host
//! path (`Workspace::host_root` + the `.git` found) — but only after the
//! checks below, with `Options::isolated()` (no system, global or
//! environment configuration), and only when the work tree is the `.git`'s
//! parent. Refused: a `.git` that is a file or a symlink (linked worktrees,
//! submodules), `commondir` and object alternates, symlinks at the top of
//! `.git`, and `core.worktree`. Work-tree contents that the shell shows
//! (diffs) are read through the capability.

use crate::fs::Workspace;
use crate::hostcmd::{Context, Status};
use std::path::PathBuf;

/// A failed subcommand: what goes to stderr and the status.
#[derive(Debug)]
pub struct Fail {
    pub msg: String,
    pub code: i32,
}

impl<E: std::error::Error> From<E> for Fail {
    fn from(e: E) -> Self {
        fatal(&e.to_string())
    }
}

/// `fatal: MSG`, status 128, as git reports most errors.
pub fn fatal(msg: &str) -> Fail {
    Fail { msg: format!("fatal: {msg}\n"), code: 128 }
}

/// A bad option: git's usage status.
pub fn usage(msg: &str) -> Fail {
    Fail { msg: format!("{msg}\n"), code: 129 }
}

pub type GitResult = Result<i32, Fail>;

const NOT_A_REPO: &str = "not a git repository (or any of the parent directories): .git";

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

/// The repository and the command's position in it.
pub struct Git {
    pub repo: gix::Repository,
    pub ws: Workspace,
    /// The work tree, relative to the workspace root (empty at the root).
    pub work_rel: PathBuf,
    /// The working directory relative to the work tree: `""` or `"a/b/"`.
    pub prefix: String,
    /// The work tree as clients see it (for `--show-toplevel`).
    pub visible_top: String,
    pub out: Vec<u8>,
}

impl Git {
    pub fn print(&mut self, s: impl AsRef<[u8]>) {
        self.out.extend_from_slice(s.as_ref());
    }

    /// A repository path shown relative to the working directory, as
    /// `git status` shows it (`../x`, `sub/y`).
    pub fn show_path(&self, path: &str) -> String {
        let mut base: Vec<&str> = self.prefix.split('/').filter(|s| !s.is_empty()).collect();
        let mut parts: Vec<&str> = path.split('/').collect();
        while !base.is_empty() && parts.len() > 1 && base[0] == parts[0] {
            base.remove(0);
            parts.remove(0);
        }
        if !base.is_empty() && parts.len() == 1 && base[0] == parts[0] && path.ends_with('/') {
            base.remove(0);
            parts.remove(0);
        }
        let mut s = "../".repeat(base.len());
        s.push_str(&parts.join("/"));
        if s.is_empty() { "./".into() } else { s }
    }

    /// A path the user typed (relative to the working directory) as a
    /// repository path, or `None` when it is outside the work tree.
    pub fn repo_path(&self, arg: &str) -> Option<String> {
        let joined = format!("/{}{}", self.prefix, arg);
        let norm = crate::fs::path::normalize_absolute(&joined);
        Some(norm.trim_start_matches('/').trim_end_matches('/').to_owned())
    }

    /// A work-tree file, read through the capability. `None` when missing.
    pub fn read_worktree(&self, path: &str) -> Option<Vec<u8>> {
        let rel = self.work_rel.join(path);
        let dir = self.ws.dir();
        let meta = dir.symlink_metadata(&rel).ok()?;
        if meta.file_type().is_symlink() {
            return dir
                .read_link_contents(&rel)
                .ok()
                .map(|t| t.to_string_lossy().into_owned().into_bytes());
        }
        dir.read(&rel).ok()
    }

    /// The executable bit of a work-tree file, as git records it.
    pub fn worktree_mode(&self, path: &str) -> Option<u32> {
        use cap_std::fs::MetadataExt;
        let meta = self.ws.dir().symlink_metadata(self.work_rel.join(path)).ok()?;
        Some(if meta.file_type().is_symlink() {
            0o120000
        } else if meta.mode() & 0o111 != 0 {
            0o100755
        } else {
            0o100644
        })
    }

    /// The branch `HEAD` names (`None` when detached).
    pub fn branch(&self) -> Result<Option<String>, Fail> {
        Ok(self.repo.head_name()?.map(|n| n.shorten().to_string()))
    }

    /// Whether `HEAD` has no commit yet.
    pub fn unborn(&self) -> Result<bool, Fail> {
        Ok(self.repo.head()?.is_unborn())
    }
}

/// Finds the repository above `cwd_rel`, checks it and opens it.
fn open(ws: Workspace, cwd_rel: PathBuf) -> Result<Git, Fail> {
    let dir = ws.dir();
    let mut work_rel = cwd_rel.clone();
    loop {
        match dir.symlink_metadata(work_rel.join(".git")) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(fatal(
                    "'.git' is a file or a symlink: linked worktrees and submodules are not \
                     supported by read-only git",
                ));
            }
            Err(_) => {}
        }
        if !work_rel.pop() {
            return Err(fatal(NOT_A_REPO));
        }
    }
    let git_rel = work_rel.join(".git");
    for name in [
        "HEAD",
        "config",
        "index",
        "packed-refs",
        "objects",
        "objects/pack",
        "objects/info",
        "refs",
        "info",
    ] {
        if dir.symlink_metadata(git_rel.join(name)).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(fatal(&format!(
                "'.git/{name}' is a symlink, which read-only git does not follow"
            )));
        }
    }
    for name in ["commondir", "objects/info/alternates", "objects/info/http-alternates"] {
        if dir.symlink_metadata(git_rel.join(name)).is_ok() {
            return Err(fatal(&format!(
                "'.git/{name}' points outside the repository, which read-only git does not follow"
            )));
        }
    }
    let host_work = ws.host_root().join(&work_rel);
    let mut repo = gix::open_opts(host_work.join(".git"), gix::open::Options::isolated())
        .map_err(|e| fatal(&format!("cannot open the repository: {e}")))?;
    match repo.workdir() {
        Some(w) if w == host_work || w == host_work.join(".git/..") => {}
        Some(_) => return Err(fatal("core.worktree is not supported by read-only git")),
        None => return Err(fatal("this operation must be run in a work tree")),
    }
    // Drivers run programs: drop them so nothing is ever spawned.
    {
        let mut config = repo.config_snapshot_mut();
        for section in ["filter", "diff", "merge", "core.fsmonitor"] {
            let ids: Vec<_> =
                config.sections_by_name(section).into_iter().flatten().map(|s| s.id()).collect();
            for id in ids {
                config.remove_section_by_id(id);
            }
        }
        config.commit().map_err(|e| fatal(&e.to_string()))?;
    }
    let prefix = cwd_rel
        .strip_prefix(&work_rel)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}/"))
        .unwrap_or_default();
    let visible_top =
        ws.path_map().to_visible(&work_rel).unwrap_or_else(|| ws.visible_root().to_owned());
    Ok(Git { repo, ws, work_rel, prefix, visible_top, out: Vec::new() })
}

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
