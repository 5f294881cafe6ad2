//! The write guard: a thin layer over wasmtime-wasi's WASI preview 1 calls
//! that change the filesystem, enforcing what cap-std alone cannot: the
//! workspace's read-only areas (`.git` by default) and its disk quota.
//!
//! cap-std already confines every path to a preopen; this layer only says
//! no to writes that are inside the root but not allowed. Each guarded call
//! (`path_open` with write intent, `fd_write`, `path_unlink_file`,
//! `path_rename`, …) is defined again on the linker, shadowing the
//! wasmtime-wasi import: it checks, then calls wasmtime-wasi's own
//! implementation with the same arguments, then accounts for what changed.
//!
//! To know where a directory descriptor points, the guard follows every
//! descriptor the guest opens (`path_open`, `fd_renumber`, `fd_close`) as a
//! root-relative path. A refused write returns `EACCES` (read-only area) or
//! `EDQUOT` (quota) to the guest, and the command's stderr names the limit.
//!
//! The read-only check resolves symlinks in the path through cap-std, as
//! `fs/*` does. Like any check-then-use on paths, it can be raced by another
//! command of the same tenant swapping a symlink in between; that can only
//! move a write to another place inside the same root, never outside it.

use crate::fs::{Workspace, quota};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};
use wiggle::GuestMemory;

/// WASI errno values (witx `errno`).
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_ACCES: i32 = 2;
const ERRNO_BADF: i32 = 8;
const ERRNO_DQUOT: i32 = 19;
const ERRNO_FAULT: i32 = 21;
const ERRNO_IO: i32 = 29;

/// `lookupflags`: follow a symbolic link at the end of the path.
const LOOKUP_SYMLINK_FOLLOW: i32 = 1;

/// `oflags`.
const O_CREAT: i32 = 1;
const O_TRUNC: i32 = 8;
/// `rights` that let a descriptor change a file's contents or size.
const RIGHTS_WRITE: i64 = (1 << 6) | (1 << 8) | (1 << 22);
/// `fdflags::append`.
const FDFLAGS_APPEND: i32 = 1;

/// Where a descriptor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The workspace root: read-only areas and the quota apply.
    Workspace,
    /// The private `/tmp`: the quota applies.
    Tmp,
    /// The read-only skeleton at `/`: wasmtime-wasi refuses writes itself.
    Skeleton,
}

#[derive(Debug)]
struct Open {
    area: Area,
    /// Path relative to the area's root, as the guest named it.
    rel: PathBuf,
    /// The file's size as last seen, for files opened to write (quota).
    size: Option<u64>,
    /// `/dev/urandom` or `/dev/random`: reads are random.
    random: bool,
    /// `/dev/stdin`, `/dev/stdout`, `/dev/stderr` or `/dev/fd/0`…`2`: reads
    /// and writes go to that standard stream of the guest.
    stream: Option<i32>,
    /// A directory being read: its listing ([`super::readdir`]).
    listing: Option<super::readdir::Listing>,
}

impl Open {
    fn new(area: Area, rel: PathBuf, size: Option<u64>) -> Self {
        let random = area == Area::Skeleton && is_random_device(&rel);
        let stream = if area == Area::Skeleton { standard_stream(&rel) } else { None };
        Self { area, rel, size, random, stream, listing: None }
    }
}

/// Per-instance state of the guard.
/// What the guard needs of a store's data: the WASI context whose calls it
/// wraps, and its own records. The store data implements it (`exec::state`),
/// so the guard does not depend on what else a store holds.
pub trait Guarded: Send + 'static {
    fn wasi(&mut self) -> &mut WasiP1Ctx;
    fn guard(&mut self) -> &mut FsGuard;
}

pub struct FsGuard {
    workspace: Workspace,
    fds: HashMap<u32, Open>,
    /// The first write refused in a read-only area (its visible path).
    pub read_only_denied: Option<String>,
    /// A write was refused for the quota.
    pub quota_denied: bool,
}

impl FsGuard {
    /// A guard for an instance whose preopens are `preopens`, in order from
    /// fd 3 (as `WasiCtxBuilder::preopened_dir` numbers them).
    pub fn new(workspace: Workspace, preopens: &[Area]) -> Self {
        let fds = preopens
            .iter()
            .enumerate()
            .map(|(i, &area)| (3 + i as u32, Open::new(area, PathBuf::from("."), None)))
            .collect();
        Self { workspace, fds, read_only_denied: None, quota_denied: false }
    }

    fn quota_applies(&self, area: Area) -> bool {
        self.workspace.quota().is_some() && matches!(area, Area::Workspace | Area::Tmp)
    }

    /// The area and relative path `path` names from descriptor `fd`.
    /// `Err(EBADF)` for a descriptor the guard does not know (every
    /// directory descriptor a guest can have is known, so this denies by
    /// default); `Ok(None)` for a path wasmtime-wasi will refuse anyway
    /// (absolute, not UTF-8).
    fn target(&self, fd: i32, path: Option<String>) -> Result<Option<(Area, PathBuf)>, i32> {
        let open = self.fds.get(&(fd as u32)).ok_or(ERRNO_BADF)?;
        Ok(path.filter(|p| !p.starts_with('/')).map(|p| (open.area, open.rel.join(p))))
    }

    /// [`target`](Self::target), then refuses a change there if it is in a
    /// read-only area.
    fn writable_target(
        &mut self,
        fd: i32,
        path: Option<String>,
    ) -> Result<Option<(Area, PathBuf)>, i32> {
        let target = self.target(fd, path)?;
        if let Some((area, rel)) = &target {
            self.check_writable(*area, rel)?;
        }
        Ok(target)
    }

    /// `EACCES` if `rel` is in a read-only area of the workspace.
    fn check_writable(&mut self, area: Area, rel: &Path) -> Result<(), i32> {
        if area != Area::Workspace || self.workspace.read_only().is_empty() {
            return Ok(());
        }
        if self.workspace.check_writable(rel).is_err() {
            if self.read_only_denied.is_none() {
                let shown = crate::fs::path::normalize_absolute(&format!(
                    "{}/{}",
                    self.workspace.visible_root().trim_end_matches('/'),
                    rel.display()
                ));
                self.read_only_denied = Some(shown);
            }
            return Err(ERRNO_ACCES);
        }
        Ok(())
    }

    /// The capability on an area's root, for sizes.
    fn dir(&self, area: Area) -> Option<&cap_std::fs::Dir> {
        match area {
            Area::Workspace => Some(self.workspace.dir()),
            Area::Tmp => self.workspace.scratch().and_then(|s| s.tmp_dir()),
            Area::Skeleton => None,
        }
    }

    /// What removing or replacing the entry at `rel` frees (as
    /// `fs::quota` counts it): a file that is this path's only link, a
    /// directory or a symlink frees what it occupies; another link to a
    /// file frees only its entry.
    fn sole_entry_size(&self, area: Area, rel: &Path) -> u64 {
        let Some(dir) = self.dir(area) else { return 0 };
        match dir.symlink_metadata(rel) {
            #[cfg(unix)]
            Ok(m) if m.is_file() && cap_std::fs::MetadataExt::nlink(&m) > 1 => quota::ENTRY,
            Ok(m) => quota::occupied(&m),
            Err(_) => 0,
        }
    }

    /// Before removing, or renaming over, the entry `path` names from `fd`:
    /// refuses it in a read-only area, else returns what the removal frees
    /// of the quota (0 where the quota does not apply).
    fn removable(&mut self, fd: i32, path: Option<String>) -> Result<u64, i32> {
        match self.writable_target(fd, path)? {
            Some((area, rel)) if self.quota_applies(area) => Ok(self.sole_entry_size(area, &rel)),
            _ => Ok(0),
        }
    }

    /// What the entry at `rel` occupies, links not followed; 0 if missing.
    fn entry_size(&self, area: Area, rel: &Path) -> u64 {
        self.dir(area).and_then(|d| d.symlink_metadata(rel).ok()).map_or(0, |m| quota::occupied(&m))
    }

    /// What the file a descriptor opened at `rel` occupies (links
    /// followed, as the open did); `None` if there is no such file.
    fn file_occupied(&self, area: Area, rel: &Path) -> Option<u64> {
        self.dir(area)
            .and_then(|d| d.metadata(rel).ok())
            .filter(|m| m.is_file())
            .map(|m| quota::occupied(&m))
    }

    fn quota_check(&mut self, growth: u64) -> Result<(), i32> {
        if let Some(q) = self.workspace.quota() {
            if q.check(growth).is_err() {
                self.quota_denied = true;
                return Err(ERRNO_DQUOT);
            }
        }
        Ok(())
    }

    fn quota_add(&self, delta: i64) {
        if let Some(q) = self.workspace.quota() {
            q.add(delta);
        }
    }
}

/// The guest's memory and its store data, as wiggle's own glue gets them.
fn split<'a, T: Guarded>(
    caller: &'a mut Caller<'_, T>,
) -> wasmtime::Result<(GuestMemory<'a>, &'a mut T)> {
    let fuel = caller.as_context_mut().hostcall_fuel();
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => {
            let (mem, state) = m.data_and_store_mut(caller);
            state.wasi().set_hostcall_fuel(fuel);
            Ok((GuestMemory::Unshared(mem), state))
        }
        _ => wasmtime::bail!("missing required memory export"),
    }
}

/// A guest string, if it is in bounds and UTF-8.
fn read_str(mem: &GuestMemory<'_>, ptr: i32, len: i32) -> Option<String> {
    let GuestMemory::Unshared(bytes) = mem else { return None };
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    let slice = bytes.get(start..start.checked_add(len)?)?;
    std::str::from_utf8(slice).ok().map(str::to_owned)
}

/// The standard stream `rel` (in the skeleton) names: `dev/stdin`,
/// `dev/stdout`, `dev/stderr`, `dev/fd/0`, `dev/fd/1`, `dev/fd/2`.
fn standard_stream(rel: &Path) -> Option<i32> {
    let rel = rel.strip_prefix(".").unwrap_or(rel);
    let name = rel.to_str()?;
    match name {
        "dev/stdin" | "dev/fd/0" => Some(0),
        "dev/stdout" | "dev/fd/1" => Some(1),
        "dev/stderr" | "dev/fd/2" => Some(2),
        _ => None,
    }
}

/// Whether `rel` (in the skeleton) is `dev/urandom` or `dev/random`.
fn is_random_device(rel: &Path) -> bool {
    let rel = rel.strip_prefix(".").unwrap_or(rel);
    rel == Path::new("dev/urandom") || rel == Path::new("dev/random")
}

/// Fills the guest's `iovec`s (pointer, length) with random bytes, at most
/// 1 MiB a call, and writes the count; the errno.
fn fill_random(mem: &mut GuestMemory<'_>, iovs: i32, count: i32, out: i32) -> i32 {
    const MAX: usize = 1 << 20;
    let mut total = 0usize;
    for i in 0..count.max(0) as u32 {
        let (Some(ptr), Some(len)) = (
            read_u32(mem, iovs.wrapping_add((i * 8) as i32)),
            read_u32(mem, iovs.wrapping_add((i * 8 + 4) as i32)),
        ) else {
            return ERRNO_FAULT;
        };
        let GuestMemory::Unshared(bytes) = &mut *mem else { return ERRNO_FAULT };
        let (start, len) = (ptr as usize, (len as usize).min(MAX - total));
        let Some(dest) = start.checked_add(len).and_then(|end| bytes.get_mut(start..end)) else {
            return ERRNO_FAULT;
        };
        if getrandom::fill(dest).is_err() {
            return ERRNO_IO;
        }
        total += len;
        if total >= MAX {
            break;
        }
    }
    write_u32(mem, out, total as u32)
}

/// `fd`'s directory listed from its entries (`exec::readdir`), or `None`
/// when wasmtime-wasi should answer: an untracked descriptor, another
/// directory at its path by now, too many entries cached.
async fn fresh_listing<T: Guarded>(
    state: &mut T,
    mem: &mut GuestMemory<'_>,
    fd: i32,
) -> Option<super::readdir::Listing> {
    // The guest's descriptor's identity, as wasmtime-wasi hashes it.
    let stat =
        state.wasi().fd_filestat_get(mem, wasmtime_wasi::p1::types::Fd::from(fd as u32)).await;
    let stat = stat.ok()?;
    if stat.filetype != wasmtime_wasi::p1::types::Filetype::Directory {
        return None;
    }
    let guard = state.guard();
    let open = guard.fds.get(&(fd as u32))?;
    let root = guard.dir(open.area)?;
    let cached: usize =
        guard.fds.values().filter_map(|o| o.listing.as_ref()).map(|l| l.len()).sum();
    let room = super::readdir::MAX_CACHED_ENTRIES.saturating_sub(cached);
    super::readdir::list(root, &open.rel, stat.ino, room)
}

/// `path_filestat_get` from a preopened root (wasi-libc resolves every
/// path against one): the attributes from one stat through cap-std, built
/// into the `filestat` wasmtime-wasi would write. wasmtime-wasi stats the
/// path twice (once for the attributes, once for the `ino` hash), and each
/// is an open beneath the root, an `fstat` and a close. `None`: let
/// wasmtime-wasi answer (another descriptor, an absolute path or one with
/// `..` or a trailing `/`, any error, a time before 1970, a socket).
fn quick_filestat<T: Guarded>(state: &mut T, fd: i32, flags: i32, path: &str) -> Option<[u8; 64]> {
    use cap_std::fs::MetadataExt;
    let guard = state.guard();
    let open = guard.fds.get(&(fd as u32))?;
    if open.rel != Path::new(".") {
        return None;
    }
    let dir = guard.dir(open.area)?;
    if path.is_empty()
        || path.starts_with('/')
        || path.ends_with('/')
        || path.split('/').any(|c| c == "..")
    {
        return None;
    }
    let meta = if flags & LOOKUP_SYMLINK_FOLLOW != 0 {
        dir.metadata(path)
    } else {
        dir.symlink_metadata(path)
    }
    .ok()?;
    let ft = rustix::fs::FileType::from_raw_mode(meta.mode());
    if ft == rustix::fs::FileType::Socket {
        // wasmtime-wasi traps on a socket; leave that to it.
        return None;
    }
    let filetype = super::readdir::filetype_code(ft)?;
    // Nanoseconds since 1970, as wasmtime-wasi converts them; a time it
    // cannot have is zero there.
    let nanos = |t: std::io::Result<cap_std::time::SystemTime>| -> Option<u64> {
        let Ok(t) = t else { return Some(0) };
        let d = t.into_std().duration_since(std::time::UNIX_EPOCH).ok()?;
        d.as_secs().checked_mul(1_000_000_000)?.checked_add(u64::from(d.subsec_nanos()))
    };
    let mut out = [0u8; 64];
    out[0..8].copy_from_slice(&1u64.to_le_bytes());
    out[8..16].copy_from_slice(&super::readdir::ino_hash(meta.dev(), meta.ino()).to_le_bytes());
    out[16] = filetype;
    out[24..32].copy_from_slice(&meta.nlink().to_le_bytes());
    out[32..40].copy_from_slice(&meta.len().to_le_bytes());
    out[40..48].copy_from_slice(&nanos(meta.accessed())?.to_le_bytes());
    out[48..56].copy_from_slice(&nanos(meta.modified())?.to_le_bytes());
    out[56..64].copy_from_slice(&nanos(meta.created())?.to_le_bytes());
    Some(out)
}

/// `subscription` (48 bytes): userdata u64, then the tag (u8 at 8: 0 is
/// clock) and, for a clock, id u32 at 16, timeout u64 at 24, precision
/// u64 at 32, flags u16 at 40 (1: absolute). A relative clock's userdata
/// and timeout.
fn relative_sleep(mem: &GuestMemory<'_>, ptr: i32) -> Option<(u64, u64)> {
    let GuestMemory::Unshared(bytes) = mem else { return None };
    let start = ptr as u32 as usize;
    let sub = bytes.get(start..start.checked_add(48)?)?;
    let u64_at = |i: usize| u64::from_le_bytes(sub[i..i + 8].try_into().unwrap_or([0; 8]));
    let flags = u16::from_le_bytes([sub[40], sub[41]]);
    (sub[8] == 0 && flags & 1 == 0).then(|| (u64_at(0), u64_at(24)))
}

/// Writes one clock `event` (32 bytes: userdata u64, error u16, type u8 at
/// 10, then an unused fd_readwrite) and its count; the errno.
fn write_clock_event(mem: &mut GuestMemory<'_>, events: i32, userdata: u64, out: i32) -> i32 {
    let GuestMemory::Unshared(bytes) = mem else { return ERRNO_FAULT };
    let mut event = [0u8; 32];
    event[..8].copy_from_slice(&userdata.to_le_bytes());
    event[10] = 0; // eventtype::clock
    let (e, o) = (events as u32 as usize, out as u32 as usize);
    let (Some(e_end), Some(o_end)) = (e.checked_add(32), o.checked_add(4)) else {
        return ERRNO_FAULT;
    };
    if e_end > bytes.len() || o_end > bytes.len() {
        return ERRNO_FAULT;
    }
    bytes[e..e_end].copy_from_slice(&event);
    bytes[o..o_end].copy_from_slice(&1u32.to_le_bytes());
    ERRNO_SUCCESS
}

/// Writes `value` at `ptr` (a result count); the errno.
fn write_u32(mem: &mut GuestMemory<'_>, ptr: i32, value: u32) -> i32 {
    let GuestMemory::Unshared(bytes) = mem else { return ERRNO_FAULT };
    let start = ptr as u32 as usize;
    match start.checked_add(4).and_then(|end| bytes.get_mut(start..end)) {
        Some(slot) => {
            slot.copy_from_slice(&value.to_le_bytes());
            ERRNO_SUCCESS
        }
        None => ERRNO_FAULT,
    }
}

fn read_u32(mem: &GuestMemory<'_>, ptr: i32) -> Option<u32> {
    let GuestMemory::Unshared(bytes) = mem else { return None };
    let start = ptr as u32 as usize;
    let b = bytes.get(start..start.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Total bytes of an iovec array (`ciovec`: pointer, length).
fn iovec_len(mem: &GuestMemory<'_>, ptr: i32, count: i32) -> u64 {
    (0..count.max(0) as u32)
        .filter_map(|i| read_u32(mem, ptr.wrapping_add((i * 8 + 4) as i32)))
        .map(u64::from)
        .sum()
}

/// After a write to (or a resize of) `fd`, counts what the file occupies
/// now against what it did.
fn account_write<T: Guarded>(state: &mut T, fd: i32) {
    let guard = state.guard();
    let Some(Open { area, rel, size: Some(old), .. }) = guard.fds.get(&(fd as u32)) else { return };
    let (area, old) = (*area, *old);
    if let Some(new) = guard.file_occupied(area, rel) {
        guard.quota_add(new as i64 - old as i64);
        if let Some(o) = guard.fds.get_mut(&(fd as u32)) {
            o.size = Some(new);
        }
    }
}

/// Before a write of `len` bytes to `fd`: refuses it when it could pass the
/// quota. (The check assumes the write allocates all of `len` and its
/// partial blocks; the accounting afterwards uses what the file occupies.)
fn check_write<T: Guarded>(state: &mut T, fd: i32, len: u64) -> Result<(), i32> {
    match state.guard().fds.get(&(fd as u32)) {
        Some(Open { size: Some(_), .. }) => {
            state.guard().quota_check(len.saturating_add(quota::WRITE_SLACK))
        }
        _ => Ok(()),
    }
}

/// Before creating an entry at `target`: refuses it when one more entry
/// would pass the quota. Returns where to count it afterwards.
fn check_new_entry<T: Guarded>(
    state: &mut T,
    target: Option<(Area, PathBuf)>,
) -> Result<Option<(Area, PathBuf)>, i32> {
    match target {
        Some((area, rel)) if state.guard().quota_applies(area) => {
            state.guard().quota_check(quota::ENTRY)?;
            Ok(Some((area, rel)))
        }
        _ => Ok(None),
    }
}

/// Shadows the guarded WASI calls on `linker` (after wasmtime-wasi's own).
pub fn add_to_linker<T: Guarded>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap_async(
        M,
        "path_open",
        |mut caller: Caller<'_, T>,
         (fd, dirflags, path_ptr, path_len, oflags, base, inheriting, fdflags, out): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i64,
            i64,
            i32,
            i32,
        )| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let path = read_str(&mem, path_ptr, path_len);
                // A standard stream by name (`/dev/stdout`): the skeleton's
                // placeholder, opened to read; its reads and writes go to
                // the stream (`fd_read`, `fd_write` below).
                let stream = matches!(
                    state.guard().target(fd, path.clone()),
                    Ok(Some((Area::Skeleton, ref rel))) if standard_stream(rel).is_some()
                );
                let (oflags, base, fdflags) = if stream {
                    (oflags & !(O_CREAT | O_TRUNC), base & !RIGHTS_WRITE, fdflags & !FDFLAGS_APPEND)
                } else {
                    (oflags, base, fdflags)
                };
                let writes = oflags & (O_CREAT | O_TRUNC) != 0
                    || base & RIGHTS_WRITE != 0
                    || fdflags & FDFLAGS_APPEND != 0;
                let target = if writes {
                    state.guard().writable_target(fd, path)
                } else {
                    state.guard().target(fd, path)
                };
                let target = match target {
                    Ok(t) => t,
                    Err(errno) => return Ok(errno),
                };
                // What the file occupied before: the open may create it (an
                // entry more) or truncate it (its blocks freed).
                let mut before = None;
                if let (true, Some((area, rel))) = (writes, &target) {
                    if state.guard().quota_applies(*area) {
                        let had = state.guard().file_occupied(*area, rel);
                        if had.is_none() && oflags & O_CREAT != 0 {
                            if let Err(errno) = state.guard().quota_check(quota::ENTRY) {
                                return Ok(errno);
                            }
                        }
                        before = Some(had.unwrap_or(0));
                    }
                }
                let errno = p1::path_open(
                    state.wasi(),
                    &mut mem,
                    fd,
                    dirflags,
                    path_ptr,
                    path_len,
                    oflags,
                    base,
                    inheriting,
                    fdflags,
                    out,
                )
                .await?;
                if errno != ERRNO_SUCCESS {
                    return Ok(errno);
                }
                let Some(new_fd) = read_u32(&mem, out) else { return Ok(errno) };
                match target {
                    Some((area, rel)) => {
                        let size = match before {
                            Some(before) => {
                                let now = state.guard().file_occupied(area, &rel);
                                let now = now.unwrap_or(before);
                                state.guard().quota_add(now as i64 - before as i64);
                                Some(now)
                            }
                            None => None,
                        };
                        state.guard().fds.insert(new_fd, Open::new(area, rel, size));
                    }
                    None => {
                        state.guard().fds.remove(&new_fd);
                    }
                }
                Ok(errno)
            })
        },
    )?;
    // A guest's plain sleep (one relative clock subscription). The WASI
    // context lets filesystem calls block their guest thread (so that a
    // file opened in a subdirectory does not hop to the blocking pool on
    // every read and stat), and with that flag wasmtime-wasi would sleep
    // with `std::thread::sleep`: a guest thread held, and a sleep no limit
    // or `process/terminate` could cut short. It is a timer here instead.
    linker.func_wrap_async(
        M,
        "poll_oneoff",
        |mut caller: Caller<'_, T>, (subs, events, n, out): (i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                if n == 1 {
                    if let Some((userdata, nanos)) = relative_sleep(&mem, subs) {
                        tokio::time::sleep(std::time::Duration::from_nanos(nanos)).await;
                        let (mut mem, _) = split(&mut caller)?;
                        return Ok(write_clock_event(&mut mem, events, userdata, out));
                    }
                }
                p1::poll_oneoff(state.wasi(), &mut mem, subs, events, n, out).await
            })
        },
    )?;
    // `/dev/urandom` and `/dev/random`: reads get random bytes.
    linker.func_wrap_async(
        M,
        "fd_read",
        |mut caller: Caller<'_, T>, (fd, iovs, count, out): (i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let (random, stream) = match state.guard().fds.get(&(fd as u32)) {
                    Some(o) => (o.random, o.stream),
                    None => (false, None),
                };
                if random {
                    return Ok(fill_random(&mut mem, iovs, count, out));
                }
                let fd = stream.unwrap_or(fd);
                p1::fd_read(state.wasi(), &mut mem, fd, iovs, count, out).await
            })
        },
    )?;
    // Directory listings without a stat per entry (`exec::readdir`).
    linker.func_wrap_async(
        M,
        "fd_readdir",
        |mut caller: Caller<'_, T>, (fd, buf, len, cookie, out): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let key = fd as u32;
                let listed = state.guard().fds.get(&key).is_some_and(|o| o.listing.is_some());
                if cookie == 0 || !listed {
                    let listing =
                        if cookie == 0 { fresh_listing(state, &mut mem, fd).await } else { None };
                    let Some(open) = state.guard().fds.get_mut(&key) else {
                        return p1::fd_readdir(state.wasi(), &mut mem, fd, buf, len, cookie, out)
                            .await;
                    };
                    open.listing = listing;
                    if open.listing.is_none() {
                        return p1::fd_readdir(state.wasi(), &mut mem, fd, buf, len, cookie, out)
                            .await;
                    }
                }
                let Some(listing) = state.guard().fds.get(&key).and_then(|o| o.listing.as_ref())
                else {
                    return Ok(ERRNO_BADF);
                };
                let GuestMemory::Unshared(bytes) = &mut mem else { return Ok(ERRNO_FAULT) };
                let (start, len) = (buf as u32 as usize, len as u32 as usize);
                let Some(dest) = start.checked_add(len).and_then(|end| bytes.get_mut(start..end))
                else {
                    return Ok(ERRNO_FAULT);
                };
                let used = super::readdir::fill(listing, cookie as u64, dest) as u32;
                Ok(write_u32(&mut mem, out, used))
            })
        },
    )?;
    // A path's attributes with one stat instead of two (`quick_filestat`).
    linker.func_wrap_async(
        M,
        "path_filestat_get",
        |mut caller: Caller<'_, T>,
         (fd, flags, path_ptr, path_len, out): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let quick = read_str(&mem, path_ptr, path_len)
                    .and_then(|path| quick_filestat(state, fd, flags, &path));
                if let Some(stat) = quick {
                    let GuestMemory::Unshared(bytes) = &mut mem else { return Ok(ERRNO_FAULT) };
                    let start = out as u32 as usize;
                    let Some(dest) =
                        start.checked_add(64).and_then(|end| bytes.get_mut(start..end))
                    else {
                        return Ok(ERRNO_FAULT);
                    };
                    // The fields only: the padding after `filetype` is
                    // left as it was, as wasmtime-wasi leaves it.
                    dest[..17].copy_from_slice(&stat[..17]);
                    dest[24..].copy_from_slice(&stat[24..]);
                    return Ok(ERRNO_SUCCESS);
                }
                p1::path_filestat_get(state.wasi(), &mut mem, fd, flags, path_ptr, path_len, out)
                    .await
            })
        },
    )?;
    linker.func_wrap_async(M, "fd_close", |mut caller: Caller<'_, T>, (fd,): (i32,)| {
        Box::new(async move {
            let (mut mem, state) = split(&mut caller)?;
            let errno = p1::fd_close(state.wasi(), &mut mem, fd).await?;
            if errno == ERRNO_SUCCESS {
                state.guard().fds.remove(&(fd as u32));
            }
            Ok(errno)
        })
    })?;
    linker.func_wrap_async(
        M,
        "fd_renumber",
        |mut caller: Caller<'_, T>, (from, to): (i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let errno = p1::fd_renumber(state.wasi(), &mut mem, from, to).await?;
                if errno == ERRNO_SUCCESS {
                    match state.guard().fds.remove(&(from as u32)) {
                        Some(open) => state.guard().fds.insert(to as u32, open),
                        None => state.guard().fds.remove(&(to as u32)),
                    };
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "fd_write",
        |mut caller: Caller<'_, T>, (fd, iovs, count, out): (i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                // A standard stream by name writes to the stream's descriptor,
                // under the same accounting as a write to it (a guest may
                // have closed its stdout and opened a file in its place).
                let fd = state.guard().fds.get(&(fd as u32)).and_then(|o| o.stream).unwrap_or(fd);
                let tracked = state.guard().fds.get(&(fd as u32)).is_some_and(|o| o.size.is_some());
                if tracked {
                    if let Err(errno) = check_write(state, fd, iovec_len(&mem, iovs, count)) {
                        return Ok(errno);
                    }
                }
                let errno = p1::fd_write(state.wasi(), &mut mem, fd, iovs, count, out).await?;
                if tracked && errno == ERRNO_SUCCESS {
                    account_write(state, fd);
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "fd_pwrite",
        |mut caller: Caller<'_, T>, (fd, iovs, count, offset, out): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let tracked = state.guard().fds.get(&(fd as u32)).is_some_and(|o| o.size.is_some());
                if tracked {
                    if let Err(errno) = check_write(state, fd, iovec_len(&mem, iovs, count)) {
                        return Ok(errno);
                    }
                }
                let errno =
                    p1::fd_pwrite(state.wasi(), &mut mem, fd, iovs, count, offset, out).await?;
                if tracked && errno == ERRNO_SUCCESS {
                    account_write(state, fd);
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "fd_filestat_set_size",
        |mut caller: Caller<'_, T>, (fd, size): (i32, i64)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                // Growing a file's length allocates no blocks (it is sparse
                // until written): it is counted by what it occupies after.
                let old = state.guard().fds.get(&(fd as u32)).and_then(|o| o.size);
                let errno = p1::fd_filestat_set_size(state.wasi(), &mut mem, fd, size).await?;
                if old.is_some() && errno == ERRNO_SUCCESS {
                    account_write(state, fd);
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_create_directory",
        |mut caller: Caller<'_, T>, (fd, ptr, len): (i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let counted = match state.guard().writable_target(fd, read_str(&mem, ptr, len)) {
                    Err(errno) => return Ok(errno),
                    Ok(target) => match check_new_entry(state, target) {
                        Err(errno) => return Ok(errno),
                        Ok(counted) => counted,
                    },
                };
                let errno = p1::path_create_directory(state.wasi(), &mut mem, fd, ptr, len).await?;
                if let (ERRNO_SUCCESS, Some((area, rel))) = (errno, counted) {
                    let size = state.guard().entry_size(area, &rel);
                    state.guard().quota_add(size as i64);
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_remove_directory",
        |mut caller: Caller<'_, T>, (fd, ptr, len): (i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let freed = match state.guard().removable(fd, read_str(&mem, ptr, len)) {
                    Ok(freed) => freed,
                    Err(errno) => return Ok(errno),
                };
                let errno = p1::path_remove_directory(state.wasi(), &mut mem, fd, ptr, len).await?;
                if errno == ERRNO_SUCCESS {
                    state.guard().quota_add(-(freed as i64));
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_unlink_file",
        |mut caller: Caller<'_, T>, (fd, ptr, len): (i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let freed = match state.guard().removable(fd, read_str(&mem, ptr, len)) {
                    Ok(freed) => freed,
                    Err(errno) => return Ok(errno),
                };
                let errno = p1::path_unlink_file(state.wasi(), &mut mem, fd, ptr, len).await?;
                if errno == ERRNO_SUCCESS {
                    state.guard().quota_add(-(freed as i64));
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_rename",
        |mut caller: Caller<'_, T>,
         (fd, ptr, len, new_fd, new_ptr, new_len): (i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                if let Err(errno) = state.guard().writable_target(fd, read_str(&mem, ptr, len)) {
                    return Ok(errno);
                }
                // Renaming over an entry frees it.
                let freed = match state.guard().removable(new_fd, read_str(&mem, new_ptr, new_len))
                {
                    Ok(freed) => freed,
                    Err(errno) => return Ok(errno),
                };
                let errno =
                    p1::path_rename(state.wasi(), &mut mem, fd, ptr, len, new_fd, new_ptr, new_len)
                        .await?;
                if errno == ERRNO_SUCCESS {
                    state.guard().quota_add(-(freed as i64));
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_link",
        |mut caller: Caller<'_, T>,
         (fd, flags, ptr, len, new_fd, new_ptr, new_len): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                // Both ends: a new name for a read-only file would let the
                // guest change it through that name.
                let mut counted = None;
                for (fd, ptr, len) in [(fd, ptr, len), (new_fd, new_ptr, new_len)] {
                    let target = read_str(&mem, ptr, len);
                    match state.guard().writable_target(fd, target) {
                        Err(errno) => return Ok(errno),
                        Ok(target) => counted = target,
                    }
                }
                // The new name is an entry more (the file's blocks are
                // counted once already).
                let counted = match check_new_entry(state, counted) {
                    Err(errno) => return Ok(errno),
                    Ok(counted) => counted,
                };
                let errno = p1::path_link(
                    state.wasi(),
                    &mut mem,
                    fd,
                    flags,
                    ptr,
                    len,
                    new_fd,
                    new_ptr,
                    new_len,
                )
                .await?;
                if let (ERRNO_SUCCESS, Some(_)) = (errno, counted) {
                    state.guard().quota_add(quota::ENTRY as i64);
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_symlink",
        |mut caller: Caller<'_, T>, (old_ptr, old_len, fd, ptr, len): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let counted = match state.guard().writable_target(fd, read_str(&mem, ptr, len)) {
                    Err(errno) => return Ok(errno),
                    Ok(target) => match check_new_entry(state, target) {
                        Err(errno) => return Ok(errno),
                        Ok(counted) => counted,
                    },
                };
                let errno =
                    p1::path_symlink(state.wasi(), &mut mem, old_ptr, old_len, fd, ptr, len)
                        .await?;
                if let (ERRNO_SUCCESS, Some((area, rel))) = (errno, counted) {
                    let size = state.guard().entry_size(area, &rel);
                    state.guard().quota_add(size as i64);
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_filestat_set_times",
        |mut caller: Caller<'_, T>,
         (fd, flags, ptr, len, atim, mtim, fst): (i32, i32, i32, i32, i64, i64, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                if let Err(errno) = state.guard().writable_target(fd, read_str(&mem, ptr, len)) {
                    return Ok(errno);
                }
                p1::path_filestat_set_times(
                    state.wasi(),
                    &mut mem,
                    fd,
                    flags,
                    ptr,
                    len,
                    atim,
                    mtim,
                    fst,
                )
                .await
            })
        },
    )?;
    Ok(())
}
