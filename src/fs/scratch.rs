//! The guests' private areas outside the workspace: a skeleton of the
//! directories above the visible root and a private `/tmp`, in a scratch
//! directory of their own that is removed with the workspace (or, when a
//! server was killed, by the next one to start).

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::io;
use std::path::{Path, PathBuf};

/// What guests see outside the workspace: a read-only skeleton of the empty
/// directories above the visible root (so tools that walk up to `/`, like
/// `realpath` or `mv`, work) and a private writable `/tmp`. Both live in a
/// fresh host directory of their own (mode 0700), removed with the
/// workspace. While it is in use, its `.lock` file is locked; a server
/// that starts removes the directories whose owner died without removing
/// them ([`sweep_stale_scratch`]).
#[derive(Debug)]
pub struct Scratch {
    base: PathBuf,
    /// The capability on `/tmp`, for the shell's own redirections.
    tmp_dir: Option<Dir>,
    /// Held (locked) for as long as the directory is in use.
    _lock: std::fs::File,
}

/// The name every scratch directory starts with.
const SCRATCH_PREFIX: &str = "wasm-exec-server-";
/// The lock file inside a scratch directory (beside `skel` and `tmp`, so no
/// guest sees it).
const SCRATCH_LOCK: &str = ".lock";

/// How old an empty scratch directory must be before a sweep takes it: a
/// directory being made is empty only until its lock file is written.
const EMPTY_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// A fresh scratch directory's path in `parent` (not yet made).
pub fn fresh_scratch_dir(parent: &Path) -> PathBuf {
    parent.join(format!("{SCRATCH_PREFIX}{}", uuid::Uuid::new_v4().simple()))
}

/// Removes the scratch directory `dir` of a worker that has exited, all of
/// it, however deep its guests nested it (links are removed, not followed).
/// Gone already is fine.
pub fn remove_scratch_dir(dir: &Path) -> io::Result<()> {
    match super::tree::remove_tree(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the scratch directories in `parent` that no live server holds:
/// those of servers that were killed or crashed. A directory is taken only
/// when it is ours (a real directory, not a link, owned by this user) and
/// its lock can be taken. One without a lock file is removed only when it
/// is empty and older than a minute (a confined worker empties its own but
/// may not remove it; a younger one may be being made). Returns how many
/// were removed.
pub fn sweep_stale_scratch(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(|n| n.starts_with(SCRATCH_PREFIX)) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        #[cfg(unix)]
        let ours = meta.is_dir() && std::os::unix::fs::MetadataExt::uid(&meta) == current_uid();
        #[cfg(not(unix))]
        let ours = meta.is_dir();
        if !ours {
            continue;
        }
        let Ok(lock) = std::fs::File::open(path.join(SCRATCH_LOCK)) else {
            let old = meta.modified().ok().and_then(|m| m.elapsed().ok()) >= Some(EMPTY_GRACE);
            // `remove_dir` removes only an empty directory.
            if old && std::fs::remove_dir(&path).is_ok() {
                removed += 1;
            }
            continue;
        };
        if lock.try_lock().is_ok() && super::tree::remove_tree(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// This process's user id.
#[cfg(unix)]
fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::getuid()
    }
}

/// Where the skeleton holds the start-up hook of the bundled python3 (a
/// `sitecustomize.py` that changes into `$PWD`; see `exec::quirks`).
pub const PYTHON_HOOK_DIR: &str = "/opt/wasm-exec-server/python";
const PYTHON_HOOK: &str = include_str!("sitecustomize.py");

/// How much `/dev/zero` gives before its end (reads past it see EOF).
const DEV_ZERO_BYTES: u64 = 1 << 30;

impl Scratch {
    /// Makes the scratch directory `base` (which must not exist yet) for a
    /// workspace visible at `visible`.
    pub(super) fn create(base: PathBuf, visible: &str) -> io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&base)?;
        let lock = std::fs::File::create(base.join(SCRATCH_LOCK))?;
        lock.try_lock().map_err(io::Error::other)?;
        let mut scratch = Scratch { base, tmp_dir: None, _lock: lock };
        let skel = scratch.skeleton();
        std::fs::create_dir_all(skel.join(visible.trim_start_matches('/')))?;
        // `/dev/null` to read: empty (perl opens it at start-up; `cat
        // /dev/null` prints nothing). The skeleton is read-only, so a write
        // to it fails; shell redirections to /dev/null never reach it.
        std::fs::create_dir_all(skel.join("dev"))?;
        std::fs::File::create(skel.join("dev/null"))?;
        // `/dev/zero` to read: 1 GiB of zeros that occupies no disk (a sparse
        // file), for `head -c N /dev/zero` and `dd if=/dev/zero`.
        std::fs::File::create(skel.join("dev/zero"))?.set_len(DEV_ZERO_BYTES)?;
        // `/dev/urandom` and `/dev/random`: files of the same size here, whose
        // reads the guard fills with random bytes (`exec::guard`, `fd_read`).
        for name in ["dev/urandom", "dev/random"] {
            std::fs::File::create(skel.join(name))?.set_len(DEV_ZERO_BYTES)?;
        }
        // The standard streams by name: placeholders, whose reads and
        // writes the guard sends to the guest's stdin, stdout and stderr.
        std::fs::create_dir_all(skel.join("dev/fd"))?;
        for name in ["dev/stdin", "dev/stdout", "dev/stderr", "dev/fd/0", "dev/fd/1", "dev/fd/2"] {
            std::fs::File::create(skel.join(name))?;
        }
        // The bundled python3's start-up hook (`exec::quirks`).
        let hook = skel.join(PYTHON_HOOK_DIR.trim_start_matches('/'));
        std::fs::create_dir_all(&hook)?;
        std::fs::write(hook.join("sitecustomize.py"), PYTHON_HOOK)?;
        std::fs::create_dir_all(scratch.tmp())?;
        // A workspace under /tmp: keep the path to it walkable in the
        // private /tmp too.
        if let Some(below_tmp) = visible.strip_prefix("/tmp/") {
            std::fs::create_dir_all(scratch.tmp().join(below_tmp))?;
        }
        scratch.tmp_dir = Some(Dir::open_ambient_dir(scratch.tmp(), ambient_authority())?);
        Ok(scratch)
    }

    /// The directory that holds the skeleton and `/tmp`.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Preopened read-only at `/`.
    pub fn skeleton(&self) -> PathBuf {
        self.base.join("skel")
    }

    /// Preopened read-write at `/tmp`.
    pub fn tmp(&self) -> PathBuf {
        self.base.join("tmp")
    }

    /// The capability on the private `/tmp`.
    pub fn tmp_dir(&self) -> Option<&Dir> {
        self.tmp_dir.as_ref()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = super::tree::remove_tree(&self.base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Workspace;

    #[test]
    fn the_sweep_removes_only_scratch_that_no_live_server_holds() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let parent = tmp.path().join("parent");
        std::fs::create_dir_all(tmp.path().join("root")).expect("mkdir root");
        std::fs::create_dir(&parent).expect("mkdir parent");
        let live = Workspace::open_in(&tmp.path().join("root"), Some("/w"), &parent).expect("open");
        let live_dir = live.scratch().expect("scratch").base.clone();
        // A killed server's: its lock file is there, and nobody holds it.
        let dead = parent.join(format!("{SCRATCH_PREFIX}dead"));
        std::fs::create_dir_all(dead.join("tmp")).expect("mkdir dead");
        std::fs::write(dead.join(SCRATCH_LOCK), "").expect("lock file");
        std::fs::write(dead.join("tmp/left"), "x").expect("left");
        // One being made (no lock file yet), and other people's files.
        let young = parent.join(format!("{SCRATCH_PREFIX}young"));
        std::fs::create_dir(&young).expect("mkdir young");
        // A confined worker's, emptied but left in place, a while ago; and
        // one as old that is not empty.
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let emptied = parent.join(format!("{SCRATCH_PREFIX}emptied"));
        let full = parent.join(format!("{SCRATCH_PREFIX}full"));
        std::fs::create_dir_all(full.join("tmp")).expect("mkdir full");
        std::fs::create_dir(&emptied).expect("mkdir emptied");
        for dir in [&emptied, &full] {
            let handle = std::fs::File::open(dir).expect("open dir");
            handle.set_modified(an_hour_ago).expect("age the directory");
        }
        let other = parent.join("unrelated");
        std::fs::create_dir(&other).expect("mkdir other");
        std::fs::write(other.join(SCRATCH_LOCK), "").expect("other lock");
        // A link that looks like a stale one must not lead the sweep away.
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).expect("mkdir victim");
        std::fs::write(victim.join(SCRATCH_LOCK), "").expect("victim lock");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&victim, parent.join(format!("{SCRATCH_PREFIX}link")))
            .expect("symlink");

        assert_eq!(sweep_stale_scratch(&parent), 2);
        assert!(!dead.exists(), "the dead server's directory is gone");
        assert!(!emptied.exists(), "the emptied one is gone");
        assert!(full.join("tmp").is_dir(), "an old one without a lock is not emptied");
        assert!(live_dir.join("tmp").is_dir(), "the live workspace keeps its /tmp");
        assert!(young.is_dir() && other.is_dir() && victim.join(SCRATCH_LOCK).is_file());
        drop(live);
        assert!(!live_dir.exists(), "a workspace removes its own when dropped");
    }
}
