//! Builtins that must live in the shell because they change its state or
//! its control flow: `cd`, variables, `set`, `exit`/`return`/`break`,
//! `eval`/`source`, `command -v`/`type`/`which`. Output builtins are in
//! [`super::printf`], tests in [`super::cond`], and the builtins that run
//! other commands (`xargs`, `timeout`, `env`, `read`) in [`super::compose`].

use super::interp;
use super::io::{Io, complain};
use super::state::{Outcome, Shell, Unwind};

const BUILTINS: &[&str] = &[
    ":",
    ".",
    "[",
    "alias",
    "break",
    "builtin",
    "dirs",
    "popd",
    "pushd",
    "cd",
    "command",
    "continue",
    "declare",
    "echo",
    "env",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "getopts",
    "hash",
    "let",
    "local",
    "mapfile",
    "printf",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "sleep",
    "source",
    "test",
    "timeout",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
    "which",
    "xargs",
];

pub fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name) || (name == PROBE && crate::worker::hooks::on())
}

/// A test-only builtin (`WES_TEST_HOOKS=1`, debug builds): tries, from
/// inside the server process, what the second wall must refuse.
const PROBE: &str = "__wes_probe";

pub async fn run(sh: &mut Shell, io: &Io, argv: Vec<String>) -> Outcome {
    let name = argv[0].as_str();
    let args = &argv[1..];
    match name {
        ":" | "true" | "alias" | "unalias" | "hash" | "ulimit" | "umask" => Ok(0),
        "trap" => trap(sh, io, args).await,
        "wait" => {
            // `wait [pid]` (a `%job` waits for all, as without job control).
            let pid = args.first().and_then(|a| a.parse().ok());
            Ok(super::interp::wait_jobs_for(sh, pid).await)
        }
        "false" => Ok(1),
        "echo" => super::printf::echo(io, args).await,
        "printf" => super::printf::printf(sh, io, args).await,
        "test" => super::cond::test(sh, io, args, None).await,
        "[" => super::cond::test(sh, io, args, Some("]")).await,
        "cd" => cd(sh, io, args).await,
        "pwd" => {
            // `-P`: the directory with its links resolved (inside the
            // workspace; the logical one when that fails).
            let physical = args.iter().any(|a| a == "-P");
            let uri = crate::fs::to_file_uri(&sh.cwd);
            let shown = match physical.then(|| sh.exec.workspace.canonicalize(&uri)) {
                Some(Ok(u)) => crate::fs::parse_file_uri(&u).unwrap_or_else(|_| sh.cwd.clone()),
                _ => sh.cwd.clone(),
            };
            io.out(format!("{shown}\n").as_bytes()).await?;
            Ok(0)
        }
        "builtin" => match args.first() {
            None => Ok(0),
            Some(b) if is_builtin(b) => Box::pin(run(sh, io, args.to_vec())).await,
            Some(b) => complain(sh, io, "builtin", &format!("{b}: not a shell builtin"), 1).await,
        },
        "pushd" | "popd" | "dirs" => dir_stack(sh, io, name, args).await,
        PROBE => {
            io.out(crate::worker::probe(args).as_bytes()).await?;
            Ok(0)
        }
        "export" | "readonly" | "declare" | "typeset" | "local" => {
            declare(sh, io, name, args).await
        }
        "unset" => {
            let mut status = 0;
            let funcs = args.first().is_some_and(|a| a == "-f");
            for a in args.iter().filter(|a| !a.starts_with('-')) {
                if funcs {
                    sh.funcs.remove(a);
                } else if let Err(msg) = sh.unset(a) {
                    status = complain(sh, io, "unset", &msg, 1).await?;
                }
            }
            Ok(status)
        }
        "shift" => {
            let n = match args.first().map(|a| a.parse::<usize>()) {
                None => 1,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    return complain(
                        sh,
                        io,
                        "shift",
                        &format!("{}: numeric argument required", args[0]),
                        1,
                    )
                    .await;
                }
            };
            if n > sh.positional.len() {
                return Ok(1);
            }
            sh.positional.shift(n);
            Ok(0)
        }
        "exit" => {
            let code = match args.first() {
                None => sh.status,
                Some(a) => match a.parse::<i64>() {
                    Ok(n) => (n & 0xff) as i32,
                    Err(_) => {
                        complain(sh, io, "exit", &format!("{a}: numeric argument required"), 2)
                            .await?;
                        2
                    }
                },
            };
            Err(Unwind::Exit(code))
        }
        "return" => {
            let code = args
                .first()
                .and_then(|a| a.parse::<i64>().ok())
                .map_or(sh.status, |n| (n & 0xff) as i32);
            if sh.in_function == 0 && sh.depth <= 1 {
                return complain(
                    sh,
                    io,
                    "return",
                    "can only `return' from a function or sourced script",
                    1,
                )
                .await;
            }
            Err(Unwind::Return(code))
        }
        "break" | "continue" => {
            let n = args.first().and_then(|a| a.parse::<usize>().ok()).unwrap_or(1).max(1);
            if sh.loops == 0 {
                return Ok(0);
            }
            Err(if name == "break" { Unwind::Break(n) } else { Unwind::Continue(n) })
        }
        "set" => set(sh, io, args).await,
        "shopt" => shopt(sh, io, args).await,
        "eval" => {
            let text = args.join(" ");
            interp::run_text(sh, io, &text, "-c").await
        }
        "source" | "." => source(sh, io, args).await,
        "exec" => {
            if args.is_empty() {
                return Ok(0);
            }
            let status = super::simple::run_argv(sh, io, args.to_vec(), Vec::new()).await?;
            Err(Unwind::Exit(status))
        }
        "command" => command(sh, io, args).await,
        "type" | "which" => describe(sh, io, name, args).await,
        "let" => {
            let mut last = 0;
            for a in args {
                match super::arith::eval(sh, a) {
                    Ok(v) => last = v,
                    Err(msg) => return complain(sh, io, "let", &msg, 1).await,
                }
            }
            Ok((last == 0) as i32)
        }
        "sleep" => {
            let secs: f64 = args.iter().filter_map(|a| super::compose::parse_seconds(a)).sum();
            tokio::time::sleep(std::time::Duration::from_secs_f64(secs.clamp(0.0, 1e9))).await;
            Ok(0)
        }
        "getopts" => getopts(sh, io, args).await,
        _ => super::compose::run(sh, io, name, args).await,
    }
}

/// `pushd DIR`, `popd`, `dirs`: the directory stack (in a variable of the
/// shell's own, `DIRSTACK`, newline-separated; bash's is an array), with
/// the working directory on top.
async fn dir_stack(sh: &mut Shell, io: &Io, name: &str, args: &[String]) -> Outcome {
    let stack: Vec<String> = sh
        .get("DIRSTACK")
        .map(|s| s.split('\n').filter(|d| !d.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let show = |sh: &Shell, stack: &[String]| {
        let home = sh.get("HOME").unwrap_or("").to_owned();
        let tilde = |d: &str| match d.strip_prefix(home.as_str()) {
            Some(rest) if !home.is_empty() && (rest.is_empty() || rest.starts_with('/')) => {
                format!("~{rest}")
            }
            _ => d.to_owned(),
        };
        let mut all = vec![tilde(&sh.cwd)];
        all.extend(stack.iter().map(|d| tilde(d)));
        all.join(" ") + "\n"
    };
    match name {
        "dirs" => {
            io.out(show(sh, &stack).as_bytes()).await?;
            Ok(0)
        }
        "pushd" => {
            let Some(dir) = args.iter().find(|a| !a.starts_with('-') || *a == "-") else {
                return complain(sh, io, "pushd", "no other directory", 1).await;
            };
            let old = sh.cwd.clone();
            let status = cd(sh, io, std::slice::from_ref(dir)).await?;
            if status != 0 {
                return Ok(status);
            }
            let mut stack = stack;
            stack.insert(0, old);
            if let Err(msg) = sh.set("DIRSTACK", &stack.join("\n")) {
                return complain(sh, io, "pushd", &msg, 1).await;
            }
            io.out(show(sh, &stack).as_bytes()).await?;
            Ok(0)
        }
        _ => {
            let Some((top, rest)) = stack.split_first() else {
                return complain(sh, io, "popd", "directory stack empty", 1).await;
            };
            let status = cd(sh, io, std::slice::from_ref(top)).await?;
            if status != 0 {
                return Ok(status);
            }
            if let Err(msg) = sh.set("DIRSTACK", &rest.join("\n")) {
                return complain(sh, io, "popd", &msg, 1).await;
            }
            io.out(show(sh, rest).as_bytes()).await?;
            Ok(0)
        }
    }
}

async fn cd(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let args: Vec<&String> =
        args.iter().filter(|a| !matches!(a.as_str(), "-L" | "-P" | "--")).collect();
    let (target, print) = match args.first().map(|s| s.as_str()) {
        None => match sh.get("HOME") {
            Some(h) => (h.to_owned(), false),
            None => return complain(sh, io, "cd", "HOME not set", 1).await,
        },
        Some("-") => match sh.get("OLDPWD") {
            Some(o) => (o.to_owned(), true),
            None => return complain(sh, io, "cd", "OLDPWD not set", 1).await,
        },
        Some(t) => (t.to_owned(), false),
    };
    if args.len() > 1 {
        return complain(sh, io, "cd", "too many arguments", 1).await;
    }
    let abs = crate::fs::path::normalize_absolute(&sh.absolute(&target));
    // The workspace, or the command's private /tmp (`cd "$(mktemp -d)"`).
    let Some((dir, rel)) = sh.locate(&abs) else {
        return complain(sh, io, "cd", &format!("{target}: Permission denied"), 1).await;
    };
    match dir.metadata(&rel) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return complain(sh, io, "cd", &format!("{target}: Not a directory"), 1).await,
        Err(e) => {
            return complain(sh, io, "cd", &format!("{target}: {}", crate::fs::strerror(&e)), 1)
                .await;
        }
    }
    let old = std::mem::replace(&mut sh.cwd, abs.clone());
    sh.set_exported("OLDPWD", &old);
    sh.set_exported("PWD", &abs);
    if print {
        io.out(format!("{abs}\n").as_bytes()).await?;
    }
    Ok(0)
}

fn quote_value(v: &str) -> String {
    format!(
        "\"{}\"",
        v.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$").replace('`', "\\`")
    )
}

/// `declare -p`'s line for one variable: its flags, and an array as
/// `([0]="a" [1]="b")`.
fn declare_line(name: &str, v: &super::state::Var) -> String {
    let mut flags = String::new();
    if v.array.is_some() {
        flags.push('a');
    }
    if v.keyed.is_some() {
        flags.push('A');
    }
    if v.integer {
        flags.push('i');
    }
    if v.readonly {
        flags.push('r');
    }
    if v.exported {
        flags.push('x');
    }
    let flags = if flags.is_empty() { "--".to_owned() } else { format!("-{flags}") };
    if let Some(items) = &v.keyed {
        let body: String =
            items.iter().map(|(k, s)| format!("[{k}]={} ", quote_value(s))).collect();
        return format!("declare {flags} {name}=({body})\n");
    }
    match &v.array {
        Some(items) => {
            let body: Vec<String> =
                items.iter().map(|(i, s)| format!("[{i}]={}", quote_value(s))).collect();
            format!("declare {flags} {name}=({})\n", body.join(" "))
        }
        None => format!("declare {flags} {name}={}\n", quote_value(&v.value)),
    }
}

async fn declare(sh: &mut Shell, io: &Io, name: &str, args: &[String]) -> Outcome {
    let mut export = name == "export";
    let mut readonly = name == "readonly";
    let mut unexport = false;
    let mut print = false;
    let mut integer = false;
    let mut assoc = false;
    let mut names = Vec::new();
    for a in args {
        if let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty() && !a.contains('=')) {
            for c in flags.chars() {
                match c {
                    'x' => export = true,
                    'r' => readonly = true,
                    'i' => integer = true,
                    'A' => assoc = true,
                    'n' if name == "export" => unexport = true,
                    'p' => print = true,
                    _ => {}
                }
            }
        } else {
            names.push(a.clone());
        }
    }
    if name == "local" && sh.in_function == 0 {
        return complain(sh, io, "local", "can only be used in a function", 1).await;
    }
    if names.is_empty() && (print || name != "local") {
        let mut list: Vec<(&String, &super::state::Var)> = sh
            .vars
            .iter()
            .filter(|(_, v)| (!export || v.exported) && (!readonly || v.readonly))
            .collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = String::new();
        for (k, v) in list {
            out.push_str(&declare_line(k, v));
        }
        io.out(out.as_bytes()).await?;
        return Ok(0);
    }
    let mut status = 0;
    for n in names {
        let (var, value) = match n.split_once('=') {
            Some((k, v)) => {
                (k.trim_end_matches('+').to_owned(), Some((v.to_owned(), k.ends_with('+'))))
            }
            None => (n.clone(), None),
        };
        if var.is_empty()
            || !var.chars().all(|c| c.is_alphanumeric() || c == '_')
            || var.starts_with(|c: char| c.is_ascii_digit())
        {
            status = complain(sh, io, name, &format!("`{n}': not a valid identifier"), 1).await?;
            continue;
        }
        if print {
            match sh.vars.get(&var) {
                Some(v) => io.out(declare_line(&var, v).as_bytes()).await?,
                None => status = complain(sh, io, name, &format!("{var}: not found"), 1).await?,
            }
            continue;
        }
        if name == "local" {
            sh.make_local(&var);
        }
        if integer {
            sh.vars.flags(&var, |v| v.integer = true);
        }
        if assoc && let Err(msg) = sh.make_assoc(&var) {
            status = complain(sh, io, name, &msg, 1).await?;
            continue;
        }
        if let Some((v, append)) = value {
            let integer = sh.vars.get(&var).is_some_and(|x| x.integer);
            let v = match (append, integer) {
                (true, true) => format!("{} + ({v})", sh.get(&var).unwrap_or("0")),
                (true, false) => format!("{}{v}", sh.get(&var).unwrap_or("")),
                _ => v,
            };
            if let Err(msg) = sh.set(&var, &v) {
                status = complain(sh, io, name, &msg, 1).await?;
                continue;
            }
        } else if name == "local" || !sh.vars.contains_key(&var) && (export || readonly) {
            sh.vars.flags(&var, |_| {});
        }
        if sh.vars.contains_key(&var) {
            sh.vars.flags(&var, |v| {
                if export {
                    v.exported = true;
                }
                if unexport {
                    v.exported = false;
                }
                if readonly {
                    v.readonly = true;
                }
            });
        }
    }
    Ok(status)
}

async fn set(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    if args.is_empty() {
        let mut list: Vec<(&String, &super::state::Var)> = sh.vars.iter().collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        let out: String =
            list.iter().map(|(k, v)| format!("{k}={}\n", quote_set(&v.value))).collect();
        io.out(out.as_bytes()).await?;
        return Ok(0);
    }
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            sh.positional.replace(args[i + 1..].to_vec());
            return Ok(0);
        }
        let on = a.starts_with('-');
        if !(on || a.starts_with('+')) || a.len() < 2 {
            sh.positional.replace(args[i..].to_vec());
            return Ok(0);
        }
        if &a[1..] == "o" {
            let Some(opt) = args.get(i + 1) else {
                io.out(list_options(sh, on).as_bytes()).await?;
                return Ok(0);
            };
            if !set_option(sh, opt, on) {
                return complain(sh, io, "set", &format!("{opt}: invalid option name"), 2).await;
            }
            i += 2;
            continue;
        }
        // `set -euo pipefail`: an `o` among the letters takes the next
        // argument as its option name.
        let mut takes_name = false;
        for c in a[1..].chars() {
            match c {
                'o' if !takes_name => takes_name = true,
                'e' => sh.opts.errexit = on,
                'u' => sh.opts.nounset = on,
                'x' => sh.opts.xtrace = on,
                'f' => sh.opts.noglob = on,
                'C' => sh.opts.noclobber = on,
                'v' | 'h' | 'B' | 'H' | 'm' | 'b' | 'T' | 'E' | 'a' | 'k' | 'p' | 'P' => {}
                _ => return complain(sh, io, "set", &format!("-{c}: invalid option"), 2).await,
            }
        }
        if takes_name {
            let Some(opt) = args.get(i + 1) else { return Ok(0) };
            if !set_option(sh, opt, on) {
                return complain(sh, io, "set", &format!("{opt}: invalid option name"), 2).await;
            }
            i += 1;
        }
        i += 1;
    }
    Ok(0)
}

/// `getopts OPTSTRING NAME [ARG…]`, as bash: the next option of the
/// arguments (the positional parameters by default) in NAME, its value in
/// OPTARG, the next argument's index in OPTIND; status 1 at the end of the
/// options. A leading `:` in OPTSTRING reports errors in NAME and OPTARG
/// instead of on stderr.
async fn getopts(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let [spec, name, rest @ ..] = args else {
        return complain(sh, io, "getopts", "usage: getopts optstring name [arg ...]", 2).await;
    };
    let argv: Vec<String> = if rest.is_empty() { sh.positional.to_vec() } else { rest.to_vec() };
    let (silent, spec) = match spec.strip_prefix(':') {
        Some(s) => (true, s),
        None => (false, spec.as_str()),
    };
    let mut optind =
        sh.get("OPTIND").and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(1).max(1);
    let mut offset = if sh.getopts_at.0 == optind { sh.getopts_at.1 } else { 0 };
    let arg = argv.get(optind - 1).map(String::as_str);
    let end = |sh: &mut Shell, optind: usize| -> Result<(), String> {
        sh.getopts_at = (0, 0);
        sh.set("OPTIND", &optind.to_string())?;
        sh.set(name, "?")
    };
    let result = (|| -> Result<(i32, Option<String>), String> {
        let Some(arg) = arg else {
            end(sh, optind)?;
            return Ok((1, None));
        };
        if offset == 0 {
            if arg == "--" {
                end(sh, optind + 1)?;
                return Ok((1, None));
            }
            if !arg.starts_with('-') || arg == "-" {
                end(sh, optind)?;
                return Ok((1, None));
            }
            offset = 1;
        }
        let c = arg[offset..].chars().next().unwrap_or('?');
        offset += c.len_utf8();
        let at_end = offset >= arg.len();
        let known = c != ':' && spec.contains(c);
        let takes_value =
            known && spec[spec.find(c).unwrap_or(0) + c.len_utf8()..].starts_with(':');
        let mut message = None;
        if !known {
            sh.set(name, "?")?;
            if silent {
                sh.set("OPTARG", &c.to_string())?;
            } else {
                let _ = sh.unset("OPTARG");
                message = Some(format!("illegal option -- {c}"));
            }
        } else if takes_value {
            let value = if !at_end {
                Some(arg[offset..].to_owned())
            } else {
                optind += 1;
                argv.get(optind - 1).cloned()
            };
            offset = arg.len();
            match value {
                Some(v) => {
                    sh.set(name, &c.to_string())?;
                    sh.set("OPTARG", &v)?;
                }
                None if silent => {
                    sh.set(name, ":")?;
                    sh.set("OPTARG", &c.to_string())?;
                }
                None => {
                    sh.set(name, "?")?;
                    let _ = sh.unset("OPTARG");
                    message = Some(format!("option requires an argument -- {c}"));
                }
            }
        } else {
            sh.set(name, &c.to_string())?;
            let _ = sh.unset("OPTARG");
        }
        if offset >= arg.len() {
            optind += 1;
            offset = 0;
        }
        sh.getopts_at = (optind, offset);
        sh.set("OPTIND", &optind.to_string())?;
        Ok((0, message))
    })();
    match result {
        Ok((status, message)) => {
            if let Some(m) = message {
                io.err(&format!("{}: {m}\n", sh.arg0)).await;
            }
            Ok(status)
        }
        Err(msg) => complain(sh, io, "getopts", &msg, 1).await,
    }
}

/// `trap [-p] ['ACTION'|-|''] SIGNAL…`: an EXIT (or `0`) action runs when
/// the shell or subshell ends ([`super::interp::run_exit_trap`]), an ERR
/// action after a command fails where `set -e` would stop. No signal ever
/// reaches a sandboxed line, so actions for the others are accepted and
/// never run.
async fn trap(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let args: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--").collect();
    if args.is_empty() || args == ["-p"] || args.first() == Some(&"-p") {
        let wanted = &args[args.len().min(1)..];
        if let Some(action) = &sh.exit_trap.0
            && (wanted.is_empty() || wanted.iter().any(|s| is_exit_signal(s)))
        {
            io.out(format!("trap -- {} EXIT\n", quote_set(action)).as_bytes()).await?;
        }
        if let Some(action) = &sh.err_trap.0
            && (wanted.is_empty() || wanted.contains(&"ERR"))
        {
            io.out(format!("trap -- {} ERR\n", quote_set(action)).as_bytes()).await?;
        }
        return Ok(0);
    }
    if args[0] == "-l" {
        io.out(b" 1) SIGHUP\t 2) SIGINT\t 3) SIGQUIT\t 9) SIGKILL\t15) SIGTERM\n").await?;
        return Ok(0);
    }
    // `trap SIGNAL…` alone (an action that is a number) resets, as `-`.
    let (action, signals) = if args.len() == 1 || args[0].parse::<u32>().is_ok() {
        ("-", &args[..])
    } else {
        (args[0], &args[1..])
    };
    for sig in signals {
        let name = sig.to_ascii_uppercase();
        let name = name.strip_prefix("SIG").unwrap_or(&name);
        let known = is_exit_signal(name)
            || matches!(
                name,
                "HUP"
                    | "INT"
                    | "QUIT"
                    | "TERM"
                    | "KILL"
                    | "USR1"
                    | "USR2"
                    | "PIPE"
                    | "ALRM"
                    | "CHLD"
                    | "ERR"
                    | "DEBUG"
                    | "RETURN"
                    | "WINCH"
                    | "TSTP"
                    | "CONT"
            )
            || name.parse::<u32>().is_ok_and(|n| n < 65);
        if !known {
            return complain(sh, io, "trap", &format!("{sig}: invalid signal specification"), 1)
                .await;
        }
        let slot = if is_exit_signal(name) {
            &mut sh.exit_trap
        } else if name == "ERR" {
            &mut sh.err_trap
        } else {
            continue;
        };
        slot.0 = match action {
            "-" | "" => None,
            a => Some(a.into()),
        };
    }
    Ok(0)
}

fn is_exit_signal(s: &str) -> bool {
    matches!(s, "EXIT" | "exit" | "0" | "SIGEXIT")
}

/// `shopt [-s|-u|-q] [name…]`: globstar, nullglob, dotglob, nocaseglob,
/// failglob and extglob change pathname expansion (extglob also pattern
/// matching, and how later lines parse), nocasematch `case` and `[[ ]]`;
/// the other common options are accepted and change nothing.
async fn shopt(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    const ACCEPTED: &[&str] = &[
        "expand_aliases",
        "checkwinsize",
        "histappend",
        "lastpipe",
        "inherit_errexit",
        "sourcepath",
    ];
    let mut mode = None;
    let mut quiet = false;
    let mut print = false;
    let mut names = Vec::new();
    for a in args {
        match a.as_str() {
            "-s" => mode = Some(true),
            "-u" => mode = Some(false),
            "-q" => quiet = true,
            "-p" => print = true,
            "-o" => {}
            _ => names.push(a.as_str()),
        }
    }
    let get = |sh: &Shell, n: &str| -> Option<bool> {
        let mut g = sh.opts.glob;
        g.flag(n).map(|f| *f).or_else(|| ACCEPTED.contains(&n).then_some(false))
    };
    let mut status = 0;
    for n in &names {
        if get(sh, n).is_none() {
            io.err(&format!("{}shopt: {n}: invalid shell option name\n", sh.err_prefix())).await;
            status = 1;
            continue;
        }
        match mode {
            Some(on) => {
                if let Some(f) = sh.opts.glob.flag(n) {
                    *f = on;
                }
            }
            None => {
                let on = get(sh, n).unwrap_or(false);
                if !on {
                    status = 1;
                }
                if print {
                    let flag = if on { 's' } else { 'u' };
                    io.out(format!("shopt -{flag} {n}\n").as_bytes()).await?;
                } else if !quiet {
                    let state = if on { "on" } else { "off" };
                    io.out(format!("{n:<15}\t{state}\n").as_bytes()).await?;
                }
            }
        }
    }
    Ok(status)
}

fn quote_set(v: &str) -> String {
    if v.chars().all(|c| c.is_alphanumeric() || "-_./:,+@%".contains(c)) && !v.is_empty() {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

/// `set -o` (`on`) and `set +o` with no name: every option, as bash lists
/// them (a table, or the commands that restore them).
fn list_options(sh: &Shell, table: bool) -> String {
    const OPTIONS: &[&str] = &[
        "allexport",
        "braceexpand",
        "emacs",
        "errexit",
        "errtrace",
        "functrace",
        "hashall",
        "histexpand",
        "history",
        "ignoreeof",
        "interactive-comments",
        "keyword",
        "monitor",
        "noclobber",
        "noexec",
        "noglob",
        "nolog",
        "notify",
        "nounset",
        "onecmd",
        "physical",
        "pipefail",
        "posix",
        "privileged",
        "verbose",
        "vi",
        "xtrace",
    ];
    let o = &sh.opts;
    OPTIONS
        .iter()
        .map(|&name| {
            let on = match name {
                "braceexpand" | "hashall" | "interactive-comments" => true,
                "errexit" => o.errexit,
                "nounset" => o.nounset,
                "xtrace" => o.xtrace,
                "pipefail" => o.pipefail,
                "noglob" => o.noglob,
                "noclobber" => o.noclobber,
                _ => false,
            };
            if table {
                format!("{name:<15}\t{}\n", if on { "on" } else { "off" })
            } else {
                format!("set {}o {name}\n", if on { '-' } else { '+' })
            }
        })
        .collect()
}

pub fn set_option(sh: &mut Shell, name: &str, on: bool) -> bool {
    match name {
        "errexit" => sh.opts.errexit = on,
        "nounset" => sh.opts.nounset = on,
        "xtrace" => sh.opts.xtrace = on,
        "pipefail" => sh.opts.pipefail = on,
        "noglob" => sh.opts.noglob = on,
        "noclobber" => sh.opts.noclobber = on,
        "verbose"
        | "posix"
        | "monitor"
        | "braceexpand"
        | "hashall"
        | "histexpand"
        | "history"
        | "allexport"
        | "notify"
        | "ignoreeof"
        | "interactive-comments"
        | "keyword"
        | "physical"
        | "privileged"
        | "functrace"
        | "errtrace"
        | "emacs"
        | "vi"
        | "nolog" => {}
        _ => return false,
    }
    true
}

async fn source(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let Some(file) = args.first() else {
        return complain(sh, io, "source", "filename argument required", 2).await;
    };
    let text = match super::invoke::read_script(sh, file) {
        Ok(t) => t,
        // bash names the file, not the builtin.
        Err(msg) => {
            io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
            return Ok(1);
        }
    };
    let saved = (args.len() > 1).then(|| sh.positional.replace(args[1..].to_vec()));
    let outer = sh.enter_source(file);
    let r = interp::run_text(sh, io, &text, file).await;
    sh.leave_source(outer);
    if let Some(p) = saved {
        sh.positional = p;
    }
    match r {
        Err(Unwind::Return(s)) => Ok(s),
        other => other,
    }
}

/// How `name` would run: `builtin`, `function`, a tool path, or nothing.
/// This is why `which` stays a builtin rather than a host command: it
/// answers from the shell's functions and builtins, as `type` does.
pub fn lookup(sh: &Shell, name: &str) -> Option<String> {
    if sh.funcs.contains_key(name) {
        Some("function".into())
    } else if is_builtin(name) {
        Some("builtin".into())
    } else if matches!(name, "bash" | "sh")
        || crate::hostcmd::is_host_command(crate::exec::command_name(name))
        || sh.exec.runtime.tool(crate::exec::command_name(name)).is_some()
    {
        Some(if name.contains('/') { name.to_owned() } else { format!("/usr/bin/{name}") })
    } else {
        None
    }
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "function", "in", "[[", "]]", "{", "}", "!",
];

async fn command(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let mut verbose = None;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-v" => verbose = Some(false),
            "-V" => verbose = Some(true),
            "-p" => {}
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    match verbose {
        None if rest.is_empty() => Ok(0),
        None => {
            // Skip functions: run a builtin or a tool.
            let saved = sh.funcs.remove(&rest[0]);
            let r = super::simple::run_argv(sh, io, rest.to_vec(), Vec::new()).await;
            if let Some(f) = saved {
                sh.funcs.insert(rest[0].clone(), f);
            }
            r
        }
        Some(long) => {
            let mut status = 0;
            for name in rest {
                match lookup(sh, name) {
                    Some(kind) if kind == "builtin" || kind == "function" => {
                        let line = if long {
                            format!("{name} is a shell {kind}\n")
                        } else {
                            format!("{name}\n")
                        };
                        io.out(line.as_bytes()).await?;
                    }
                    Some(path) => {
                        let line =
                            if long { format!("{name} is {path}\n") } else { format!("{path}\n") };
                        io.out(line.as_bytes()).await?;
                    }
                    None if KEYWORDS.contains(&name.as_str()) => {
                        io.out(format!("{name}\n").as_bytes()).await?
                    }
                    None => status = 1,
                }
            }
            Ok(status)
        }
    }
}

async fn describe(sh: &mut Shell, io: &Io, which: &str, args: &[String]) -> Outcome {
    let mut status = 0;
    let path_only = which == "which" || args.iter().any(|a| a == "-p" || a == "-P");
    let type_only = args.iter().any(|a| a == "-t");
    for name in args.iter().filter(|a| !a.starts_with('-')) {
        let found = lookup(sh, name);
        let line = match (&found, which) {
            (None, "type") if KEYWORDS.contains(&name.as_str()) => Some(if type_only {
                "keyword\n".to_owned()
            } else {
                format!("{name} is a shell keyword\n")
            }),
            (None, "type") => {
                status = 1;
                if !type_only && !path_only {
                    complain(sh, io, "type", &format!("{name}: not found"), 1).await?;
                }
                None
            }
            (None, _) => {
                status = 1;
                None
            }
            (Some(k), "which") if k == "builtin" || k == "function" => {
                // `which` is an external program in bash: it only knows paths.
                if matches!(
                    name.as_str(),
                    "echo"
                        | "printf"
                        | "test"
                        | "["
                        | "pwd"
                        | "true"
                        | "false"
                        | "sleep"
                        | "env"
                        | "xargs"
                        | "timeout"
                        | "which"
                ) {
                    Some(format!("/usr/bin/{name}\n"))
                } else {
                    status = 1;
                    None
                }
            }
            (Some(k), _) if type_only => Some(format!(
                "{}\n",
                if k == "builtin" || k == "function" { k.as_str() } else { "file" }
            )),
            (Some(k), _) if k == "builtin" => Some(format!("{name} is a shell builtin\n")),
            (Some(k), _) if k == "function" => Some(format!("{name} is a function\n")),
            (Some(p), _) if path_only => Some(format!("{p}\n")),
            (Some(p), _) => Some(format!("{name} is {p}\n")),
        };
        if let Some(l) = line {
            io.out(l.as_bytes()).await?;
        }
    }
    Ok(status)
}
