//! `fd_readdir` without a stat per entry, and without reading the whole
//! directory again on every call.
//!
//! wasmtime-wasi answers each `fd_readdir` by reading the whole directory,
//! stat-ing every entry twice (once for its type, once to hash its device
//! and inode into a `d_ino`), and then skipping to the cookie. A guest that
//! reads a directory of `n` entries in `k` buffers does `2·n·k` stats.
//! `find`, `grep -r` and `rg` do this for every directory they walk.
//!
//! Here the directory is listed once when it is opened for reading (cookie
//! 0), from the entries' own `d_type` and `d_ino`, and later calls (cookies
//! past 0) are served from that listing. The bytes are the ones
//! wasmtime-wasi would write. `.` and `..` come first, then the entries in
//! the kernel's order, and `d_ino` is the same hash of (device, inode) that
//! its `fd_filestat_get` and `path_filestat_get` report as `ino`.
//!
//! The directory is opened again through cap-std, by the path the guard
//! recorded for the descriptor, beneath the same root. Before it is used,
//! its identity is checked against the guest's descriptor (the
//! `fd_filestat_get` hash), so a directory renamed or replaced since it was
//! opened is never listed in its place. Any doubt (an untracked descriptor,
//! a mismatch, a name that is not UTF-8, a very large directory) falls back
//! to wasmtime-wasi's own implementation.

use std::hash::{Hash, Hasher};

/// Entries cached at most per instance, all directories together; a larger
/// directory is read by wasmtime-wasi itself.
pub const MAX_CACHED_ENTRIES: usize = 100_000;

/// Size of a `dirent` header in guest memory.
const DIRENT_SIZE: usize = 24;

/// p1 `filetype` codes.
const FILETYPE_UNKNOWN: u8 = 0;
const FILETYPE_BLOCK_DEVICE: u8 = 1;
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;
const FILETYPE_SYMBOLIC_LINK: u8 = 7;

/// One directory's entries, as the guest sees them.
#[derive(Debug)]
pub struct Listing {
    /// `d_ino` of `.` and `..` (wasmtime-wasi reports the directory's own).
    dir_ino: u64,
    /// `(d_ino, d_type, name)`, in the kernel's order.
    entries: Vec<(u64, u8, String)>,
}

impl Listing {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The `d_ino` wasmtime-wasi gives a file: `MetadataHashValue::lower`, std's
/// `DefaultHasher` (fixed keys) over `(dev, ino)`.
pub fn ino_hash(dev: u64, ino: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (dev, ino).hash(&mut h);
    h.finish()
}

/// The p1 `filetype` wasmtime-wasi reports for a file of type `ft` (a fifo
/// and a socket are "unknown"); `None` for a type the kernel did not say.
pub fn filetype_code(ft: rustix::fs::FileType) -> Option<u8> {
    use rustix::fs::FileType;
    Some(match ft {
        FileType::Directory => FILETYPE_DIRECTORY,
        FileType::RegularFile => FILETYPE_REGULAR_FILE,
        FileType::Symlink => FILETYPE_SYMBOLIC_LINK,
        FileType::CharacterDevice => FILETYPE_CHARACTER_DEVICE,
        FileType::BlockDevice => FILETYPE_BLOCK_DEVICE,
        FileType::Socket | FileType::Fifo => FILETYPE_UNKNOWN,
        FileType::Unknown => return None,
    })
}

/// Lists the directory at `rel` beneath `root`, if its identity hashes to
/// `expected_ino` (the guest's descriptor's `ino`) and it is small enough.
/// `None`: let wasmtime-wasi answer.
///
/// The directory is opened once, to read, through cap-std, and its entries
/// are read from that descriptor (cap-std's `entries()` would open it twice
/// more, as `.`): one open, one stat and the reads per directory.
pub fn list(
    root: &cap_std::fs::Dir,
    rel: &std::path::Path,
    expected_ino: u64,
    room: usize,
) -> Option<Listing> {
    use cap_std::fs::{MetadataExt, OpenOptionsExt};
    let rel = if rel.as_os_str().is_empty() { std::path::Path::new(".") } else { rel };
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true).custom_flags(libc::O_DIRECTORY);
    let file = root.open_with(rel, &opts).ok()?;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let dir_ino = ino_hash(dev, meta.ino());
    if dir_ino != expected_ino {
        return None;
    }
    let fd: std::os::fd::OwnedFd = file.into_std().into();
    let mut dir = rustix::fs::Dir::new(fd).ok()?;
    let mut entries = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.ok()?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if entries.len() >= room {
            return None;
        }
        let name = std::str::from_utf8(name).ok()?.to_owned();
        // wasmtime-wasi traps on a socket in a directory; a guest listing
        // one gets "unknown" here instead. No `d_type` from this filesystem
        // (`None`): wasmtime-wasi asks.
        let code = filetype_code(entry.file_type())?;
        entries.push((ino_hash(dev, entry.ino()), code, name));
    }
    Some(Listing { dir_ino, entries })
}

/// Writes the entries from `cookie` on into `buf` (the guest's buffer) as
/// wasmtime-wasi does: each `dirent` then its name, the last one cut at the
/// buffer's end. Returns the bytes used (`buf.len()` when it is full).
pub fn fill(listing: &Listing, cookie: u64, buf: &mut [u8]) -> usize {
    let dots =
        [(listing.dir_ino, FILETYPE_DIRECTORY, "."), (listing.dir_ino, FILETYPE_DIRECTORY, "..")];
    let all = dots
        .into_iter()
        .chain(listing.entries.iter().map(|(ino, ft, name)| (*ino, *ft, name.as_str())));
    let skip = usize::try_from(cookie).unwrap_or(usize::MAX);
    let mut used = 0;
    for (i, (ino, ft, name)) in all.enumerate().skip(skip) {
        let mut dirent = [0u8; DIRENT_SIZE];
        dirent[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        dirent[8..16].copy_from_slice(&ino.to_le_bytes());
        dirent[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
        dirent[20] = ft;
        for part in [&dirent[..], name.as_bytes()] {
            let n = part.len().min(buf.len() - used);
            buf[used..used + n].copy_from_slice(&part[..n]);
            used += n;
            if used == buf.len() {
                return used;
            }
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_as_wasmtime_wasi_does() {
        let l = Listing { dir_ino: 7, entries: vec![(9, FILETYPE_REGULAR_FILE, "ab".into())] };
        let mut buf = vec![0u8; 200];
        let n = fill(&l, 0, &mut buf);
        assert_eq!(n, 3 * DIRENT_SIZE + 1 + 2 + 2);
        // `.`: next 1, ino 7, namlen 1, directory.
        assert_eq!(&buf[0..8], &1u64.to_le_bytes());
        assert_eq!(&buf[8..16], &7u64.to_le_bytes());
        assert_eq!(&buf[16..20], &1u32.to_le_bytes());
        assert_eq!(buf[20], FILETYPE_DIRECTORY);
        assert_eq!(buf[24], b'.');
        // The file, third: next 3.
        let f = 2 * DIRENT_SIZE + 3;
        assert_eq!(&buf[f..f + 8], &3u64.to_le_bytes());
        assert_eq!(buf[f + 20], FILETYPE_REGULAR_FILE);
        assert_eq!(&buf[f + 24..f + 26], b"ab");
        // From cookie 2: only the file.
        assert_eq!(fill(&l, 2, &mut buf), DIRENT_SIZE + 2);
        assert_eq!(fill(&l, 3, &mut buf), 0);
        // A small buffer is filled to its end.
        let mut small = vec![0u8; 30];
        assert_eq!(fill(&l, 0, &mut small), 30);
    }
}
