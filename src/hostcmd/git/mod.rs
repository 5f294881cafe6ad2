//! `git`, read-only, served by the host with gitoxide (`gix`): agents call
//! `git status`, `git diff` and `git log` constantly and WASI cannot run
//! git. Nothing here writes to the repository (not even the index's stat
//! cache) and nothing spawns a process: filter, textconv and diff drivers
//! from the repository's config are dropped before anything is read.
//!
//! What lives where: [`command`] reads the command line and picks the
//! subcommand, [`repo`] finds and opens the repository through the
//! workspace capability and holds the per-command context, [`status`] the
//! status and listing commands, [`history`] the commands that read commits
//! (`log`, `show`, `rev-parse`, `branch`, …), [`diff`] change lists and
//! their rendering (patch, `--stat`, `--name-status`), [`grep`] `git grep`
//! and [`blame`] `git blame`. Every subcommand
//! that would write answers `git: '<sub>' is not supported in this sandbox
//! (read-only git)` with status 1.

mod blame;
mod command;
mod diff;
mod grep;
mod history;
mod repo;
mod status;

pub use command::run;
