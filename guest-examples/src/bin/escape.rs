//! A hostile guest: tries to read and write outside its workspace in every way
//! WASI lets it name. It prints one line per attempt, `BLOCKED <what>` or
//! `ESCAPED <what>`, and exits 1 if anything escaped. The first argument is a
//! host path it should not be able to read (for example a file the test put
//! next to the workspace).
use std::ffi::CString;
use std::fs;

unsafe extern "C" {
    /// wasi-libc's `symlink`; std's `symlink_path` is still unstable on WASI.
    fn symlink(target: *const std::ffi::c_char, link: *const std::ffi::c_char) -> i32;
}

fn make_symlink(target: &str, link: &str) {
    let (Ok(t), Ok(l)) = (CString::new(target), CString::new(link)) else { return };
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    unsafe { symlink(t.as_ptr(), l.as_ptr()) };
}

fn main() {
    guest_examples::enter_pwd();
    let target = std::env::args().nth(1).unwrap_or_else(|| "/etc/passwd".into());
    let mut escaped = false;
    let mut report = |what: &str, ok: bool| {
        println!("{} {what}", if ok { "ESCAPED" } else { "BLOCKED" });
        escaped |= ok;
    };
    report(&format!("read {target}"), fs::read(&target).is_ok());
    report("read /etc/passwd", fs::read("/etc/passwd").is_ok());
    report("read ../../../../etc/passwd", fs::read("../../../../etc/passwd").is_ok());
    // `/` is the sandbox's skeleton: the directories above the workspace,
    // `/tmp` and `/dev` (with an empty `null`); anything else is the host's.
    let pwd = std::env::var("PWD").unwrap_or_default();
    let top = pwd.trim_start_matches('/').split('/').next().unwrap_or("").to_owned();
    // The skeleton's own entries: the way to the workspace, `/tmp`, `/dev`
    // and `/opt` (which holds only the server's python start-up hook).
    let own = |n: &str| n == top || n == "tmp" || n == "dev" || n == "opt";
    let foreign =
        fs::read_dir("/").map(|d| d.flatten().any(|e| !own(&e.file_name().to_string_lossy())));
    report("list /", foreign.unwrap_or(false));
    // `/tmp` is the sandbox's own private scratch; `/` is a read-only skeleton.
    report("write /escaped", fs::write("/escaped", b"x").is_ok());
    report("write /etc/escaped", fs::write("/etc/escaped", b"x").is_ok());
    report("write ../escaped", fs::write("../escaped", b"x").is_ok());
    // A symlink made by the guest that points out of the workspace.
    make_symlink("/etc", "escape-link");
    report("read escape-link/passwd", fs::read("escape-link/passwd").is_ok());
    make_symlink("../../../../../../etc", "escape-link2");
    report("read escape-link2/passwd", fs::read("escape-link2/passwd").is_ok());
    // A symlink planted on disk by the test (if present).
    report("read planted-link/secret", fs::read("planted-link/secret").is_ok());
    report("read /proc/self/environ", fs::read("/proc/self/environ").is_ok());
    report("server env HOME leak", std::env::var("SERVER_SECRET").is_ok());
    std::process::exit(if escaped { 1 } else { 0 });
}
