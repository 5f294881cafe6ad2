//! Changes the filesystem the way tools do, one operation per argument, and
//! reports each: `ok <op>` or `err <op>: <error>`. Exits 1 if any failed.
//!
//! Operations (paths relative to `$PWD`):
//!   write:PATH:BYTES     create or truncate, then write BYTES bytes
//!   append:PATH:BYTES    append BYTES bytes
//!   truncate:PATH:SIZE   set the length of an existing file
//!   poke:PATH:OFFSET     create if needed, then write one byte at OFFSET
//!                        (past the end: a sparse file)
//!   mkdir:PATH           rmdir:PATH          rm:PATH
//!   rmtree:PATH          (std's remove_dir_all: opens directories and
//!                         unlinks relative to them)
//!   mv:FROM:TO           link:FROM:TO (hard link)   symlink:TARGET:LINK
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::Write;

unsafe extern "C" {
    /// wasi-libc's `symlink`; std's `symlink_path` is still unstable on WASI.
    fn symlink(target: *const std::ffi::c_char, link: *const std::ffi::c_char) -> i32;
}

fn make_symlink(target: &str, link: &str) -> std::io::Result<()> {
    let (Ok(t), Ok(l)) = (CString::new(target), CString::new(link)) else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    if unsafe { symlink(t.as_ptr(), l.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn write(path: &str, bytes: &str, append: bool) -> std::io::Result<()> {
    let n: usize =
        bytes.parse().map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut f = if append {
        OpenOptions::new().append(true).create(true).open(path)?
    } else {
        fs::File::create(path)?
    };
    // In 4 KiB writes, as tools write.
    let block = [b'x'; 4096];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        f.write_all(&block[..k])?;
        left -= k;
    }
    Ok(())
}

fn run(op: &str) -> std::io::Result<()> {
    let parts: Vec<&str> = op.splitn(3, ':').collect();
    match parts.as_slice() {
        ["write", p, n] => write(p, n, false),
        ["append", p, n] => write(p, n, true),
        ["truncate", p, n] => {
            let n =
                n.parse().map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            OpenOptions::new().write(true).open(p)?.set_len(n)
        }
        ["poke", p, n] => {
            use std::io::{Seek, SeekFrom};
            let n =
                n.parse().map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            let mut f = OpenOptions::new().write(true).create(true).truncate(false).open(p)?;
            f.seek(SeekFrom::Start(n))?;
            f.write_all(b"x")
        }
        ["mkdir", p] => fs::create_dir(p),
        ["rmdir", p] => fs::remove_dir(p),
        ["rm", p] => fs::remove_file(p),
        ["rmtree", p] => fs::remove_dir_all(p),
        ["mv", a, b] => fs::rename(a, b),
        ["link", a, b] => fs::hard_link(a, b),
        ["symlink", t, l] => make_symlink(t, l),
        _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "unknown operation")),
    }
}

fn main() {
    guest_examples::enter_pwd();
    let mut failed = false;
    for op in std::env::args().skip(1) {
        match run(&op) {
            Ok(()) => println!("ok {op}"),
            Err(e) => {
                println!("err {op}: {e}");
                failed = true;
            }
        }
    }
    std::process::exit(i32::from(failed));
}
