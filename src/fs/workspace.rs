//! The workspace: one capability (a `cap_std::fs::Dir` on the root, opened
//! once at start-up) and every filesystem operation the protocol offers.
//!
//! Client paths arrive as URIs, are mapped lexically by [`path`], and are then
//! resolved by cap-std relative to the root handle, which refuses `..`,
//! absolute paths and symlinks that lead out of the root (whether planted on
//! disk or made by a guest). Nothing in this module opens a host path
//! by name except [`Workspace::open`]. The operations are synchronous; the
//! session runs them on the blocking pool.
//!
//! Over 600 lines, as one unit: every operation is a short method of the one
//! capability, and keeping them together keeps every host-side open of a
//! client path in one file, next to the checks it relies on.

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::path::{self, Mapped, PathMap, UriError, parse_file_uri, to_file_uri};
use super::quota::{self, DiskQuota};
use super::scratch::Scratch;

/// Errors of filesystem operations, mapped to wire codes in `rpc`.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error(transparent)]
    Uri(#[from] UriError),
    /// The OS (or cap-std) said no; the kind picks the wire code.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Protocol-level validation: not a file, `recursive` required, bad base64.
    #[error("{0}")]
    Invalid(String),
    /// A read-only area or a path outside the root for a mutating call.
    #[error("Permission denied (os error 13)")]
    PermissionDenied,
    /// A size limit; the message names it.
    #[error("{0}")]
    Limit(String),
}

pub type FsResult<T> = Result<T, FsError>;

/// An I/O error as bash and coreutils word it (`strerror`'s text, without
/// Rust's ` (os error N)`), for the messages of the shell and host commands.
pub fn strerror(e: &io::Error) -> String {
    use io::ErrorKind as E;
    match e.kind() {
        E::NotFound => "No such file or directory".into(),
        E::PermissionDenied => "Permission denied".into(),
        E::AlreadyExists => "File exists".into(),
        E::IsADirectory => "Is a directory".into(),
        E::NotADirectory => "Not a directory".into(),
        E::DirectoryNotEmpty => "Directory not empty".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_owned(),
                None => s,
            }
        }
    }
}

/// Metadata in the protocol's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub is_directory: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    pub size: u64,
    pub created_at_ms: i64,
    pub modified_at_ms: i64,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub file_name: String,
    pub is_directory: bool,
    pub is_file: bool,
}

/// The most entries `fs/readDirectory` returns (PROTOCOL.md §12).
pub const MAX_DIRECTORY_ENTRIES: usize = 50_000;

/// A workspace root: the capability and where clients see it.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The only authority over the host filesystem the server uses after
    /// start-up. Every `fs/*` call resolves below it.
    root: Arc<Dir>,
    /// The root's canonical host path; needed only to preopen it for guests
    /// (wasmtime-wasi opens preopens by path).
    host_root: PathBuf,
    /// Client-visible path ⇄ root-relative path.
    map: PathMap,
    /// Root-relative subtrees that `fs/*` calls and shell redirections may
    /// not change (`.git` by default, as Codex's own sandbox does).
    read_only: Arc<Vec<PathBuf>>,
    /// Host directories guests see besides the workspace.
    scratch: Option<Arc<Scratch>>,
    /// The bytes the root and the guests' `/tmp` may take.
    quota: Option<Arc<DiskQuota>>,
}

fn not_found() -> FsError {
    FsError::Io(io::Error::from(io::ErrorKind::NotFound))
}

fn ms_since_epoch(t: io::Result<SystemTime>) -> i64 {
    t.ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Workspace {
    /// Opens `host_dir` as the capability root, visible to clients at
    /// `visible` (by default its canonical path). This is the one place that
    /// exercises ambient authority.
    /// Opens a workspace as configured: the root, where it is visible, its
    /// read-only areas and its disk quota.
    pub fn from_config(cfg: &crate::config::WorkspaceConfig) -> io::Result<Self> {
        let scratch = cfg.scratch_dir.clone().unwrap_or_else(|| {
            let parent = cfg.scratch_parent.clone().unwrap_or_else(std::env::temp_dir);
            super::scratch::fresh_scratch_dir(&parent)
        });
        let ws = Self::open_with_scratch(&cfg.root, cfg.visible.as_deref(), scratch)?
            .with_read_only(&cfg.read_only);
        Ok(if cfg.max_disk > 0 { ws.with_quota(cfg.max_disk) } else { ws })
    }

    pub fn open(host_dir: &Path, visible: Option<&str>) -> io::Result<Self> {
        Self::open_in(host_dir, visible, &std::env::temp_dir())
    }

    /// Like [`Workspace::open`], with the guests' private `/tmp` and the
    /// skeleton above the root made in `scratch_parent` instead of the
    /// system's temporary directory (for example inside a directory that is
    /// removed as a whole, whoever still holds the workspace).
    pub fn open_in(
        host_dir: &Path,
        visible: Option<&str>,
        scratch_parent: &Path,
    ) -> io::Result<Self> {
        Self::open_with_scratch(
            host_dir,
            visible,
            super::scratch::fresh_scratch_dir(scratch_parent),
        )
    }

    /// Like [`Workspace::open_in`], with the scratch directory made at
    /// `scratch` exactly.
    fn open_with_scratch(
        host_dir: &Path,
        visible: Option<&str>,
        scratch: PathBuf,
    ) -> io::Result<Self> {
        let host_root = std::fs::canonicalize(host_dir)?;
        let root = Dir::open_ambient_dir(&host_root, ambient_authority())?;
        let visible = match visible {
            Some(v) => v.to_owned(),
            None => host_root.to_str().map(str::to_owned).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "workspace path is not valid UTF-8")
            })?,
        };
        if !visible.starts_with('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("visible path `{visible}` must be absolute"),
            ));
        }
        let scratch = match Scratch::create(scratch, &visible) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(error = %e, "no /tmp or parent directories for guests");
                None
            }
        };
        Ok(Self {
            root: Arc::new(root),
            host_root,
            map: PathMap::new(&visible),
            read_only: Arc::default(),
            scratch,
            quota: None,
        })
    }

    /// Marks root-relative subtrees read-only (for `fs/*` and redirections).
    pub fn with_read_only(mut self, paths: &[String]) -> Self {
        let cleaned: Vec<PathBuf> = paths
            .iter()
            .map(|p| {
                PathBuf::from(path::normalize_absolute(&format!("/{p}")).trim_start_matches('/'))
            })
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        self.read_only = Arc::new(cleaned);
        self
    }

    /// Limits the bytes the workspace (with its `/tmp`) may take; usage is
    /// counted from the files already there.
    pub fn with_quota(mut self, limit: u64) -> Self {
        self.quota = Some(DiskQuota::start(limit, &self.root));
        self
    }

    /// The disk quota, when there is one.
    pub fn quota(&self) -> Option<&Arc<DiskQuota>> {
        self.quota.as_ref()
    }

    /// Checks that growing by `growth` bytes stays within the quota.
    fn check_quota(&self, growth: u64) -> FsResult<()> {
        match &self.quota {
            Some(q) => q.check(growth).map_err(|e| FsError::Limit(e.to_string())),
            None => Ok(()),
        }
    }

    fn account(&self, delta: i64) {
        if let Some(q) = &self.quota {
            q.add(delta);
        }
    }

    /// Runs `change` on `rel` after checking that growing by `estimate`
    /// bytes fits the quota, and counts what `rel` occupies after it
    /// against what it did before (`rel` is the top of what `change` may
    /// create or replace).
    fn counted<R>(
        &self,
        rel: &Path,
        estimate: u64,
        change: impl FnOnce() -> FsResult<R>,
    ) -> FsResult<R> {
        if self.quota.is_none() {
            return change();
        }
        let before = quota::path_size(&self.root, rel);
        self.check_quota(estimate)?;
        let result = change();
        self.account(quota::path_size(&self.root, rel) as i64 - before as i64);
        result
    }

    /// `/` skeleton and `/tmp` for guests, when they could be made.
    pub fn scratch(&self) -> Option<&Scratch> {
        self.scratch.as_deref()
    }

    /// The read-only subtrees, root-relative.
    pub fn read_only(&self) -> &[PathBuf] {
        &self.read_only
    }

    /// Refuses a change to `rel` when it lies in a read-only subtree, after
    /// resolving symlinks in the part of the path that exists (so `link/x`
    /// with `link -> .git` is caught too).
    pub fn check_writable(&self, rel: &Path) -> FsResult<()> {
        if self.read_only.is_empty() {
            return Ok(());
        }
        // The deepest existing ancestor, resolved by cap-std inside the root.
        let mut existing = rel.to_path_buf();
        let mut rest: Vec<std::ffi::OsString> = Vec::new();
        let resolved = loop {
            match self.root.canonicalize(&existing) {
                Ok(p) => break p,
                Err(_) => match (existing.file_name().map(|n| n.to_owned()), existing.parent()) {
                    (Some(name), Some(parent)) => {
                        rest.push(name);
                        existing = if parent.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            parent.to_path_buf()
                        };
                    }
                    _ => break PathBuf::new(),
                },
            }
        };
        let mut full = resolved;
        for name in rest.iter().rev() {
            full.push(name);
        }
        for candidate in [rel, full.as_path()] {
            let normalized = PathBuf::from(
                path::normalize_absolute(&format!("/{}", candidate.to_string_lossy()))
                    .trim_start_matches('/'),
            );
            if self.read_only.iter().any(|ro| normalized.starts_with(ro)) {
                return Err(FsError::PermissionDenied);
            }
        }
        Ok(())
    }

    pub fn host_root(&self) -> &Path {
        &self.host_root
    }

    pub fn visible_root(&self) -> &str {
        self.map.visible_root()
    }

    pub fn dir(&self) -> &Dir {
        &self.root
    }

    pub fn path_map(&self) -> &PathMap {
        &self.map
    }

    /// URI → root-relative path, with outside paths reported as not-found
    /// (for reads: keeps the client's ancestor `.git` probes quiet).
    fn for_read(&self, uri: &str) -> FsResult<PathBuf> {
        match self.map.map(&parse_file_uri(uri)?) {
            Mapped::Inside(p) => Ok(p),
            Mapped::Outside => Err(not_found()),
        }
    }

    /// URI → root-relative path, with outside paths and read-only areas
    /// refused.
    fn for_write(&self, uri: &str) -> FsResult<PathBuf> {
        match self.map.map(&parse_file_uri(uri)?) {
            Mapped::Inside(p) => {
                self.check_writable(&p)?;
                Ok(p)
            }
            Mapped::Outside => Err(FsError::PermissionDenied),
        }
    }

    /// Refuses any symlink along `rel` (for `followSymlinks: false`).
    fn reject_symlinks(&self, rel: &Path) -> FsResult<()> {
        let mut prefix = PathBuf::new();
        for comp in rel.components() {
            prefix.push(comp);
            if prefix.as_os_str() == "." {
                continue;
            }
            match self.root.symlink_metadata(&prefix) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(FsError::Invalid("path contains a symbolic link".into()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads a regular file for host work (a sourced script, a file a patch
    /// updates), refusing one larger than `max` before reading anything: a
    /// sparse file's size is not its cost on disk. A FIFO or a device is
    /// refused without blocking on it.
    pub fn read_bounded(&self, rel: &Path, max: u64) -> io::Result<Vec<u8>> {
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.read(true);
        #[cfg(target_os = "linux")]
        {
            use cap_std::fs::OpenOptionsExt;
            opts.custom_flags(libc::O_NONBLOCK);
        }
        let mut file = self.root.open_with(rel, &opts)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        if meta.len() > max {
            return Err(io::Error::other(format!("file too large (over {} MiB)", max >> 20)));
        }
        let mut buf = Vec::with_capacity(meta.len() as usize);
        io::Read::read_to_end(&mut io::Read::take(&mut file, max + 1), &mut buf)?;
        if buf.len() as u64 > max {
            return Err(io::Error::other(format!("file too large (over {} MiB)", max >> 20)));
        }
        Ok(buf)
    }

    /// `fs/readFile`. `max` bounds the size so one reply fits a message.
    pub fn read_file(&self, uri: &str, follow_symlinks: bool, max: u64) -> FsResult<Vec<u8>> {
        let rel = self.for_read(uri)?;
        if !follow_symlinks {
            self.reject_symlinks(&rel)?;
        }
        let mut file = self.root.open(&rel)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(FsError::Invalid(format!("path `{}` is not a file", uri_path(uri))));
        }
        if meta.len() > max {
            return Err(FsError::Limit(format!(
                "file is {} bytes, over the fs/readFile limit of {max} bytes",
                meta.len()
            )));
        }
        let mut buf = Vec::with_capacity(meta.len() as usize);
        io::Read::read_to_end(&mut io::Read::take(&mut file, max + 1), &mut buf)?;
        if buf.len() as u64 > max {
            return Err(FsError::Limit(format!(
                "file grew over the fs/readFile limit of {max} bytes"
            )));
        }
        Ok(buf)
    }

    /// `fs/writeFile`: atomic (a temporary file in the same directory renamed
    /// over the target), never creates parents (a missing parent is
    /// not-found, which apply_patch relies on), writes through a symlink that
    /// stays inside the root, and replaces a hard link instead of writing
    /// through it.
    pub fn write_file(&self, uri: &str, data: &[u8], follow_symlinks: bool) -> FsResult<()> {
        let mut rel = self.for_write(uri)?;
        if !follow_symlinks {
            self.reject_symlinks(&rel)?;
        }
        match self.root.symlink_metadata(&rel) {
            Ok(m) if m.file_type().is_symlink() => {
                // cap-std resolves the link and refuses a target outside the root.
                rel = self.root.canonicalize(&rel)?;
            }
            Ok(m) if m.is_dir() => {
                return Err(io::Error::from_raw_os_error(21).into());
            }
            _ => {}
        }
        let Some(name) = rel.file_name() else {
            return Err(io::Error::from_raw_os_error(21).into());
        };
        let before = if self.quota.is_some() { quota::path_size(&self.root, &rel) } else { 0 };
        let estimate = (data.len() as u64).saturating_add(quota::ENTRY).saturating_sub(before);
        self.check_quota(estimate)?;
        let parent = rel.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = parent.join(format!(
            ".{}.wes-tmp-{}",
            name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        let mut file = self.root.open_with(&tmp, &opts)?;
        let result = (|| -> io::Result<()> {
            file.write_all(data)?;
            if let Ok(old) = self.root.metadata(&rel) {
                file.set_permissions(old.permissions())?;
            }
            drop(file);
            self.root.rename(&tmp, &self.root, &rel)
        })();
        if let Err(e) = result {
            let _ = self.root.remove_file(&tmp);
            return Err(e.into());
        }
        if self.quota.is_some() {
            self.account(quota::path_size(&self.root, &rel) as i64 - before as i64);
        }
        Ok(())
    }

    /// `fs/createDirectory`; `recursive` defaults to true.
    pub fn create_directory(&self, uri: &str, recursive: bool) -> FsResult<()> {
        let rel = self.for_write(uri)?;
        if recursive {
            match self.root.metadata(&rel) {
                Ok(m) if m.is_dir() => return Ok(()),
                Ok(_) => return Err(io::Error::from_raw_os_error(17).into()),
                Err(_) => {}
            }
            // Counted from the first directory that is new.
            let top = quota::new_top(&self.root, &rel);
            let levels = rel.components().count() - top.components().count() + 1;
            self.counted(top, levels as u64 * quota::ENTRY, || {
                Ok(self.root.create_dir_all(&rel)?)
            })
        } else {
            self.counted(&rel, quota::ENTRY, || Ok(self.root.create_dir(&rel)?))
        }
    }

    /// `fs/getMetadata`: follows symlinks for type, size and times;
    /// `isSymlink` says whether the path itself is a link.
    pub fn get_metadata(&self, uri: &str, follow_symlinks: bool) -> FsResult<Metadata> {
        let rel = self.for_read(uri)?;
        if !follow_symlinks {
            self.reject_symlinks(&rel)?;
        }
        let link = self.root.symlink_metadata(&rel)?;
        let meta =
            if link.file_type().is_symlink() { self.root.metadata(&rel)? } else { link.clone() };
        Ok(Metadata {
            is_directory: meta.is_dir(),
            is_file: meta.is_file(),
            is_symlink: link.file_type().is_symlink(),
            size: meta.len(),
            created_at_ms: ms_since_epoch(meta.created().map(|t| t.into_std())),
            modified_at_ms: ms_since_epoch(meta.modified().map(|t| t.into_std())),
        })
    }

    /// `fs/readDirectory`: no `.`/`..`, symlinks reported as their target's
    /// type, dangling or escaping symlinks omitted.
    pub fn read_directory(&self, uri: &str) -> FsResult<Vec<DirEntry>> {
        let rel = self.for_read(uri)?;
        let mut out = Vec::new();
        for entry in self.root.read_dir(&rel)? {
            let entry = entry?;
            let Ok(file_name) = entry.file_name().into_string() else { continue };
            let ft = entry.file_type()?;
            let (is_directory, is_file) = if ft.is_symlink() {
                match self.root.metadata(rel.join(&file_name)) {
                    Ok(m) => (m.is_dir(), m.is_file()),
                    Err(_) => continue,
                }
            } else {
                (ft.is_dir(), ft.is_file())
            };
            out.push(DirEntry { file_name, is_directory, is_file });
            if out.len() >= MAX_DIRECTORY_ENTRIES {
                break;
            }
        }
        Ok(out)
    }

    /// `fs/remove`: a file, a symlink (never its target) or a directory.
    pub fn remove(&self, uri: &str, recursive: bool, force: bool) -> FsResult<()> {
        let rel = self.for_write(uri)?;
        if rel.as_os_str() == "." {
            return Err(FsError::PermissionDenied);
        }
        let meta = match self.root.symlink_metadata(&rel) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && force => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let freed = if self.quota.is_some() { quota::path_size(&self.root, &rel) } else { 0 };
        let result = self.remove_entry(&rel, &meta, recursive);
        // A recursive removal that failed half way freed an unknown part.
        let left =
            if result.is_err() && freed > 0 { quota::path_size(&self.root, &rel) } else { 0 };
        self.account(-((freed - left.min(freed)) as i64));
        result
    }

    fn remove_entry(
        &self,
        rel: &Path,
        meta: &cap_std::fs::Metadata,
        recursive: bool,
    ) -> FsResult<()> {
        if meta.is_dir() {
            if recursive {
                // Not cap-std's `remove_dir_all`, which recurses once per
                // level: a guest's tree can be deep enough to overflow the
                // stack. (`open_dir` stays beneath the root.)
                let dir = self.root.open_dir(rel)?;
                super::tree::remove_contents(std::os::fd::AsFd::as_fd(&dir))?;
                self.root.remove_dir(rel)?;
            } else {
                self.root.remove_dir(rel)?;
            }
        } else {
            self.root.remove_file(rel)?;
        }
        Ok(())
    }

    /// `fs/copy`: file → file (overwrite), or a directory tree when
    /// `recursive`, merging into an existing destination. Symlinks inside a
    /// copied tree are recreated as links, never followed.
    pub fn copy(&self, src_uri: &str, dst_uri: &str, recursive: bool) -> FsResult<()> {
        let src = self.for_read(src_uri)?;
        let dst = self.for_write(dst_uri)?;
        let meta = self.root.metadata(&src)?;
        if self.quota.is_none() {
            return self.copy_entry(&src, &dst, &meta, recursive);
        }
        if meta.is_dir() {
            // A tree is counted file by file as it is written (see
            // `copy_file`): a source that grows while it is copied, or a tree
            // larger than the quota, stops at the quota, not past it.
            return self.copy_entry(&src, &dst, &meta, recursive);
        }
        self.copy_file(&src, &dst)
    }

    /// Copies one file, checked against the quota first by its size and
    /// the usage corrected by what the destination grew.
    fn copy_file(&self, src: &Path, dst: &Path) -> FsResult<()> {
        if self.quota.is_none() {
            self.root.copy(src, &self.root, dst)?;
            return Ok(());
        }
        let estimate = self.root.symlink_metadata(src)?.len().saturating_add(quota::ENTRY);
        self.counted(dst, estimate, || Ok(self.root.copy(src, &self.root, dst).map(|_| ())?))
    }

    fn copy_entry(
        &self,
        src: &Path,
        dst: &Path,
        meta: &cap_std::fs::Metadata,
        recursive: bool,
    ) -> FsResult<()> {
        if meta.is_dir() {
            if !recursive {
                return Err(FsError::Invalid(
                    "fs/copy requires recursive: true when sourcePath is a directory".into(),
                ));
            }
            let dst_parent =
                dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            self.root.metadata(dst_parent)?;
            if dst.starts_with(src) && !src.as_os_str().is_empty() && src.as_os_str() != "." {
                return Err(FsError::Invalid("cannot copy a directory into itself".into()));
            }
            // The same through links: the destination's parent, resolved,
            // inside the (resolved) source.
            if let (Ok(parent), Ok(source)) =
                (self.root.canonicalize(dst_parent), self.root.canonicalize(src))
            {
                if parent.starts_with(&source) {
                    return Err(FsError::Invalid("cannot copy a directory into itself".into()));
                }
            }
            self.copy_tree(src, dst, 0)
        } else {
            self.copy_file(src, dst)
        }
    }

    fn copy_tree(&self, src: &Path, dst: &Path, depth: usize) -> FsResult<()> {
        if depth > 256 {
            return Err(FsError::Invalid("fs/copy: directory tree is too deep".into()));
        }
        if self.root.symlink_metadata(dst).is_err() {
            self.counted(dst, quota::ENTRY, || Ok(self.root.create_dir(dst)?))?;
        } else {
            // An existing directory is merged into (a file there fails below).
            match self.root.create_dir(dst) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        for entry in self.root.read_dir(src)? {
            let entry = entry?;
            let name = entry.file_name();
            let (s, d) = (src.join(&name), dst.join(&name));
            // Every destination, not only the top one: a link already in
            // the destination tree may lead into a read-only area.
            self.check_writable(&d)?;
            let ft = entry.file_type()?;
            if ft.is_dir() {
                self.copy_tree(&s, &d, depth + 1)?;
            } else if ft.is_symlink() {
                let target = self.root.read_link_contents(&s)?;
                self.counted(&d, quota::ENTRY, || {
                    let _ = self.root.remove_file(&d);
                    Ok(self.root.symlink_contents(target, &d)?)
                })?;
            } else {
                self.copy_file(&s, &d)?;
            }
        }
        Ok(())
    }

    /// `fs/canonicalize`: resolves symlinks and dot segments, never revealing
    /// a host path (cap-std fails on a link that leaves the root).
    pub fn canonicalize(&self, uri: &str) -> FsResult<String> {
        let rel = self.for_read(uri)?;
        let resolved = self.root.canonicalize(&rel).map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied { not_found() } else { e.into() }
        })?;
        let visible = self.map.to_visible(&resolved).ok_or_else(not_found)?;
        Ok(to_file_uri(&visible))
    }

    /// The working directory of a new process: a directory inside the root,
    /// returned as its visible absolute path.
    pub fn resolve_cwd(&self, uri: &str) -> FsResult<String> {
        let abs = parse_file_uri(uri)?;
        let rel = match self.map.map(&abs) {
            Mapped::Inside(p) => p,
            Mapped::Outside => return Err(FsError::PermissionDenied),
        };
        // The root is the directory we hold open: no need to look it up
        // (the common case: Codex runs every command there).
        if rel.as_os_str() == "." {
            return Ok(abs);
        }
        let meta = self.root.metadata(&rel)?;
        if !meta.is_dir() {
            return Err(io::Error::from_raw_os_error(20).into());
        }
        Ok(abs)
    }

    /// Maps a visible absolute path (as guests and the shell use) to a
    /// root-relative one, or `None` when it is outside.
    pub fn relative(&self, abs: &str) -> Option<PathBuf> {
        match self.map.map(abs) {
            Mapped::Inside(p) => Some(p),
            Mapped::Outside => None,
        }
    }

    /// Where a visible absolute path lives: in the workspace, or below the
    /// sandbox's private `/tmp` (the only place outside it that exists), as
    /// the capability to open it through and the path below that. `None`:
    /// nowhere visible. The host commands and the shell find files with it.
    pub fn locate(&self, abs: &str) -> Option<(&Dir, PathBuf)> {
        if let Some(rel) = self.relative(abs) {
            return Some((self.dir(), rel));
        }
        let abs = super::path::normalize_absolute(abs);
        let tmp = self.scratch().and_then(|s| s.tmp_dir())?;
        // When the workspace itself lives under /tmp, the directories on
        // the way to it are not scratch space.
        let beside_workspace = self
            .visible_root()
            .strip_prefix("/tmp/")
            .and_then(|r| r.split('/').next())
            .is_some_and(|top| {
                abs.strip_prefix("/tmp/")
                    .is_some_and(|b| b == top || b.starts_with(&format!("{top}/")))
            });
        if beside_workspace {
            return None;
        }
        let below = abs.strip_prefix("/tmp/").or_else(|| (abs == "/tmp").then_some("."))?;
        Some((tmp, PathBuf::from(below)))
    }
}

/// The path part of a URI for messages (best effort).
fn uri_path(uri: &str) -> String {
    parse_file_uri(uri).unwrap_or_else(|_| uri.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> (tempfile::TempDir, Workspace) {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("root")).expect("mkdir");
        let ws =
            Workspace::open_in(&tmp.path().join("root"), Some("/w"), tmp.path()).expect("open");
        (tmp, ws)
    }

    #[test]
    fn write_then_read_and_missing_parent_is_not_found() {
        let (_t, ws) = ws();
        ws.write_file("file:///w/a.txt", b"hi", true).expect("write");
        assert_eq!(ws.read_file("file:///w/a.txt", true, 100).expect("read"), b"hi");
        let e = ws.write_file("file:///w/nope/a.txt", b"x", true).expect_err("no parent");
        assert!(matches!(e, FsError::Io(ref io) if io.kind() == io::ErrorKind::NotFound), "{e:?}");
    }

    #[test]
    fn outside_reads_are_not_found_and_writes_denied() {
        let (t, ws) = ws();
        std::fs::write(t.path().join("secret"), "s").expect("plant");
        let e = ws.read_file("file:///w/../secret", true, 100).expect_err("outside");
        assert!(matches!(e, FsError::Io(ref io) if io.kind() == io::ErrorKind::NotFound));
        let e = ws.write_file("file:///w/../secret", b"x", true).expect_err("outside");
        assert!(matches!(e, FsError::PermissionDenied));
        assert_eq!(std::fs::read_to_string(t.path().join("secret")).expect("read"), "s");
    }

    #[cfg(unix)]
    #[test]
    fn planted_symlink_out_of_root_is_refused() {
        let (t, ws) = ws();
        std::fs::write(t.path().join("secret"), "s").expect("plant");
        std::os::unix::fs::symlink(t.path().join("secret"), t.path().join("root/link"))
            .expect("symlink");
        assert!(ws.read_file("file:///w/link", true, 100).is_err());
        assert!(ws.write_file("file:///w/link", b"pwned", true).is_err());
        assert!(ws.canonicalize("file:///w/link").is_err());
        assert_eq!(std::fs::read_to_string(t.path().join("secret")).expect("read"), "s");
    }

    #[test]
    fn write_replaces_hard_link_instead_of_writing_through() {
        let (t, ws) = ws();
        std::fs::write(t.path().join("outside"), "orig").expect("plant");
        std::fs::hard_link(t.path().join("outside"), t.path().join("root/hl")).expect("link");
        ws.write_file("file:///w/hl", b"new", true).expect("write");
        assert_eq!(std::fs::read_to_string(t.path().join("outside")).expect("read"), "orig");
        assert_eq!(std::fs::read_to_string(t.path().join("root/hl")).expect("read"), "new");
    }

    #[cfg(unix)]
    #[test]
    fn read_only_areas_refuse_changes_even_through_symlinks() {
        let (t, ws) = ws();
        std::fs::create_dir_all(t.path().join("root/.git/refs")).expect("mkdir");
        std::fs::write(t.path().join("root/.git/config"), "c").expect("write");
        std::os::unix::fs::symlink(".git", t.path().join("root/g")).expect("symlink");
        let ws = ws.with_read_only(&[".git".into()]);
        assert!(ws.read_file("file:///w/.git/config", true, 100).is_ok(), "reads are fine");
        for uri in [
            "file:///w/.git/config",
            "file:///w/.git/new",
            "file:///w/g/config",
            "file:///w/x/../.git/config",
        ] {
            assert!(
                matches!(ws.write_file(uri, b"x", true), Err(FsError::PermissionDenied)),
                "{uri}"
            );
        }
        assert!(matches!(ws.remove("file:///w/.git", true, true), Err(FsError::PermissionDenied)));
        assert!(matches!(
            ws.create_directory("file:///w/g/refs/x", true),
            Err(FsError::PermissionDenied)
        ));
        ws.write_file("file:///w/gitignore", b"ok", true).expect("other paths stay writable");
        assert_eq!(std::fs::read_to_string(t.path().join("root/.git/config")).expect("read"), "c");
    }

    #[test]
    fn canonicalize_maps_back_to_visible_paths() {
        let (_t, ws) = ws();
        ws.create_directory("file:///w/src", true).expect("mkdir");
        ws.write_file("file:///w/src/new.txt", b"", true).expect("write");
        assert_eq!(
            ws.canonicalize("file:///w/src/../src/new.txt").expect("canon"),
            "file:///w/src/new.txt"
        );
        assert_eq!(ws.canonicalize("file:///w").expect("canon"), "file:///w");
    }
}
