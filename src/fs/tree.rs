//! Removing a directory tree whose shape its author chose.
//!
//! A guest can nest directories as deep as its disk quota allows (it opens
//! each new directory and makes the next inside it, so no path is ever
//! long). The standard library's and cap-std's `remove_dir_all` recurse once
//! per level: a tree some ten thousand levels deep overflows the removing
//! thread's stack, which aborts the whole process. Here the recursion and
//! the descriptors held stay bounded however deep the tree is: directories
//! deeper than [`MAX_DEPTH`] below the top are first moved up to the top
//! (a rename within the tree) and emptied in a later pass. Nothing is
//! followed: every call is relative to a directory descriptor opened with
//! `O_NOFOLLOW`, and links are removed as entries.

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// Levels below the top that are emptied in place; deeper directories are
/// moved up to the top first.
const MAX_DEPTH: usize = 32;

/// Removes the directory at `path` and everything in it (a link or a file
/// there is removed itself, never followed).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let top = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        // Not a directory (a link or a file): the entry itself goes.
        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return std::fs::remove_file(path);
        }
        Err(e) => return Err(e.into()),
    };
    remove_contents(top.as_fd())?;
    std::fs::remove_dir(path)
}

/// Removes everything inside the open directory `top`, leaving it empty.
pub fn remove_contents(top: BorrowedFd<'_>) -> io::Result<()> {
    let mut hoisted = 0u64;
    clear(top, top, 0, &mut hoisted)
}

/// Empties `dir`, `depth` levels below `top`: passes until one finds
/// nothing (directories moved up to the top appear there during a pass).
fn clear(
    top: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    depth: usize,
    hoisted: &mut u64,
) -> io::Result<()> {
    while pass(top, dir, depth, hoisted)? {}
    Ok(())
}

/// One pass over `dir`'s entries: files and links are removed, directories
/// emptied and removed (or, at the depth limit, moved up to the top).
/// Returns whether it found any entry.
fn pass(
    top: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    depth: usize,
    hoisted: &mut u64,
) -> io::Result<bool> {
    let mut found = false;
    // Opened afresh for reading: `dir` may be an `O_PATH` descriptor (as
    // cap-std opens directories), which cannot list.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut entries = Dir::new(rustix::fs::openat(dir, c".", flags, Mode::empty())?)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        found = true;
        let is_dir = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => {
                let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                FileType::from_raw_mode(stat.st_mode) == FileType::Directory
            }
            _ => false,
        };
        if !is_dir {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        } else if depth + 1 >= MAX_DEPTH {
            hoist(top, dir, name, hoisted)?;
        } else {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let child = rustix::fs::openat(dir, name, flags, Mode::empty())?;
            clear(top, child.as_fd(), depth + 1, hoisted)?;
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
        }
    }
    Ok(found)
}

/// Moves the directory `name` in `dir` up to `top`, under a name of its own.
fn hoist(
    top: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &CStr,
    hoisted: &mut u64,
) -> io::Result<()> {
    loop {
        *hoisted += 1;
        let to = format!(".wes-removing-{hoisted}");
        match rustix::fs::renameat(dir, name, top, to.as_str()) {
            // The name is taken (by a directory of the tree): the next.
            Err(rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree `depth` levels deep, made as a guest makes it (each level
    /// opened, the next made inside), with a file and a link on each level.
    fn deep_tree(at: &Path, depth: usize, outside: &Path) {
        std::fs::create_dir(at).expect("top");
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut fd = rustix::fs::open(at, flags, Mode::empty()).expect("open top");
        for _ in 0..depth {
            rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).expect("mkdir");
            let file = rustix::fs::openat(
                &fd,
                "f",
                OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .expect("file");
            drop(file);
            rustix::fs::symlinkat(outside, &fd, "out").expect("link");
            fd = rustix::fs::openat(&fd, "d", flags, Mode::empty()).expect("open level");
        }
    }

    #[test]
    fn a_tree_deeper_than_the_stack_allows_is_removed_and_links_are_not_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::write(outside.join("canary"), "keep").expect("canary");
        let top = tmp.path().join("top");
        deep_tree(&top, 5_000, &outside);
        // A small stack: recursing once per level would overflow it
        // (and abort the test run).
        let removal = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn({
                let top = top.clone();
                move || remove_tree(&top)
            })
            .expect("thread");
        removal.join().expect("no overflow").expect("removed");
        assert!(!top.exists(), "the tree is gone");
        assert_eq!(std::fs::read_to_string(outside.join("canary")).expect("canary"), "keep");
    }

    #[test]
    fn a_deep_tree_is_emptied_through_a_cap_std_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        deep_tree(&tmp.path().join("top"), 5_000, &outside);
        let root = cap_std::fs::Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())
            .expect("root");
        // cap-std opens directories `O_PATH`, which cannot be listed as is.
        let top = root.open_dir("top").expect("top");
        let emptied = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || remove_contents(top.as_fd()))
            .expect("thread");
        emptied.join().expect("no overflow").expect("emptied");
        root.remove_dir("top").expect("empty, so removable");
        assert!(outside.is_dir());
    }

    #[test]
    fn a_link_or_a_file_at_the_path_is_removed_itself() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::write(outside.join("canary"), "keep").expect("canary");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).expect("link");
        remove_tree(&link).expect("link removed");
        assert!(link.symlink_metadata().is_err());
        assert!(outside.join("canary").is_file());
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").expect("file");
        remove_tree(&file).expect("file removed");
        assert!(!file.exists());
    }
}
