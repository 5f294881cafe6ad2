//! Exits with the status given as its first argument (default 0), after
//! writing a line to stdout and one to stderr.
fn main() {
    let code: i32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    println!("exiting with {code}");
    eprintln!("this goes to stderr");
    std::process::exit(code);
}
