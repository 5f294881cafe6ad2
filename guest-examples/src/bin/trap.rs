//! Executes `unreachable`: the server must report a trap (status 134) with a
//! one-line diagnostic on stderr.
fn main() {
    println!("about to trap");
    std::process::abort();
}
