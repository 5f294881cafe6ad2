//! Writes the given number of 64 KiB blocks (default: endless) of `y\n`
//! lines to stdout (`flood 16` is 1 MiB).
use std::io::Write;

fn main() {
    let mib: Option<usize> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    let block = b"y\n".repeat(32 * 1024);
    let mut out = std::io::stdout().lock();
    let mut written = 0usize;
    loop {
        if let Some(limit) = mib {
            if written >= limit {
                break;
            }
        }
        if out.write_all(&block).is_err() {
            std::process::exit(141);
        }
        written += 1;
    }
}
