//! Simple commands: expand the words, apply `VAR=x` prefixes and
//! redirections, then run a function, a builtin, a nested shell, a host
//! command (`crate::hostcmd`) or a wasm tool, in that order, as bash looks
//! commands up.

use super::builtins;
use super::expand;
use super::io::Io;
use super::redirect;
use super::state::{Array, MAX_DEPTH, Outcome, Saved, Shell, Unwind};
use crate::exec::CommandSpec;
use crate::hostcmd;
use brush_parser::ast::{self, CommandPrefixOrSuffixItem as Item, SourceLocation};

/// Declaration builtins whose `NAME=value` arguments are not split.
const DECLARATIONS: &[&str] = &["export", "local", "declare", "typeset", "readonly"];

pub async fn run(sh: &mut Shell, cmd: &ast::SimpleCommand, io: &Io) -> Outcome {
    if let Some(loc) = cmd.location().filter(|_| !sh.in_trap) {
        sh.line = loc.start.line;
    }
    let Some(n) = sh.budget.take() else {
        io.err(&format!(
            "{}command limit reached ({} commands)\n",
            sh.err_prefix(),
            super::state::MAX_COMMANDS
        ))
        .await;
        return Err(Unwind::Exit(137));
    };
    if halted(sh, io).await {
        return Err(Unwind::Exit(137));
    }
    // Let other stages, the session and cancellation in between commands
    // when a yield is due, as loops do; not before the line's first
    // command, so that a line of one builtin (`echo hi`) finishes in its
    // first poll and its output goes out with the start's answer. Not
    // before every command: a yield requeues the task and the runtime wakes
    // the pool's other thread to take it, a hand-off that cost each short
    // tool in a loop about a wake-up and a context switch.
    if n > 0 {
        sh.yield_if_due().await;
    }

    let items: Vec<&Item> = cmd.prefix.iter().flat_map(|p| p.0.iter()).collect();
    let mut assigns: Vec<(String, String)> = Vec::new();
    let mut redirects: Vec<&ast::IoRedirect> = Vec::new();
    let mut argv: Vec<String> = Vec::new();
    sh.last_subst = None;
    // Bytes of the words expanded so far, against the line's budget.
    let mut held = 0;
    // `<(…)` files, removed when this command is done.
    let mut procsubs = super::interp::ProcSubFiles::default();
    for item in items {
        match item {
            Item::AssignmentWord(a, _) => assigns.extend(assignment(sh, io, a).await?),
            Item::IoRedirect(r) => redirects.push(r),
            Item::Word(w) => push_fields(sh, io, &w.value, &mut argv, &mut held).await?,
            Item::ProcessSubstitution(..) => {}
        }
    }
    if let Some(w) = &cmd.word_or_name {
        argv.extend(expand::fields(sh, io, &w.value).await?);
    }
    let declaration = argv.first().is_some_and(|a| DECLARATIONS.contains(&a.as_str()));
    for item in cmd.suffix.iter().flat_map(|s| s.0.iter()) {
        match item {
            Item::IoRedirect(r) => redirects.push(r),
            Item::Word(w) => push_fields(sh, io, &w.value, &mut argv, &mut held).await?,
            // `declare -a arr=(1 2)`, `local xs=(…)`: the array is assigned
            // here (after `local` saved the outer value), and the builtin
            // gets the name for its flags.
            Item::AssignmentWord(
                a @ ast::Assignment {
                    name: ast::AssignmentName::VariableName(name),
                    value: ast::AssignmentValue::Array(_),
                    ..
                },
                _,
            ) if declaration => {
                if argv.first().is_some_and(|b| b == "local") {
                    if sh.in_function == 0 {
                        argv.push(name.clone());
                        continue;
                    }
                    sh.make_local(name);
                }
                // `declare -A m=(…)`: the keys are taken as keys.
                if argv.iter().skip(1).any(|f| f.starts_with('-') && f.contains('A')) {
                    if let Err(msg) = sh.make_assoc(name) {
                        io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
                    }
                }
                assignment(sh, io, a).await?;
                argv.push(name.clone());
            }
            Item::AssignmentWord(_, w) if declaration => {
                argv.push(expand::string(sh, io, &w.value).await?)
            }
            Item::AssignmentWord(_, w) => argv.extend(expand::fields(sh, io, &w.value).await?),
            Item::ProcessSubstitution(kind, list) => {
                match super::interp::process_substitution(sh, io, kind, list, &mut procsubs).await?
                {
                    Ok(path) => argv.push(path),
                    Err(msg) => {
                        io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
                        return Ok(1);
                    }
                }
            }
        }
    }
    let owned: Vec<ast::IoRedirect> = redirects.into_iter().cloned().collect();
    // `>(…)` lists write to the command's own output, not its redirections.
    let outer = io.clone();
    let Some(io) = redirect::apply_all(sh, io, &owned).await? else {
        sh.status = 1;
        return Ok(1);
    };
    if sh.opts.xtrace {
        let mut words: Vec<String> =
            assigns.iter().map(|(k, v)| format!("{k}={}", quote_trace(v))).collect();
        words.extend(argv.iter().map(|a| quote_trace(a)));
        io.err(&format!("{}{}\n", sh.trace_prefix(), words.join(" "))).await;
    }
    if argv.is_empty() {
        for (k, v) in &assigns {
            if let Err(msg) = sh.set(k, v) {
                // bash leaves a non-interactive shell on this error.
                io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
                return Err(Unwind::Exit(1));
            }
        }
        return Ok(sh.last_subst.take().unwrap_or(0));
    }
    let status = run_argv(sh, &io, argv, assigns).await;
    procsubs.run_writers(sh, &outer).await?;
    status
}

/// Whether a limit of the line was hit (memory, subshells, the command's
/// CPU): it stops. Says which when the shell that hit it could not.
pub async fn halted(sh: &Shell, io: &Io) -> bool {
    if !sh.halted() {
        return false;
    }
    if let Some(msg) = sh.budget.take_unreported() {
        io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
    }
    true
}

/// Expands a command word onto `argv`, keeping `held` (the bytes of the
/// words so far) against the line's budget.
async fn push_fields(
    sh: &mut Shell,
    io: &Io,
    word: &str,
    argv: &mut Vec<String>,
    held: &mut usize,
) -> Result<(), Unwind> {
    let fields = expand::fields(sh, io, word).await?;
    *held += super::state::list_bytes(&fields);
    argv.extend(fields);
    match sh.budget.fits(*held) {
        Ok(()) => Ok(()),
        Err(m) => Err(expand::out_of_memory(sh, io, m).await),
    }
}

/// Whether `ls -l` (a host command, whose listing sees the workspace
/// only) is asked about the command's private `/tmp`, from there or by a
/// path into it: the bundled `ls` answers instead, through WASI, which
/// sees `/tmp` (with WASI's view of modes and owners). `stat`, `du` and
/// `chmod` find `/tmp` paths themselves.
fn in_private_tmp(sh: &Shell, tool: &str, args: &[String]) -> bool {
    if tool != "ls" {
        return false;
    }
    let outside = |p: &str| sh.resolve(p).is_none() && sh.locate(p).is_some();
    sh.resolve(".").is_none() || args.iter().any(|a| !a.starts_with('-') && outside(a))
}

/// `NAME=value` or `NAME+=value`; `NAME=(a b c)` and `NAME[i]=v` are
/// applied at once (and return `None`).
async fn assignment(
    sh: &mut Shell,
    io: &Io,
    a: &ast::Assignment,
) -> Result<Option<(String, String)>, Unwind> {
    let name = match &a.name {
        ast::AssignmentName::VariableName(n) => n.clone(),
        ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
    };
    let value = match &a.value {
        ast::AssignmentValue::Scalar(w) => expand::string(sh, io, &w.value).await?,
        ast::AssignmentValue::Array(items) if sh.is_assoc(&name) => {
            // `m=([k]=v …)`: each element names its key.
            let mut keyed = match sh.vars.get(&name).and_then(|v| v.keyed.as_ref()) {
                Some(prev) if a.append => prev.clone(),
                _ => Default::default(),
            };
            let mut held = 0;
            for (key, w) in items {
                let value = expand::string(sh, io, &w.value).await?;
                let Some(key) = key else {
                    let msg = format!(
                        "{name}: {value}: must use subscript when assigning associative array"
                    );
                    io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
                    continue;
                };
                let key = expand::string(sh, io, &key.value).await?;
                held += key.len() + super::state::item_bytes(&value);
                if let Err(m) = sh.budget.fits(held) {
                    return Err(expand::out_of_memory(sh, io, m).await);
                }
                keyed.insert(key, value);
            }
            if let Err(msg) = sh.set_assoc(&name, keyed) {
                io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
            }
            return Ok(None);
        }
        ast::AssignmentValue::Array(items) => {
            let mut array = Array::new();
            if a.append {
                if let Some(prev) = sh.vars.get(&name) {
                    array = prev
                        .array
                        .clone()
                        .unwrap_or_else(|| prev.items().into_iter().enumerate().collect());
                }
            }
            let mut next = array.keys().next_back().map_or(0, |k| k + 1);
            for (key, w) in items {
                // `a=([3]=x y)`: an element with an index, the next after it.
                if let Some(key) = key {
                    let i = expand::string(sh, io, &key.value).await?;
                    let i = super::arith::eval(sh, &i).unwrap_or(0).max(0) as usize;
                    next = match super::state::array_index(&name, i) {
                        Ok(i) => i,
                        Err(msg) => return Err(expand::fail(sh, io, &msg).await),
                    };
                    array.insert(next, expand::string(sh, io, &w.value).await?);
                    next = next.saturating_add(1);
                    continue;
                }
                for value in expand::fields(sh, io, &w.value).await? {
                    array.insert(next, value);
                    next = next.saturating_add(1);
                }
            }
            if let Err(msg) = sh.set_array(&name, array) {
                io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
            }
            return Ok(None);
        }
    };
    if let ast::AssignmentName::ArrayElementName(n, idx) = &a.name
        && sh.is_assoc(n)
    {
        let key = expand::string(sh, io, idx).await?;
        let value = match sh.vars.get(n).and_then(|v| v.by_key(&key)) {
            Some(prev) if a.append => format!("{prev}{value}"),
            _ => value,
        };
        if let Err(msg) = sh.set_key(n, key, value) {
            io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
        }
        return Ok(None);
    }
    if let ast::AssignmentName::ArrayElementName(n, idx) = &a.name {
        let i = expand::string(sh, io, idx).await?;
        let i = super::arith::eval(sh, &i).unwrap_or(0).max(0) as usize;
        let i = match super::state::array_index(n, i) {
            Ok(i) => i,
            Err(msg) => return Err(expand::fail(sh, io, &msg).await),
        };
        let value = if a.append {
            format!("{}{value}", sh.vars.get(n).and_then(|v| v.element(i)).unwrap_or(""))
        } else {
            value
        };
        if let Err(msg) = sh.set_element(n, i, value) {
            io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
        }
        return Ok(None);
    }
    let integer = sh.vars.get(&name).is_some_and(|v| v.integer);
    let value = match (a.append, integer) {
        // `declare -i n; n+=3` adds.
        (true, true) => format!("{} + ({value})", sh.get(&name).unwrap_or("0")),
        (true, false) => format!("{}{}", sh.get(&name).unwrap_or(""), value),
        _ => value,
    };
    if value.len() > super::state::MAX_VALUE {
        return Err(expand::fail(sh, io, &format!("{name}: value too large")).await);
    }
    Ok(Some((name, value)))
}

pub(super) fn quote_trace(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Runs an expanded command: function, builtin, nested shell or tool.
/// `assigns` are the command's `VAR=x` prefixes.
pub fn run_argv<'a>(
    sh: &'a mut Shell,
    io: &'a Io,
    argv: Vec<String>,
    assigns: Vec<(String, String)>,
) -> Boxed<'a> {
    Box::pin(dispatch(sh, io, argv, assigns))
}

async fn dispatch(
    sh: &mut Shell,
    io: &Io,
    argv: Vec<String>,
    assigns: Vec<(String, String)>,
) -> Outcome {
    let name = argv[0].clone();
    if let Some(body) = sh.funcs.get(&name).cloned() {
        let saved = set_temp_vars(sh, &assigns);
        let r = call_function(sh, io, body, argv).await;
        restore_vars(sh, saved);
        return r;
    }
    if builtins::is_builtin(&name) {
        let saved = set_temp_vars(sh, &assigns);
        let r = builtins::run(sh, io, argv).await;
        restore_vars(sh, saved);
        return r;
    }
    if super::parse::Invocation::from_argv(&argv).is_some() {
        return Ok(super::invoke::nested(sh, io, &argv, &assigns).await);
    }
    let tool_name = crate::exec::command_name(&name).to_owned();
    if let Some(run) = hostcmd::lookup_for(&tool_name, &argv[1..])
        && !in_private_tmp(sh, &tool_name, &argv[1..])
    {
        let saved = set_temp_vars(sh, &assigns);
        let stdio = (&io.stdin as &dyn hostcmd::StdinSource, &io.stdout, &io.stderr);
        let cx = hostcmd::Context::new(&sh.exec.workspace, &sh.cwd, stdio, &*sh.budget);
        // A host command whose output went nowhere ends this (sub)shell,
        // as a builtin's does.
        let r = run(&cx, &argv[1..]).await.map_err(|hostcmd::Broken(code)| Unwind::Exit(code));
        restore_vars(sh, saved);
        return r;
    }
    if tool_name == "find" {
        if let Some(r) = super::compose::find_exec(sh, io, &argv, &assigns).await {
            return r;
        }
    }
    if name.contains('/') {
        if let Some(status) = super::invoke::script_file(sh, io, &argv, &assigns).await {
            return Ok(status);
        }
    }
    let Some(tool) = sh.exec.runtime.tool(&tool_name) else {
        let msg =
            if name.contains('/') { "No such file or directory" } else { "command not found" };
        let hint = if name.contains('/') { "" } else { sh.exec.runtime.not_found_hint() };
        io.err(&format!("{}{name}: {msg}{hint}\n", sh.err_prefix())).await;
        return Ok(crate::exec::STATUS_NOT_FOUND);
    };
    // A guest cannot open the shell's stdin by name; `-` means the same.
    let argv: Vec<String> =
        argv.into_iter().map(|a| if a == "/dev/stdin" { "-".to_owned() } else { a }).collect();
    let spec_env = sh.env_for_guest(&assigns);
    let exec = sh.exec.clone();
    let cwd = sh.cwd.clone();
    let (stdout, stderr) = (io.stdout.clone(), io.stderr.clone());
    let in_loop = sh.loops > 0;
    let status = io
        .stdin
        .lend(in_loop, |stdin| async move {
            let spec = CommandSpec {
                argv,
                arg0: None,
                env: spec_env,
                cwd,
                stdin,
                stdout,
                stderr,
                tty: false,
            };
            exec.run_tool(&tool, spec).await
        })
        .await;
    Ok(status)
}

type Boxed<'a> = futures::future::BoxFuture<'a, Outcome>;

/// Sets `VAR=x` prefixes for a builtin or function; returns what to restore.
fn set_temp_vars(sh: &mut Shell, assigns: &[(String, String)]) -> Vec<Saved> {
    let saved = assigns.iter().map(|(k, _)| sh.vars.save(k)).collect();
    for (k, v) in assigns {
        if sh.set(k, v).is_ok() {
            sh.vars.flags(k, |var| var.exported = true);
        }
    }
    saved
}

fn restore_vars(sh: &mut Shell, saved: Vec<Saved>) {
    for s in saved {
        sh.restore(s);
    }
}

fn call_function<'a>(
    sh: &'a mut Shell,
    io: &'a Io,
    body: std::sync::Arc<ast::FunctionBody>,
    argv: Vec<String>,
) -> Boxed<'a> {
    Box::pin(async move {
        if sh.depth % super::interp::STACK_HOP == super::interp::STACK_HOP - 1
            && sh.depth < MAX_DEPTH
        {
            let io = io.clone();
            return super::interp::on_fresh_stack(sh, move |mut sub| {
                Box::pin(async move {
                    sub.depth += 1;
                    let r = call_function_here(&mut sub, &io, body, argv).await;
                    sub.depth -= 1;
                    (sub, r)
                })
            })
            .await;
        }
        call_function_here(sh, io, body, argv).await
    })
}

async fn call_function_here(
    sh: &mut Shell,
    io: &Io,
    body: std::sync::Arc<ast::FunctionBody>,
    argv: Vec<String>,
) -> Outcome {
    if sh.depth >= MAX_DEPTH {
        io.err(&format!(
            "{}{}: maximum function nesting level exceeded ({MAX_DEPTH})\n",
            sh.err_prefix(),
            argv[0]
        ))
        .await;
        return Err(Unwind::Exit(1));
    }
    let saved_args = sh.positional.replace(argv[1..].to_vec());
    sh.depth += 1;
    sh.in_function += 1;
    sh.locals.push(Vec::new());
    // Errors inside are named after where the function was defined: its
    // file, or `environment` for one from a `-c` line (as bash does).
    let named = match sh.func_origins.get(&argv[0]) {
        Some(o) if &**o == "-c" => Some(std::sync::Arc::from("environment")),
        Some(o) if &**o != "trap" => Some(o.clone()),
        _ => sh.err_name.clone(),
    };
    let outer_name = std::mem::replace(&mut sh.err_name, named);
    let r = super::interp::run_body(sh, &body, io).await;
    sh.err_name = outer_name;
    if let Some(frame) = sh.locals.pop() {
        for saved in frame.into_iter().rev() {
            sh.restore(saved);
        }
    }
    sh.in_function -= 1;
    sh.depth -= 1;
    sh.positional = saved_args;
    match r {
        Err(Unwind::Return(s)) => Ok(s),
        other => other,
    }
}
