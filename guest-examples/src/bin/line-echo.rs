//! Interactive: reads stdin line by line and answers each line with
//! `echo: <line>` until end of input, then prints `bye`.
use std::io::{self, BufRead, Write};

fn main() {
    let stdin = io::stdin();
    let mut out = io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(out, "echo: {line}");
        let _ = out.flush();
    }
    let _ = writeln!(out, "bye");
}
