//! The disk quota of one workspace: the bytes its files take (the root and
//! the guests' private `/tmp` together), checked before every write and
//! corrected after it.
//!
//! Usage starts from a walk of the root, made on a background thread so a
//! large workspace does not delay start-up. Every writer then reports what it
//! changed: `fs/*` calls, the shell's redirections and `apply_patch`, and the
//! guests' own writes (through the WASI guard in `exec::guard`). A write is
//! refused when the usage plus its size would pass the limit, so a tenant can
//! go over by at most the one write that was racing another.
//!
//! Usage is what the entries occupy ([`occupied`]): a file's allocated
//! blocks, not its length (a sparse write counts the blocks it allocates),
//! and at least one block for every file, directory and symlink (an inode
//! flood is not free). A write is checked beforehand against its length
//! plus [`WRITE_SLACK`] and accounted afterwards by what the file occupies
//! then. Files changed behind the server's back (by the host) are counted
//! again on the next start.

use cap_std::fs::Dir;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex};

/// The errno a refused write returns (`EDQUOT`).
pub const EDQUOT: i32 = 122;

#[derive(Debug)]
pub struct DiskQuota {
    limit: u64,
    /// Bytes in use; signed so a decrement that races the initial walk
    /// cannot wrap.
    used: AtomicI64,
    /// Set once the first walk finished.
    scanned: AtomicBool,
    /// Writers wait on this until the walk finished (else the walk could
    /// count a write that was already counted).
    done: (Mutex<bool>, Condvar),
}

/// Why a write was refused; the message names the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub limit: u64,
    pub used: u64,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "disk quota exceeded: the workspace uses {} of its {} (max-disk)",
            human(self.used),
            human(self.limit)
        )
    }
}

impl From<QuotaExceeded> for io::Error {
    fn from(_: QuotaExceeded) -> Self {
        io::Error::from_raw_os_error(EDQUOT)
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{v:.1} {}", UNITS[unit]) }
}

impl DiskQuota {
    /// A quota of `limit` bytes whose usage is counted from `root` on a
    /// background thread.
    pub fn start(limit: u64, root: &Dir) -> Arc<Self> {
        let quota = Arc::new(Self::new(limit, 0, false));
        let spawned = root.try_clone().and_then(|dir| {
            let q = quota.clone();
            std::thread::Builder::new().name("disk-usage".into()).spawn(move || {
                let bytes = tree_size(&dir, Path::new("."), 0);
                q.used.fetch_add(bytes as i64, Ordering::Relaxed);
                q.finish();
                tracing::debug!(bytes, "workspace disk usage counted");
            })
        });
        if let Err(e) = spawned {
            tracing::warn!(
                error = %e,
                "could not count the workspace's disk usage; counting from zero"
            );
            quota.finish();
        }
        quota
    }

    fn new(limit: u64, used: u64, scanned: bool) -> Self {
        Self {
            limit,
            used: AtomicI64::new(used as i64),
            scanned: AtomicBool::new(scanned),
            done: (Mutex::new(scanned), Condvar::new()),
        }
    }

    fn finish(&self) {
        let mut done = self.done.0.lock().unwrap_or_else(|e| e.into_inner());
        *done = true;
        self.scanned.store(true, Ordering::Release);
        self.done.1.notify_all();
    }

    /// Waits for the first walk (only writes in the first moments after
    /// start-up ever wait).
    fn wait_counted(&self) {
        if self.scanned.load(Ordering::Acquire) {
            return;
        }
        let mut done = self.done.0.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = self.done.1.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A quota with known usage (tests).
    pub fn with_usage(limit: u64, used: u64) -> Arc<Self> {
        Arc::new(Self::new(limit, used, true))
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.wait_counted();
        self.used.load(Ordering::Relaxed).max(0) as u64
    }

    /// Whether the first count of the root has finished.
    pub fn counted(&self) -> bool {
        self.scanned.load(Ordering::Acquire)
    }

    /// Refuses a change that would grow usage by `growth` past the limit.
    pub fn check(&self, growth: u64) -> Result<(), QuotaExceeded> {
        let used = self.used();
        if growth > 0 && used.saturating_add(growth) > self.limit {
            return Err(QuotaExceeded { limit: self.limit, used });
        }
        Ok(())
    }

    /// Records a change in usage (negative when space was freed).
    pub fn add(&self, delta: i64) {
        if delta != 0 {
            self.wait_counted();
            self.used.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// [`check`](Self::check) then [`add`](Self::add), for writes that
    /// only grow (appends, fresh files).
    pub fn charge(&self, growth: u64) -> Result<(), QuotaExceeded> {
        self.check(growth)?;
        self.add(growth as i64);
        Ok(())
    }
}

/// The least an entry counts for: an empty file, a directory or a symlink
/// takes an inode and a directory entry even with no block of its own, so
/// a flood of empty entries is not free.
pub const ENTRY: u64 = 4096;

/// Most a write of `len` bytes can allocate beyond `len`: the partial
/// blocks at each end (a 1-byte write at a 1 GiB offset allocates one
/// block, not 1 GiB).
pub const WRITE_SLACK: u64 = 2 * ENTRY;

/// Bytes an entry occupies on disk: the blocks allocated to it (not its
/// apparent length: a sparse file counts what it really holds), and at
/// least [`ENTRY`].
pub fn occupied(m: &cap_std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    let allocated = cap_std::fs::MetadataExt::blocks(m).saturating_mul(512);
    #[cfg(not(unix))]
    let allocated = m.len();
    allocated.max(ENTRY)
}

/// [`occupied`] for an open file (through its descriptor, not a path).
pub fn occupied_file(f: &std::fs::File) -> u64 {
    f.metadata().map_or(ENTRY, |m| occupied(&cap_std::fs::Metadata::from_just_metadata(m)))
}

/// Where a change at `rel` is counted: the shallowest of `rel` and its
/// ancestors that does not exist yet (what the change will create), or
/// `rel` itself when it exists. What it occupies after the change, against
/// before, is what the change cost.
pub fn new_top<'a>(dir: &Dir, rel: &'a Path) -> &'a Path {
    rel.ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| dir.symlink_metadata(a).is_err())
        .last()
        .unwrap_or(rel)
}

/// Bytes a tree occupies below `rel` (every entry, as [`occupied`];
/// symlinks are not followed). Unreadable parts count nothing.
pub fn tree_size(dir: &Dir, rel: &Path, depth: usize) -> u64 {
    if depth > 256 {
        return 0;
    }
    let Ok(entries) = dir.read_dir(rel) else { return 0 };
    let mut total: u64 = 0;
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        let child = rel.join(entry.file_name());
        if ft.is_dir() {
            total = total.saturating_add(tree_size(dir, &child, depth + 1));
        }
        // The entry's own metadata (links not followed), without resolving
        // its path again.
        let own = entry.metadata().map(|m| occupied(&m)).unwrap_or(0);
        total = total.saturating_add(own);
    }
    total
}

/// Bytes a path occupies: a file or a symlink as [`occupied`], a directory
/// with its whole tree, nothing for a missing path.
pub fn path_size(dir: &Dir, rel: &Path) -> u64 {
    match dir.symlink_metadata(rel) {
        Ok(m) if m.is_dir() => tree_size(dir, rel, 0).saturating_add(occupied(&m)),
        Ok(m) => occupied(&m),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_tree_and_refuses_growth_past_the_limit() {
        let tmp = tempfile::tempdir().expect("test setup");
        std::fs::create_dir_all(tmp.path().join("a/b")).expect("test setup");
        std::fs::write(tmp.path().join("a/b/f"), vec![1u8; 1000]).expect("test setup");
        std::fs::write(tmp.path().join("g"), vec![1u8; 24]).expect("test setup");
        #[cfg(unix)]
        std::os::unix::fs::symlink("g", tmp.path().join("link")).expect("test setup");
        let dir =
            Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).expect("test setup");
        // Every entry counts at least a block: a, a/b, a/b/f, g and link.
        let entries = if cfg!(unix) { 5 } else { 4 };
        let q = DiskQuota::start(100 * ENTRY, &dir);
        assert_eq!(q.used(), entries * ENTRY, "used() waits for the first count");
        assert!(q.counted());
        let room = (100 - entries) * ENTRY;
        assert!(q.check(room).is_ok());
        let err = q.check(room + 1).expect_err("past the limit");
        assert_eq!(err, QuotaExceeded { limit: 100 * ENTRY, used: entries * ENTRY });
        assert!(err.to_string().contains("max-disk"), "{err}");
        q.charge(room - 100).expect("test setup");
        assert!(q.charge(101).is_err());
        q.add(-((100 * ENTRY - 100) as i64));
        assert_eq!(q.used(), 0);
        assert_eq!(path_size(&dir, Path::new("a")), 3 * ENTRY);
        #[cfg(unix)]
        assert_eq!(path_size(&dir, Path::new("link")), ENTRY);
    }

    #[cfg(unix)]
    #[test]
    fn a_sparse_file_counts_its_blocks_not_its_length() {
        use std::io::{Seek, SeekFrom, Write};
        let tmp = tempfile::tempdir().expect("test setup");
        let mut f = std::fs::File::create(tmp.path().join("sparse")).expect("test setup");
        f.seek(SeekFrom::Start(1 << 30)).expect("test setup");
        f.write_all(b"x").expect("test setup");
        drop(f);
        let dir =
            Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).expect("test setup");
        let size = path_size(&dir, Path::new("sparse"));
        // Not 1 GiB, and not 1 byte: the block the write allocated (and the
        // filesystem's own bookkeeping, a few blocks at most).
        assert!((ENTRY..=16 * ENTRY).contains(&size), "{size}");
    }
}
