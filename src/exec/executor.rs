//! The executor: what every command of one workspace runs with (the
//! engine, the workspace capability, the limits), and running one tool with
//! its streams wired: argv\[0\] resolved to a compiled module, the guest run
//! ([`super::guest`]) and its outcome turned into an exit status as a native
//! server would report it (with the message a limit or a trap deserves).
//!
//! It runs tools only. Whether a process's argv is a command line for the
//! shell is decided above it (`crate::shell::run_command`).

use super::engine::{EPOCH_TICK, Runtime, Tool};
use super::guest::{self, GuestOutcome, GuestRequest};
use super::stdio::{Sink, Stdin};
use crate::config::Limits;
use crate::fs::Workspace;
use std::sync::Arc;

/// Exit status of a guest that trapped (as for SIGABRT).
pub const STATUS_TRAP: i32 = 134;
/// Exit status of a command stopped by a limit or killed (as for SIGKILL).
pub const STATUS_KILLED: i32 = 137;
/// Exit status of an interrupted command (as for SIGINT).
pub const STATUS_INTERRUPTED: i32 = 130;
/// Exit status of a command that does not exist.
pub const STATUS_NOT_FOUND: i32 = 127;

/// What every command of one workspace runs with.
#[derive(Clone)]
pub struct Executor {
    pub runtime: Arc<Runtime>,
    pub workspace: Workspace,
    pub limits: Limits,
}

/// One command to run, with its streams already wired.
pub struct CommandSpec {
    pub argv: Vec<String>,
    /// Replaces argv[0] as the program sees it.
    pub arg0: Option<String>,
    pub env: Vec<(String, String)>,
    /// The visible absolute working directory (already checked).
    pub cwd: String,
    pub stdin: Stdin,
    pub stdout: Sink,
    pub stderr: Sink,
    pub tty: bool,
}

/// The environment a sandboxed command starts from: what an `envPolicy`
/// inherits in place of the server's own environment (which commands never
/// see), and all that `wasm-exec-server run` gives its command.
pub fn sandbox_env(home: &str, shell_path: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", home),
        ("SHELL", shell_path),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("USER", "sandbox"),
        ("LOGNAME", "sandbox"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `/usr/bin/cat` → `cat`.
pub fn command_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

impl Executor {
    /// Runs one argv-form command (a tool, by `argv[0]`) to completion and
    /// returns its exit status. Command lines (`bash -lc …`) are the
    /// shell's: see `crate::shell::run_command`.
    pub async fn run_command(&self, spec: CommandSpec) -> i32 {
        let Some(argv0) = spec.argv.first() else {
            return STATUS_NOT_FOUND;
        };
        let name = command_name(argv0).to_owned();
        let Some(tool) = self.runtime.tool(&name) else {
            let hint = self.runtime.not_found_hint();
            let msg = format!("{name}: command not found{hint}\n");
            let _ = spec.stderr.write_all(msg.as_bytes()).await;
            return STATUS_NOT_FOUND;
        };
        self.run_tool(&tool, spec).await
    }

    /// Runs a resolved tool with the given streams.
    pub async fn run_tool(&self, tool: &Tool, spec: CommandSpec) -> i32 {
        let mut argv = spec.argv;
        // Tools see their plain name as argv[0] (multicall binaries dispatch
        // on it exactly), unless the client asked for another.
        match (spec.arg0, argv.first_mut()) {
            (Some(arg0), Some(first)) => *first = arg0,
            (None, Some(first)) => *first = command_name(first).to_owned(),
            _ => {}
        }
        if !tool.args.is_empty() {
            argv.splice(1..1, tool.args.iter().cloned());
        }
        // ripgrep on WASI never notices piped stdin; say it explicitly.
        if tool.name == "rg"
            && !matches!(spec.stdin, Stdin::Closed)
            && !super::quirks::rg_has_path(&argv[1..])
        {
            argv.push("-".into());
        }
        let name = argv.first().map(|a| command_name(a).to_owned()).unwrap_or_default();
        let mut env = spec.env;
        env.retain(|(k, _)| k != "PWD");
        env.push(("PWD".into(), spec.cwd.clone()));
        if tool.is_bundled("python3") {
            super::quirks::python_start(&mut argv, &spec.cwd, &mut env);
        }
        let stderr = spec.stderr.clone();
        let req = GuestRequest {
            argv,
            env,
            workspace: self.workspace.clone(),
            stdin: spec.stdin,
            stdout: spec.stdout,
            stderr: spec.stderr,
            tty: spec.tty,
            max_memory: self.limits.max_memory,
            max_cpu_ticks: (self.limits.max_cpu.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64,
        };
        let run = guest::run(&self.runtime, tool, req).await;
        if let Some(path) = &run.read_only_denied {
            let msg = format!(
                "{name}: {path}: this path is read-only for commands \
                 (a read-only area of the workspace)\n"
            );
            let _ = stderr.write_all(msg.as_bytes()).await;
        }
        if run.quota_denied {
            if let Some(q) = self.workspace.quota() {
                let e = crate::fs::QuotaExceeded { limit: q.limit(), used: q.used() };
                let _ = stderr.write_all(format!("{name}: {e}\n").as_bytes()).await;
            }
        }
        match run.outcome {
            GuestOutcome::Exited(code) => code,
            GuestOutcome::Trapped(msg) => {
                let _ = stderr.write_all(format!("{name}: wasm trap: {msg}\n").as_bytes()).await;
                STATUS_TRAP
            }
            GuestOutcome::CpuLimit => {
                let msg = format!(
                    "{name}: CPU time limit exceeded (max-cpu is {:?})\n",
                    self.limits.max_cpu
                );
                let _ = stderr.write_all(msg.as_bytes()).await;
                STATUS_KILLED
            }
            GuestOutcome::MemoryLimit(limit) => {
                let _ = stderr
                    .write_all(
                        format!(
                            "{name}: memory limit exceeded (max-memory is {} MiB)\n",
                            limit >> 20
                        )
                        .as_bytes(),
                    )
                    .await;
                STATUS_KILLED
            }
        }
    }
}
