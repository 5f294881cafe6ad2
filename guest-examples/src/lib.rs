//! Shared start-up code for the example guests.
//!
//! Rust programs on `wasm32-wasip1` start with the current directory set to
//! `/` and ignore `PWD`. The server passes the requested working directory in
//! `PWD`, so every example calls [`enter_pwd`] first; relative paths then
//! resolve the way a native program's would.

/// Change into `$PWD` when it is set. Failure is ignored: the program then
/// runs from `/`, which is what it would have done anyway.
pub fn enter_pwd() {
    if let Ok(pwd) = std::env::var("PWD") {
        let _ = std::env::set_current_dir(pwd);
    }
}
