//! `cat`: copies each named file, or stdin when none is named (or for `-`),
//! to stdout. A file that cannot be opened is reported on stderr and makes
//! the exit status 1, as with coreutils.
use std::io::{self, Read, Write};

fn copy(mut input: impl Read, out: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

fn main() {
    guest_examples::enter_pwd();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        args.push("-".into());
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut status = 0;
    for name in args {
        let result = if name == "-" {
            copy(io::stdin().lock(), &mut out)
        } else {
            match std::fs::File::open(&name) {
                Ok(f) => copy(f, &mut out),
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
            eprintln!("cat-files: {name}: {e}");
            status = 1;
        }
    }
    std::process::exit(status);
}
