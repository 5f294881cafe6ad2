//! Entry points: a `bash`/`sh` invocation from the executor, a nested
//! `bash -c` or `bash script.sh` inside a command line, and running a
//! script file named by path (`./run.sh`), honouring its `#!` line.

use super::interp;
use super::io::{Input, Io};
use super::parse::{Invocation, Script};
use super::simple::run_argv;
use super::state::{Budget, MAX_DEPTH, MAX_VALUE, Shell};
use crate::exec::{CommandSpec, Executor, Tool};
use std::sync::Arc;

/// What a process's argv runs: a shell invocation (`bash -lc '<line>'`,
/// `sh script.sh`) or a tool.
pub enum Program {
    Shell(Invocation),
    Tool(Arc<Tool>),
}

/// What `argv` runs; `None` when it names no tool (a program that does not
/// exist is an error of the start itself, as when a native server cannot
/// spawn it).
pub fn resolve(exec: &Executor, argv: &[String]) -> Option<Program> {
    if let Some(inv) = Invocation::from_argv(argv) {
        return Some(Program::Shell(inv));
    }
    exec.runtime.tool(crate::exec::command_name(argv.first()?)).map(Program::Tool)
}

/// Runs the top-level command of a process, resolved by [`resolve`].
pub async fn run_program(exec: &Executor, program: Program, spec: CommandSpec) -> i32 {
    match program {
        Program::Shell(inv) => run(exec, inv, spec).await,
        Program::Tool(tool) => exec.run_tool(&tool, spec).await,
    }
}

/// Runs the top-level command of a process (`wasm-exec-server run`,
/// tests): a program that does not exist is bash's 127.
pub async fn run_command(exec: &Executor, spec: CommandSpec) -> i32 {
    match resolve(exec, &spec.argv) {
        Some(program) => run_program(exec, program, spec).await,
        None => exec.run_command(spec).await,
    }
}

/// Runs a shell invocation as the top-level command of a process.
pub async fn run(exec: &Executor, inv: Invocation, spec: CommandSpec) -> i32 {
    let mut sh = Shell::new(
        exec.clone(),
        &spec.env,
        spec.cwd.clone(),
        inv.arg0.clone(),
        inv.args.clone(),
        Arc::new(Budget::new(exec.limits.max_memory)),
    );
    sh.terminal = spec.tty;
    let io = Io {
        stdin: Input::from_stdin(spec.stdin),
        stdout: spec.stdout,
        stderr: spec.stderr,
        extra: Vec::new(),
        extra_in: Vec::new(),
    };
    let status = run_invocation(&mut sh, &io, &inv).await;
    // Background jobs still running end with the line (their output is
    // part of the command's), unless a limit ended it: then they are
    // dropped, which stops them.
    if status != 137 && !sh.halted() {
        super::interp::wait_jobs(&mut sh).await;
    }
    // A limit of the line (memory, subshells) ends all of it with 137, also
    // when the part that hit it was a pipeline stage whose status is not
    // the line's.
    if super::simple::halted(&sh, &io).await {
        return 137;
    }
    status
}

/// Runs one command line in a fresh shell (for `wasm-exec-server run` and
/// tests): `line` is what `bash -c` would get.
pub async fn run_line(exec: &Executor, line: &str, spec: CommandSpec) -> i32 {
    let inv = Invocation {
        script: Script::Inline(line.to_owned()),
        arg0: "bash".into(),
        args: Vec::new(),
        set: Vec::new(),
    };
    run(exec, inv, spec).await
}

async fn run_invocation(sh: &mut Shell, io: &Io, inv: &Invocation) -> i32 {
    // `-n`: read the script for syntax errors, run nothing.
    let mut noexec = false;
    for flag in &inv.set {
        let on = flag.starts_with('-');
        match flag.split_once(' ') {
            Some((_, name)) => {
                super::builtins::set_option(sh, name, on);
            }
            None => match &flag[1..] {
                "e" => sh.opts.errexit = on,
                "u" => sh.opts.nounset = on,
                "x" => sh.opts.xtrace = on,
                "f" => sh.opts.noglob = on,
                "n" => noexec = on,
                _ => {}
            },
        }
    }
    let (text, origin) = match &inv.script {
        Script::Inline(s) => (s.clone(), "-c".to_owned()),
        Script::File(f) => match read_script(sh, f) {
            Ok(t) => (t, f.clone()),
            Err(msg) => {
                // `$0` is the script here; bash names itself.
                io.err(&format!("bash: {msg}\n")).await;
                return 127;
            }
        },
        Script::Stdin => {
            let data = io.stdin.read_all(MAX_VALUE).await;
            (String::from_utf8_lossy(&data).into_owned(), "-c".to_owned())
        }
    };
    if noexec {
        return match super::parse::program(&text, false) {
            Ok(_) => 0,
            Err(e) => {
                let name = match &inv.script {
                    Script::File(f) => f.clone(),
                    _ => sh.arg0.clone(),
                };
                io.err(&e.message(&name, &origin)).await;
                2
            }
        };
    }
    let outer = match &inv.script {
        Script::File(f) => Some(sh.enter_source(f)),
        _ => None,
    };
    let r = interp::run_text(sh, io, &text, &origin).await;
    if let Some(outer) = outer {
        sh.leave_source(outer);
    }
    let status = interp::exit_status(sh, r);
    interp::run_exit_trap(sh, io, status).await
}

/// Reads a script through the workspace. The error is bash's wording.
pub fn read_script(sh: &Shell, file: &str) -> Result<String, String> {
    let Some(rel) = sh.resolve(file) else {
        // A script in the private /tmp (`cat > /tmp/t.sh <<EOF …; bash /tmp/t.sh`).
        let Some((tmp, below)) = sh.locate(file) else {
            return Err(format!("{file}: No such file or directory"));
        };
        let mut out = Vec::new();
        let read = tmp.open(&below).and_then(|f| {
            use std::io::Read;
            f.into_std().take(MAX_VALUE as u64 + 1).read_to_end(&mut out)
        });
        return match read {
            Ok(n) if n > MAX_VALUE => Err(format!("{file}: File too large")),
            Ok(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
            Err(e) => Err(format!("{file}: {}", crate::fs::strerror(&e))),
        };
    };
    match sh.exec.workspace.read_bounded(&rel, MAX_VALUE as u64) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => Err(format!("{file}: {}", crate::fs::strerror(&e))),
    }
}

/// `bash -c …` / `sh script` inside a command line: a new shell that sees
/// only exported variables, sharing this line's budget.
pub async fn nested(sh: &mut Shell, io: &Io, argv: &[String], assigns: &[(String, String)]) -> i32 {
    let Some(inv) = Invocation::from_argv(argv) else { return 2 };
    if sh.depth >= MAX_DEPTH {
        io.err(&format!("{}maximum nesting depth exceeded ({MAX_DEPTH})\n", sh.err_prefix())).await;
        return 2;
    }
    let env = sh.env_for_guest(assigns);
    let mut sub = Shell::new(
        sh.exec.clone(),
        &env,
        sh.cwd.clone(),
        inv.arg0.clone(),
        inv.args.clone(),
        sh.budget.clone(),
    );
    sub.depth = sh.depth + 1;
    Box::pin(run_invocation(&mut sub, io, &inv)).await
}

/// Runs `./script` (a path naming a workspace file). `None` when the path
/// is not a file, so the caller can fall back to a tool of that name.
pub async fn script_file(
    sh: &mut Shell,
    io: &Io,
    argv: &[String],
    assigns: &[(String, String)],
) -> Option<i32> {
    let path = &argv[0];
    let rel = sh.resolve(path)?;
    let dir = sh.exec.workspace.dir();
    let meta = dir.metadata(&rel).ok()?;
    let prefix = sh.err_prefix();
    if meta.is_dir() {
        io.err(&format!("{prefix}{path}: Is a directory\n")).await;
        return Some(126);
    }
    {
        use cap_std::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            io.err(&format!("{prefix}{path}: Permission denied\n")).await;
            return Some(126);
        }
    }
    let head = read_script(sh, path).ok()?;
    let first = head.lines().next().unwrap_or("");
    let interpreter: Vec<String> = match first.strip_prefix("#!") {
        Some(rest) => {
            let mut words: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            if words.first().is_some_and(|w| crate::exec::command_name(w) == "env") {
                words.remove(0);
                words.retain(|w| !w.starts_with('-'));
            }
            words
        }
        None => vec!["bash".into()],
    };
    let Some(prog) = interpreter.first() else { return Some(126) };
    let mut full: Vec<String> = interpreter.clone();
    full.extend(argv.iter().cloned());
    if matches!(crate::exec::command_name(prog), "bash" | "sh") {
        full[0] = "bash".into();
        return Some(nested(sh, io, &full, assigns).await);
    }
    let mut sub = sh.clone();
    Some(match run_argv(&mut sub, io, full, assigns.to_vec()).await {
        Ok(s) => s,
        Err(_) => sub.status,
    })
}
