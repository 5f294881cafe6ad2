//! Host commands: programs the server runs itself, in place of a guest
//! tool, because WASI cannot do what they need — [`git`] (read-only, with
//! gitoxide), [`fileinfo`] (`stat`, `du`, `chmod`: inode metadata, block
//! counts, permission bits), [`patch`] (`apply_patch`, Codex's patch
//! format) and [`identity`] (`whoami`, `id`, `hostname`, `uname`: one sandbox
//! identity, nothing read from the host). Each sees only a [`Context`]: the workspace capability, the
//! working directory and its standard streams. They look like programs
//! (`which git` says `/usr/bin/git`) and win over bundled tools of the same
//! name; [`lookup`] is the one table of them.
//!
//! What does not live here: the shell that finds and runs them (`shell`,
//! which depends on this module, never the other way), and `which`/`type`,
//! which stay in the shell because they look up its functions and builtins.

mod context;
pub mod fileinfo;
pub mod git;
pub mod identity;
pub mod listing;
pub mod patch;

pub use context::{Broken, Context, Held, Meter, Status, StdinSource};

use futures::future::BoxFuture;

/// How a host command is run: its context and its arguments (without the
/// command's name).
pub type Run = for<'a> fn(&'a Context<'a>, &'a [String]) -> BoxFuture<'a, Status>;

/// Every host command, by the name it is called by.
const COMMANDS: &[(&str, Run)] = &[
    ("git", |cx, args| Box::pin(git::run(cx, args))),
    ("stat", |cx, args| Box::pin(fileinfo::stat(cx, args))),
    ("du", |cx, args| Box::pin(fileinfo::du(cx, args))),
    ("chmod", |cx, args| Box::pin(fileinfo::chmod(cx, args))),
    ("apply_patch", |cx, args| Box::pin(patch::run(cx, args))),
    ("applypatch", |cx, args| Box::pin(patch::run(cx, args))),
    ("whoami", |cx, args| Box::pin(identity::whoami(cx, args))),
    ("id", |cx, args| Box::pin(identity::id(cx, args))),
    ("hostname", |cx, args| Box::pin(identity::hostname(cx, args))),
    ("uname", |cx, args| Box::pin(identity::uname(cx, args))),
];

/// What `wasm-exec-server tools` says of the host commands.
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    ("git", "host: read-only git (gitoxide)"),
    ("stat", "host: inode metadata"),
    ("du", "host: block counts"),
    ("chmod", "host: permission bits"),
    ("ls -l", "host: long listings (other ls: the bundled coreutils)"),
    ("apply_patch", "host: the Codex patch format (also applypatch)"),
    ("whoami", "host: the sandbox identity (also id, hostname, uname)"),
];

/// The host command called `name`, if there is one.
pub fn lookup(name: &str) -> Option<Run> {
    COMMANDS.iter().find(|(n, _)| *n == name).map(|(_, run)| *run)
}

/// The host command that serves `name` with these arguments: the table's,
/// or `ls` in a long format ([`listing`]), which the bundled `ls` cannot
/// show truthfully.
pub fn lookup_for(name: &str, args: &[String]) -> Option<Run> {
    if name == "ls" && listing::is_long(args) {
        return Some(|cx, args| Box::pin(listing::ls(cx, args)));
    }
    lookup(name)
}

/// Whether `name` is a host command (for `type`, `which`, `command -v`).
pub fn is_host_command(name: &str) -> bool {
    lookup(name).is_some()
}
