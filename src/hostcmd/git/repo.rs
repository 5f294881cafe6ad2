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
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

pub(super) const NOT_A_REPO: &str = "not a git repository (or any of the parent directories): .git";

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
    /// Bytes of output and loaded files this command may hold (the room
    /// left in its line's memory budget).
    pub limit: usize,
    /// Set when nobody waits for the command any more (terminate,
    /// max-wall): it stops at its next output or file.
    pub cancel: Arc<AtomicBool>,
    /// Charges this thread's CPU time to the command (max-cpu, usage).
    pub cpu: Option<crate::exec::BlockingMeter>,
    /// Checks since the CPU time was last charged.
    checks: u32,
}

/// Why a git command stopped before its end: it unwinds to
/// [`super::command`], which reports it (with `resume_unwind`, which runs
/// no panic hook). Output and file loads are where a command spends memory
/// and time on input, so they are where it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// More output or file data than [`Git::limit`].
    Memory,
    /// [`Git::cancel`] was set.
    Cancelled,
    /// The command used up its CPU time (max-cpu).
    Cpu,
}

impl Git {
    pub fn print(&mut self, s: impl AsRef<[u8]>) {
        let s = s.as_ref();
        self.check(s.len());
        self.out.extend_from_slice(s);
    }

    /// Stops the command if `more` bytes beside its output would pass its
    /// limit.
    fn hold(&self, more: usize) {
        if self.out.len().saturating_add(more) > self.limit {
            std::panic::resume_unwind(Box::new(Stop::Memory));
        }
    }

    /// Stops the command if it was cancelled, if `more` bytes beside its
    /// output would pass its limit, or (looked at every 256 checks) if it
    /// is over its CPU time.
    pub fn check(&mut self, more: usize) {
        if self.cancel.load(Ordering::Relaxed) {
            std::panic::resume_unwind(Box::new(Stop::Cancelled));
        }
        self.hold(more);
        self.checks += 1;
        if self.checks >= 256 {
            self.checks = 0;
            self.charge_cpu();
        }
    }

    /// Charges the CPU time used so far, and stops the command when it is
    /// over max-cpu: for work whose checks are few and far apart (`git
    /// blame` diffs whole files between two object reads).
    pub fn charge_cpu(&mut self) {
        if let Some(cpu) = &mut self.cpu {
            if !cpu.charge() {
                std::panic::resume_unwind(Box::new(Stop::Cpu));
            }
        }
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
        // Within what the command may still hold: not a sparse 10 GiB
        // file, and not a FIFO or a device read without end.
        self.hold(meta.len() as usize);
        let room = self.limit.saturating_sub(self.out.len()) as u64;
        self.ws.read_bounded(&rel, room).ok()
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

/// Entries of `.git` a walk for links looks at before giving up (a
/// repository with more loose refs than this is refused).
const MAX_GIT_ENTRIES: usize = 100_000;

/// Refuses a `.git` with a symlink, or anything but files and directories,
/// among its top-level entries, under `refs/` and `info/`, or as
/// `config.worktree`: gitoxide opens them by host path and would follow a
/// link out of the root, or read a device without end. (Checked through the
/// capability, then opened by path: a guest racing the check can still win,
/// which is what the worker's Landlock rules are for.)
fn no_links_below(dir: &cap_std::fs::Dir, git_rel: &std::path::Path) -> Result<(), Fail> {
    let bad = |rel: &std::path::Path| {
        fatal(&format!(
            "'.git/{}' is a symlink or a special file, which read-only git does not follow",
            rel.display()
        ))
    };
    let mut seen = 0usize;
    let mut stack = vec![(PathBuf::new(), false)];
    while let Some((rel, deep)) = stack.pop() {
        let entries = match dir.read_dir(git_rel.join(&rel)) {
            Ok(e) => e,
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_GIT_ENTRIES {
                return Err(fatal("the repository has too many refs for read-only git"));
            }
            let child = rel.join(entry.file_name());
            let Ok(ft) = entry.file_type() else { return Err(bad(&child)) };
            if ft.is_dir() {
                // Below the top: only refs/ and info/ are walked (objects/
                // is checked above and is read through its pack index).
                let top = child.components().next().map(|c| c.as_os_str().to_owned());
                if deep || top.is_some_and(|t| t == "refs" || t == "info") {
                    stack.push((child, true));
                }
            } else if !ft.is_file() {
                return Err(bad(&child));
            }
        }
    }
    Ok(())
}

/// Finds the repository above `cwd_rel`, checks it and opens it.
pub(super) fn open(ws: Workspace, cwd_rel: PathBuf) -> Result<Git, Fail> {
    let dir = ws.dir();
    let mut work_rel = cwd_rel.clone();
    loop {
        match dir.symlink_metadata(work_rel.join(".git")) {
            Ok(m) if m.is_dir() => break,
            Ok(_) if crate::worker::hooks::on() => break,
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
    // The test-only switch: the second wall alone must hold.
    let checks = !crate::worker::hooks::on();
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
        if checks
            && dir.symlink_metadata(git_rel.join(name)).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(fatal(&format!(
                "'.git/{name}' is a symlink, which read-only git does not follow"
            )));
        }
    }
    for name in ["commondir", "objects/info/alternates", "objects/info/http-alternates"] {
        if checks && dir.symlink_metadata(git_rel.join(name)).is_ok() {
            return Err(fatal(&format!(
                "'.git/{name}' points outside the repository, which read-only git does not follow"
            )));
        }
    }
    if checks {
        no_links_below(dir, &git_rel)?;
    }
    let host_work = ws.host_root().join(&work_rel);
    let mut repo = gix::open_opts(host_work.join(".git"), gix::open::Options::isolated())
        .map_err(|e| fatal(&format!("cannot open the repository: {e}")))?;
    // Files named by the configuration are read by host path, unchecked:
    // one pointed at /dev/zero made git read without end.
    for key in ["core.excludesFile", "core.attributesFile"] {
        if checks && repo.config_snapshot().string(key).is_some() {
            return Err(fatal(&format!("{key} is not supported by read-only git")));
        }
    }
    match repo.workdir() {
        Some(w) if w == host_work || w == host_work.join(".git/..") => {}
        Some(_) if checks => return Err(fatal("core.worktree is not supported by read-only git")),
        Some(_) => {}
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
    Ok(Git {
        repo,
        ws,
        work_rel,
        prefix,
        visible_top,
        out: Vec::new(),
        limit: usize::MAX,
        cancel: Arc::default(),
        cpu: None,
        checks: 0,
    })
}
