//! The interpreter's state: variables, functions, positional parameters,
//! options, the working directory, and the budget that bounds one command
//! line. A subshell (`( … )`, a pipeline stage, `$( … )`) is a clone; the
//! budget is shared by all clones, so limits hold for the whole line.

use crate::exec::Executor;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Deepest nesting of function calls, `eval`, `source` and substitutions.
pub const MAX_DEPTH: usize = 1000;
/// Most commands (builtin or guest) one command line may run.
pub const MAX_COMMANDS: u64 = 2_000_000;
/// Largest value a variable or a command substitution may hold.
pub const MAX_VALUE: usize = 64 << 20;
/// Elements an indexed array may have: an index from the command line is
/// checked before it sizes anything (arrays are dense here, so `a[N]=x`
/// allocates N elements).
pub const MAX_ARRAY: usize = 1 << 20;

/// Checks an array index against [`MAX_ARRAY`] (bash's wording for the rest).
pub fn array_index(name: &str, index: usize) -> Result<usize, String> {
    if index >= MAX_ARRAY {
        return Err(format!(
            "{name}[{index}]: array index too large (at most {}, a limit of this shell)",
            MAX_ARRAY - 1
        ));
    }
    Ok(index)
}

/// Host work the interpreter does between two yields at most (compound
/// commands check it; simple commands yield every time): the server's other
/// tasks, stop requests and the host-time meter get in at least this often.
pub const YIELD_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

/// One shell variable.
#[derive(Clone, Debug, Default)]
pub struct Var {
    pub value: String,
    /// Indexed array elements when the variable is an array (`a=(x y)`).
    pub array: Option<Vec<String>>,
    /// Passed to guests in their environment.
    pub exported: bool,
    /// `readonly`: assignments and `unset` fail.
    pub readonly: bool,
}

/// `set -e`, `-u`, `-x`, `-o pipefail`, `-f`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub errexit: bool,
    pub nounset: bool,
    pub xtrace: bool,
    pub pipefail: bool,
    pub noglob: bool,
}

/// How control leaves the normal flow of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwind {
    Break(usize),
    Continue(usize),
    Return(i32),
    /// `exit`, `set -e`, or a fatal expansion error: leave this (sub)shell.
    Exit(i32),
}

/// The result of running anything: a status, or control leaving.
pub type Outcome = Result<i32, Unwind>;

/// Counts commands across a whole command line (shared by subshells).
#[derive(Debug, Default)]
pub struct Budget {
    commands: AtomicU64,
}

impl Budget {
    /// Takes one command from the budget: its number in the line (0 for
    /// the first), or `None` once the budget is spent.
    pub fn take(&self) -> Option<u64> {
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        (n < MAX_COMMANDS).then_some(n)
    }
}

/// The interpreter of one command line (and, cloned, of its subshells).
#[derive(Clone)]
pub struct Shell {
    /// Runs guests; owns the workspace capability every path goes through.
    pub exec: Executor,
    pub vars: HashMap<String, Var>,
    /// Saved values for `local`, one frame per function call.
    pub locals: Vec<Vec<(String, Option<Var>)>>,
    pub funcs: HashMap<String, Arc<brush_parser::ast::FunctionBody>>,
    /// `$1…`.
    pub positional: Vec<String>,
    /// `$0`, also the prefix of error messages (`bash: line 1: …`).
    pub arg0: String,
    /// Visible absolute working directory, always inside the workspace.
    pub cwd: String,
    /// `$?`.
    pub status: i32,
    pub opts: Options,
    pub budget: Arc<Budget>,
    /// Nesting of functions, `eval`, `source` and substitutions.
    pub depth: usize,
    /// Enclosing loops, for `break`/`continue` and the stdin guard.
    pub loops: usize,
    /// Inside an `if`/`while` condition, `&&`/`||` operand or `!`: `set -e`
    /// does not apply.
    pub in_condition: usize,
    /// Line of the command being run, for messages.
    pub line: usize,
    /// Running a function body (for `return` and `local`).
    pub in_function: usize,
    /// Status of the last command substitution in the current command
    /// (the status of `x=$(false)`).
    pub last_subst: Option<i32>,
    /// When this shell last let other tasks in ([`YIELD_EVERY`]).
    pub last_yield: std::time::Instant,
    /// `$$`: a process id of the sandbox's own, never the server's (which
    /// would tell a command about the host), different for each shell.
    pub pid: u32,
}

/// The next sandbox process id: 100 on, wrapping below Linux's default
/// `pid_max` (32768), like real pids.
fn next_pid() -> u32 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    100 + (NEXT.fetch_add(1, Ordering::Relaxed) % 32_600) as u32
}

impl Shell {
    /// A fresh shell with the given environment (all exported).
    pub fn new(
        exec: Executor,
        env: &[(String, String)],
        cwd: String,
        arg0: String,
        args: Vec<String>,
    ) -> Self {
        let mut vars = HashMap::new();
        for (k, v) in env {
            vars.insert(k.clone(), Var { value: v.clone(), exported: true, ..Default::default() });
        }
        let mut sh = Self {
            exec,
            vars,
            locals: Vec::new(),
            funcs: HashMap::new(),
            positional: args,
            arg0,
            cwd: cwd.clone(),
            status: 0,
            opts: Options::default(),
            budget: Arc::new(Budget::default()),
            depth: 0,
            loops: 0,
            in_condition: 0,
            line: 1,
            in_function: 0,
            last_subst: None,
            last_yield: std::time::Instant::now(),
            pid: next_pid(),
        };
        sh.set_exported("PWD", &cwd);
        sh.vars.entry("IFS".into()).or_insert(Var { value: " \t\n".into(), ..Default::default() });
        sh
    }

    /// Yields to the runtime: other tasks, a stop request (the command is
    /// dropped while it waits) and the host-time meter get in.
    pub async fn yield_now(&mut self) {
        tokio::task::yield_now().await;
        self.last_yield = std::time::Instant::now();
    }

    /// Yields when [`YIELD_EVERY`] of work has passed since the last time:
    /// a loop of compound commands (`while ((1)); do ((i++)); done`) never
    /// holds a thread for longer, and stays stoppable.
    pub async fn pause(&mut self) {
        if self.last_yield.elapsed() >= YIELD_EVERY {
            self.yield_now().await;
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.value.as_str())
    }

    /// Assigns a variable; fails (with bash's message) when it is readonly.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let v = self.vars.entry(name.to_owned()).or_default();
        if v.readonly {
            return Err(format!("{name}: readonly variable"));
        }
        v.value = value.to_owned();
        v.array = None;
        Ok(())
    }

    pub fn set_exported(&mut self, name: &str, value: &str) {
        let v = self.vars.entry(name.to_owned()).or_default();
        v.value = value.to_owned();
        v.exported = true;
    }

    /// Assigns an array (`a=(x y z)`); `$a` is its first element.
    pub fn set_array(&mut self, name: &str, items: Vec<String>) -> Result<(), String> {
        let v = self.vars.entry(name.to_owned()).or_default();
        if v.readonly {
            return Err(format!("{name}: readonly variable"));
        }
        v.value = items.first().cloned().unwrap_or_default();
        v.array = Some(items);
        Ok(())
    }

    pub fn unset(&mut self, name: &str) -> Result<(), String> {
        if self.vars.get(name).is_some_and(|v| v.readonly) {
            return Err(format!("{name}: cannot unset: readonly variable"));
        }
        self.vars.remove(name);
        Ok(())
    }

    /// `local NAME`: remembers the outer value for the end of the call.
    pub fn make_local(&mut self, name: &str) {
        let saved = self.vars.get(name).cloned();
        if let Some(frame) = self.locals.last_mut() {
            if !frame.iter().any(|(n, _)| n == name) {
                frame.push((name.to_owned(), saved));
            }
        }
    }

    /// The environment a guest sees: exported variables and the command's
    /// own `VAR=x` prefixes.
    pub fn env_for_guest(&self, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .vars
            .iter()
            .filter(|(k, v)| v.exported && !extra.iter().any(|(e, _)| e == *k))
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        env.extend(extra.iter().cloned());
        env.sort();
        env
    }

    /// `bash: line N: ` — the prefix bash puts on runtime errors.
    pub fn err_prefix(&self) -> String {
        format!("{}: line {}: ", self.arg0, self.line)
    }

    /// The root-relative path of a (possibly relative) path the script
    /// names, or `None` when it leaves the workspace.
    pub fn resolve(&self, path: &str) -> Option<std::path::PathBuf> {
        self.exec.workspace.relative(&self.absolute(path))
    }

    /// A path made absolute against the working directory (not normalized).
    pub fn absolute(&self, path: &str) -> String {
        crate::fs::path::absolute(&self.cwd, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_runs_out() {
        let b = Budget::default();
        assert_eq!(b.take(), Some(0));
        b.commands.store(MAX_COMMANDS - 1, Ordering::Relaxed);
        assert_eq!(b.take(), Some(MAX_COMMANDS - 1));
        assert_eq!(b.take(), None);
    }
}
