//! Builtins that read input or run other commands: `read`, `mapfile`,
//! `env`, `xargs`, `timeout`. Commands they run go through the same lookup
//! as any simple command ([`super::simple::run_argv`]), so `xargs grep`
//! runs the grep tool on the same pipes.

use super::expand;
use super::io::{Io, complain};
use super::simple::run_argv;
use super::state::{self, Array, MAX_VALUE, Outcome, Shell, Unwind};

pub async fn run(sh: &mut Shell, io: &Io, name: &str, args: &[String]) -> Outcome {
    match name {
        "read" => read(sh, io, args).await,
        "mapfile" | "readarray" => mapfile(sh, io, args).await,
        "env" => env(sh, io, args).await,
        "xargs" => xargs(sh, io, args).await,
        "timeout" => timeout(sh, io, args).await,
        _ => complain(sh, io, name, "not implemented", 2).await,
    }
}

async fn read(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let mut raw = false;
    let mut array = None;
    let mut names = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-r" => raw = true,
            "-s" | "-e" => {}
            "-p" | "-t" | "-n" | "-N" | "-u" | "-i" => i += 1,
            "-a" => {
                array = args.get(i + 1).cloned();
                i += 1;
            }
            "-d" => i += 1,
            a if a.starts_with('-') && a.len() > 1 && names.is_empty() => {
                if a.contains('r') {
                    raw = true;
                }
            }
            a => names.push(a.to_owned()),
        }
        i += 1;
    }
    let mut line = String::new();
    let mut complete = false;
    loop {
        let Some((part, nl)) = io.stdin.read_line().await else { break };
        complete = nl;
        if !raw && part.ends_with('\\') && nl {
            line.push_str(&part[..part.len() - 1]);
            continue;
        }
        line.push_str(&part);
        break;
    }
    if !complete && line.is_empty() {
        for n in names.iter().chain(array.iter()) {
            let _ = sh.set(n, "");
        }
        return Ok(1);
    }
    if !raw {
        line = unescape_read(&line);
    }
    let ifs = sh.get("IFS").unwrap_or(" \t\n").to_owned();
    if let Some(a) = array {
        let items = state::array_of(split_ifs(&line, &ifs, usize::MAX));
        if let Err(msg) = sh.set_array(&a, items) {
            return complain(sh, io, "read", &msg, 1).await;
        }
        return Ok((!complete) as i32);
    }
    if names.is_empty() {
        names.push("REPLY".into());
        if let Err(msg) = sh.set("REPLY", &line) {
            return complain(sh, io, "read", &msg, 1).await;
        }
        return Ok((!complete) as i32);
    }
    let fields = split_ifs(&line, &ifs, names.len());
    for (k, n) in names.iter().enumerate() {
        let v = fields.get(k).map(String::as_str).unwrap_or("");
        if let Err(msg) = sh.set(n, v) {
            return complain(sh, io, "read", &msg, 1).await;
        }
    }
    Ok((!complete) as i32)
}

fn unescape_read(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits for `read`: at most `n` fields, the last one taking the rest
/// (with trailing IFS whitespace trimmed).
pub fn split_ifs(line: &str, ifs: &str, n: usize) -> Vec<String> {
    let is_ws = |c: char| ifs.contains(c) && c.is_whitespace();
    let mut out = Vec::new();
    let mut rest = line.trim_start_matches(is_ws);
    while !rest.is_empty() {
        if out.len() + 1 == n {
            out.push(rest.trim_end_matches(is_ws).to_owned());
            return out;
        }
        match rest.find(|c: char| ifs.contains(c)) {
            Some(pos) => {
                out.push(rest[..pos].to_owned());
                let mut r = &rest[pos..];
                // One delimiter plus surrounding IFS whitespace.
                r = r.trim_start_matches(is_ws);
                if let Some(c) = r.chars().next().filter(|c| ifs.contains(*c) && !c.is_whitespace())
                {
                    if rest[pos..].starts_with(|x: char| x.is_whitespace())
                        || rest[pos..].starts_with(c)
                    {
                        r = r[c.len_utf8()..].trim_start_matches(is_ws);
                    }
                }
                rest = r;
            }
            None => {
                out.push(rest.to_owned());
                break;
            }
        }
    }
    out
}

async fn mapfile(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let strip = args.iter().any(|a| a == "-t");
    let name =
        args.iter().rfind(|a| !a.starts_with('-')).cloned().unwrap_or_else(|| "MAPFILE".into());
    let mut items = Array::new();
    // What the lines hold is charged as they come (an endless pipe ends at
    // the budget); the array takes the charge over below.
    let mut lease = sh.budget.lease(0).map_err(|_| Unwind::Exit(137))?;
    let mut held = 0;
    while let Some((line, nl)) = io.stdin.read_line().await {
        held += state::item_bytes(&line);
        if let Err(m) = lease.grow_to(held) {
            return Err(expand::out_of_memory(sh, io, m).await);
        }
        items.insert(items.len(), if strip || !nl { line } else { line + "\n" });
    }
    drop(lease);
    match sh.set_array(&name, items) {
        Ok(()) => Ok(0),
        Err(msg) => complain(sh, io, "mapfile", &msg, 1).await,
    }
}

async fn env(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let mut assigns = Vec::new();
    let mut clear = false;
    let mut unset = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "-i" || a == "-" {
            clear = true;
        } else if a == "-u" {
            unset.extend(args.get(i + 1).cloned());
            i += 1;
        } else if a == "--" {
            i += 1;
            break;
        } else if let Some((k, v)) =
            a.split_once('=').filter(|(k, _)| !k.is_empty() && !k.starts_with('-'))
        {
            assigns.push((k.to_owned(), v.to_owned()));
        } else {
            break;
        }
        i += 1;
    }
    let mut sub = sh.clone();
    if clear {
        let names: Vec<String> = sub.vars.keys().cloned().collect();
        for n in names {
            sub.vars.flags(&n, |v| v.exported = false);
        }
    }
    for u in &unset {
        sub.vars.remove(u);
    }
    if i >= args.len() {
        let out: String =
            sub.env_for_guest(&assigns).iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        io.out(out.as_bytes()).await?;
        return Ok(0);
    }
    // `env` runs a program, never a function.
    sub.funcs.clear();
    run_argv(&mut sub, io, args[i..].to_vec(), assigns).await.or_else(|u| match u {
        Unwind::Exit(s) => Ok(s),
        other => Err(other),
    })
}

async fn timeout(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-s" | "--signal" | "-k" | "--kill-after" => i += 2,
            "--preserve-status" | "--foreground" | "-v" | "--verbose" => i += 1,
            s if s.starts_with("--signal=")
                || s.starts_with("--kill-after=")
                || (s.starts_with('-') && s.len() > 1 && s.parse::<f64>().is_err()) =>
            {
                i += 1
            }
            _ => break,
        }
    }
    let Some(dur) = args.get(i).and_then(|d| parse_seconds(d)) else {
        return complain(sh, io, "timeout", "invalid time interval", 125).await;
    };
    let cmd = args[i + 1..].to_vec();
    if cmd.is_empty() {
        return complain(sh, io, "timeout", "missing operand", 125).await;
    }
    let mut sub = sh.clone();
    let run = run_argv(&mut sub, io, cmd, Vec::new());
    if dur == 0.0 {
        return run.await;
    }
    match tokio::time::timeout(std::time::Duration::from_secs_f64(dur.min(1e9)), run).await {
        Ok(r) => r.or_else(|u| match u {
            Unwind::Exit(s) => Ok(s),
            other => Err(other),
        }),
        Err(_) => Ok(124),
    }
}

/// A duration for `timeout` and `sleep`: `30`, `1.5`, `2m`, `1h`.
pub fn parse_seconds(s: &str) -> Option<f64> {
    let (num, mult) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1.0),
        'm' => (&s[..s.len() - 1], 60.0),
        'h' => (&s[..s.len() - 1], 3600.0),
        'd' => (&s[..s.len() - 1], 86400.0),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v * mult)
}

/// Splits xargs input: whitespace-separated, with quotes and backslashes.
fn xargs_items(input: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut quote: Option<char> = None;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                has = true;
            }
            (None, '\\') => {
                cur.extend(chars.next());
                has = true;
            }
            (None, c) if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    out
}

async fn xargs(sh: &mut Shell, io: &Io, args: &[String]) -> Outcome {
    let mut max_args: Option<usize> = None;
    let mut replace: Option<String> = None;
    let mut delim: Option<char> = None;
    let mut no_empty = false;
    let mut trace = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let next = args.get(i + 1).cloned();
        match a.as_str() {
            "-0" | "--null" => delim = Some('\0'),
            "-r" | "--no-run-if-empty" => no_empty = true,
            "-t" | "--verbose" => trace = true,
            "-n" | "-L" | "-l" => {
                max_args = next.and_then(|n| n.parse().ok());
                i += 1;
            }
            "-I" | "-i" => {
                replace = Some(next.unwrap_or_else(|| "{}".into()));
                i += 1;
            }
            "-d" => {
                delim = next
                    .as_deref()
                    .map(|d| if d == "\\n" { '\n' } else { d.chars().next().unwrap_or('\n') });
                i += 1;
            }
            "-P" | "-s" | "-E" | "-a" => i += 1,
            "-x" | "-p" => {}
            s if s.starts_with("-n") && s.len() > 2 => max_args = s[2..].parse().ok(),
            s if s.starts_with("-L") && s.len() > 2 => max_args = s[2..].parse().ok(),
            s if s.starts_with("-P") || s.starts_with("-s") => {}
            s if s.starts_with("-I") && s.len() > 2 => replace = Some(s[2..].to_owned()),
            s if s.starts_with("--max-args=") => max_args = s[11..].parse().ok(),
            s if s.starts_with("--replace") => {
                replace = Some(s.split_once('=').map_or("{}", |x| x.1).to_owned())
            }
            _ => break,
        }
        i += 1;
    }
    let mut cmd: Vec<String> = args[i..].to_vec();
    if cmd.is_empty() {
        cmd.push("echo".into());
    }
    let input = io.stdin.read_all(MAX_VALUE).await;
    let input = String::from_utf8_lossy(&input);
    let items: Vec<String> = match (delim, &replace) {
        (Some(d), _) => input.split(d).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        (None, Some(_)) => {
            input.lines().map(|l| l.trim_start().to_owned()).filter(|l| !l.is_empty()).collect()
        }
        (None, None) => xargs_items(&input),
    };
    if items.is_empty() && (no_empty || replace.is_some()) {
        return Ok(0);
    }
    let batches: Vec<Vec<String>> = if let Some(r) = &replace {
        items.iter().map(|it| cmd.iter().map(|c| c.replace(r.as_str(), it)).collect()).collect()
    } else {
        let n = max_args.unwrap_or(5000).max(1);
        let mut b: Vec<Vec<String>> = items
            .chunks(n)
            .map(|chunk| cmd.iter().cloned().chain(chunk.iter().cloned()).collect())
            .collect();
        if b.is_empty() {
            b.push(cmd.clone());
        }
        b
    };
    let mut status = 0;
    for argv in batches {
        if trace {
            io.err(&format!("{}\n", argv.join(" "))).await;
        }
        let mut sub = sh.clone();
        sub.funcs.clear();
        let sub_io = Io { stdin: super::io::Input::closed(), ..io.clone() };
        let s = match run_argv(&mut sub, &sub_io, argv, Vec::new()).await {
            Ok(s) | Err(Unwind::Exit(s)) => s,
            Err(_) => 1,
        };
        match s {
            0 => {}
            127 => return Ok(127),
            126 => return Ok(126),
            255 => return Ok(124),
            _ => status = 123,
        }
    }
    Ok(status)
}

/// One `-exec`/`-execdir` action of a `find` command line.
#[derive(Debug, PartialEq, Eq)]
pub struct FindExec {
    pub command: Vec<String>,
    /// `{} +`: one run with every path.
    pub batch: bool,
    /// `-execdir`: run in the file's directory with `./name`.
    pub in_dir: bool,
}

/// Splits `find ARGS` into the arguments for the find tool and the actions
/// the shell must run, because a guest cannot spawn. Each exec action
/// becomes `-printf '\0WMARKER:K:%p\0'` (K its index), so that its paths
/// come in find's output stream in their place among what `-print` and
/// the like write. `None` when there is no exec action.
pub fn split_find_exec(args: &[String], marker: &str) -> Option<(Vec<String>, Vec<FindExec>)> {
    let mut tool_args = Vec::new();
    let mut actions = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if matches!(a, "-exec" | "-execdir" | "-ok" | "-okdir") {
            let start = i + 1;
            let mut end = start;
            while end < args.len()
                && args[end] != ";"
                && !(args[end] == "+" && end > start && args[end - 1] == "{}")
            {
                end += 1;
            }
            let batch = args.get(end).is_some_and(|t| t == "+");
            tool_args.push("-printf".to_owned());
            // `W` first: find reads `\0` and up to three octal digits as one escape.
            tool_args.push(format!("\\0W{marker}:{}:%p\\0", actions.len()));
            actions.push(FindExec {
                command: args[start..end.min(args.len())].to_vec(),
                batch,
                in_dir: a.ends_with("dir"),
            });
            i = end + 1;
            continue;
        }
        tool_args.push(args[i].clone());
        i += 1;
    }
    (!actions.is_empty()).then_some((tool_args, actions))
}

/// Where `needle` (which starts with a NUL) first occurs in `buf`, or
/// begins at its end (the rest of it may come in the next chunk).
fn find_marker(buf: &[u8], needle: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|&b| b == 0) {
        let at = from + i;
        let end = (at + needle.len()).min(buf.len());
        if buf[at..end] == needle[..end - at] {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Longest a marker's path may be before its bytes are taken as output.
const MAX_MARKED_PATH: usize = 1 << 20;

/// `find … -exec cmd {} \;`: runs the find tool and reads its output as it
/// comes: what it prints is passed on, and each path marked for an exec
/// action runs that command through the shell, in its place, as find would
/// have spawned it (find waits meanwhile: its pipe is full). `{} +`
/// actions run once at the end with every path, as GNU find runs a short
/// list; those paths are charged to the line's memory budget.
///
/// The marker holds a random nonce, so no file name can forge one. An exec
/// action's status does not decide the rest of the expression (find cannot
/// wait for it): the action is true.
pub async fn find_exec(
    sh: &mut Shell,
    io: &Io,
    argv: &[String],
    assigns: &[(String, String)],
) -> Option<Outcome> {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let (tool_args, actions) = split_find_exec(&argv[1..], &marker)?;
    let (sink, mut reader) = crate::exec::pipe();
    let mut find_argv = vec![argv[0].clone()];
    find_argv.extend(tool_args);
    let mut sub = sh.clone();
    let sub_io = Io { stdout: sink, ..io.clone() };
    let run = async move {
        let r = run_argv(&mut sub, &sub_io, find_argv, assigns.to_vec()).await;
        drop(sub_io);
        r
    };
    let needle = format!("\0W{marker}:").into_bytes();
    let mut batches: Vec<Vec<String>> = actions.iter().map(|_| Vec::new()).collect();
    let read = async {
        let mut lease = match sh.budget.lease(0) {
            Ok(l) => l,
            Err(m) => return Err(expand::out_of_memory(sh, io, m).await),
        };
        let mut held = 0;
        let mut buf: Vec<u8> = Vec::new();
        let mut done = false;
        while !done {
            match reader.next_chunk().await {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => done = true,
            }
            loop {
                // No marker, and none begun at the end: all of it is output.
                let Some(at) = find_marker(&buf, &needle) else {
                    io.out(&buf).await?;
                    buf.clear();
                    break;
                };
                io.out(&buf[..at]).await?;
                buf.drain(..at);
                let body = needle.len();
                let Some(len) = buf.get(body..).and_then(|r| r.iter().position(|&b| b == 0)) else {
                    if buf.len() < body + MAX_MARKED_PATH && !done {
                        break;
                    }
                    // Not a marker after all: a NUL of the output.
                    io.out(&buf[..1]).await?;
                    buf.drain(..1);
                    continue;
                };
                let entry = String::from_utf8_lossy(&buf[body..body + len]).into_owned();
                buf.drain(..body + len + 1);
                let Some((k, path)) = entry.split_once(':') else { continue };
                let Some(k) = k.parse::<usize>().ok().filter(|&k| k < actions.len()) else {
                    continue;
                };
                let action = &actions[k];
                if action.batch {
                    held += path.len() + std::mem::size_of::<String>();
                    if let Err(m) = lease.grow_to(held) {
                        return Err(expand::out_of_memory(sh, io, m).await);
                    }
                    batches[k].push(path.to_owned());
                    continue;
                }
                let (dir, name) = match path.rsplit_once('/') {
                    Some((d, n)) if action.in_dir => (
                        Some(if d.is_empty() { "/".to_owned() } else { d.to_owned() }),
                        format!("./{n}"),
                    ),
                    _ => (None, path.to_owned()),
                };
                let cmd: Vec<String> =
                    action.command.iter().map(|w| w.replace("{}", &name)).collect();
                if cmd.is_empty() {
                    continue;
                }
                let mut sub = sh.clone();
                if let Some(d) = dir {
                    sub.cwd = crate::fs::path::normalize_absolute(&sub.absolute(&d));
                }
                let _ = run_argv(&mut sub, io, cmd, Vec::new()).await;
                if sh.budget.halted() {
                    return Err(Unwind::Exit(137));
                }
            }
        }
        drop(reader);
        Ok(lease)
    };
    let (r, read) = futures::join!(run, read);
    let mut status = match r {
        Ok(s) => s,
        Err(u) => return Some(Err(u)),
    };
    let _lease = match read {
        Ok(lease) => lease,
        Err(u) => return Some(Err(u)),
    };
    for (action, paths) in actions.iter().zip(&batches) {
        if !action.batch || paths.is_empty() {
            continue;
        }
        let mut cmd = Vec::new();
        for w in &action.command {
            if w == "{}" {
                cmd.extend(paths.iter().cloned());
            } else {
                cmd.push(w.clone());
            }
        }
        let mut sub = sh.clone();
        let s = match run_argv(&mut sub, io, cmd, Vec::new()).await {
            Ok(s) | Err(Unwind::Exit(s)) => s,
            Err(_) => 1,
        };
        if s != 0 {
            status = 1;
        }
    }
    Some(Ok(status))
}

#[cfg(test)]
mod tests {
    #[test]
    fn find_exec_is_split_out() {
        let args: Vec<String> = [".", "-name", "*.rs", "-exec", "wc", "-l", "{}", ";"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (tool, actions) = split_find_exec(&args, "M").expect("has exec");
        assert_eq!(tool, vec![".", "-name", "*.rs", "-printf", "\\0WM:0:%p\\0"]);
        assert_eq!(
            actions,
            vec![FindExec {
                command: vec!["wc".into(), "-l".into(), "{}".into()],
                batch: false,
                in_dir: false
            }]
        );
        let args: Vec<String> =
            ["src", "-execdir", "grep", "x", "{}", "+"].iter().map(|s| s.to_string()).collect();
        let (_, actions) = split_find_exec(&args, "M").expect("has execdir");
        assert!(actions[0].batch && actions[0].in_dir);
        assert!(split_find_exec(&["-name".to_string(), "x".to_string()], "M").is_none());
    }

    use super::*;

    #[test]
    fn read_splitting() {
        assert_eq!(split_ifs("  a b  c  ", " \t\n", 2), vec!["a", "b  c"]);
        assert_eq!(split_ifs("a:b:c", ":", 5), vec!["a", "b", "c"]);
        assert_eq!(split_ifs("x", " \t\n", 3), vec!["x"]);
    }

    #[test]
    fn xargs_quoting() {
        assert_eq!(xargs_items("a 'b c'\n\"d\" e\\ f"), vec!["a", "b c", "d", "e f"]);
    }
}
