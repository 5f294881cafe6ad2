//! Appends `tick N` lines to the file named by its first argument (relative
//! to `$PWD`) every 20 ms, forever, and echoes each to stdout. Tests use it
//! to see that a command really stopped: the file stops growing.
use std::io::Write;

fn main() {
    guest_examples::enter_pwd();
    let path = std::env::args().nth(1).unwrap_or_else(|| "ticks.txt".into());
    for n in 0u64.. {
        let mut f = match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("ticker: {path}: {e}");
                std::process::exit(1);
            }
        };
        let _ = writeln!(f, "tick {n}");
        println!("tick {n}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
