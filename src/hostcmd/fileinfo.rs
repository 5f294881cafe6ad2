//! `stat`, `du` and `chmod`, run by the host because WASI hides what they
//! need (inode metadata, block counts, permission bits). Every path goes
//! through the workspace capability, or the private `/tmp`'s for a path
//! there; any other path is reported as missing, the way the `fs/*` reads
//! report it.
//!
//! `chmod` changes the permission bits (`rwx` for user, group and others)
//! of files in the workspace, outside read-only areas such as `.git`, so
//! `chmod +x script.sh && ./script.sh` works as on Linux. Only the nine
//! permission bits change: setuid, setgid and sticky are ignored, the
//! owner always keeps read and write (and search on directories), so the
//! server can still read, quota and remove what a tenant locked, and group
//! and others never get write (the files are the server's on the host). Times are
//! shown in UTC; owners as numbers (no user database is read).

use super::context::{Context, Status};
use cap_std::fs::{Dir, Metadata, MetadataExt};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Where a path a command names lives: the capability (the workspace's,
/// or the private `/tmp`'s) and the path below it.
pub(super) fn locate<'a>(cx: &Context<'a>, arg: &str) -> Option<(&'a Dir, PathBuf)> {
    cx.workspace.locate(&crate::fs::path::normalize_absolute(&cx.absolute(arg)))
}

pub(super) fn lookup<'a>(
    cx: &Context<'a>,
    arg: &str,
    follow: bool,
) -> std::io::Result<(&'a Dir, PathBuf, Metadata)> {
    let (dir, rel) =
        locate(cx, arg).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    let probe = if rel.as_os_str().is_empty() { Path::new(".") } else { rel.as_path() };
    let meta = if follow { dir.metadata(probe)? } else { dir.symlink_metadata(probe)? };
    Ok((dir, rel, meta))
}

fn file_type(m: &Metadata) -> &'static str {
    let ft = m.file_type();
    if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() && m.len() == 0 {
        "regular empty file"
    } else if ft.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// `-rw-r--r--` from a mode.
pub(super) fn mode_string(m: &Metadata) -> String {
    let mode = m.mode();
    let kind = if m.file_type().is_symlink() {
        'l'
    } else if m.is_dir() {
        'd'
    } else {
        '-'
    };
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let special = match shift {
            6 => mode & 0o4000 != 0,
            3 => mode & 0o2000 != 0,
            _ => mode & 0o1000 != 0,
        };
        let (set, unset) = if shift == 0 { ('t', 'T') } else { ('s', 'S') };
        s.push(match (bits & 1 != 0, special) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `2024-05-01 12:00:00.123456789 +0000` (UTC).
pub(super) fn human_time(secs: i64, nanos: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{nanos:09} +0000",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A name as `stat -c %N` quotes it (GNU's default quoting style,
/// `shell-escape-always`): in single quotes, or in double quotes when it
/// holds a single quote and nothing a double quote would expand.
fn shell_quote(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains(['"', '$', '`', '\\', '!']) {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One `%x` directive of `stat -c`.
fn directive(c: char, name: &str, link: Option<&str>, m: &Metadata) -> Option<String> {
    Some(match c {
        'n' => name.to_owned(),
        'N' => match link {
            Some(t) => format!("{} -> {}", shell_quote(name), shell_quote(t)),
            None => shell_quote(name),
        },
        's' => m.len().to_string(),
        'F' => file_type(m).to_owned(),
        'a' => format!("{:o}", m.mode() & 0o7777),
        'A' => mode_string(m),
        'f' => format!("{:x}", m.mode()),
        'b' => m.blocks().to_string(),
        'B' => "512".to_owned(),
        'o' => m.blksize().to_string(),
        'i' => m.ino().to_string(),
        'h' => m.nlink().to_string(),
        'u' => m.uid().to_string(),
        'g' => m.gid().to_string(),
        'U' | 'G' => "UNKNOWN".to_owned(),
        'd' => m.dev().to_string(),
        'D' => format!("{:x}", m.dev()),
        'x' => human_time(m.atime(), m.atime_nsec()),
        'X' => m.atime().to_string(),
        'y' => human_time(m.mtime(), m.mtime_nsec()),
        'Y' => m.mtime().to_string(),
        'z' => human_time(m.ctime(), m.ctime_nsec()),
        'Z' => m.ctime().to_string(),
        'w' => "-".to_owned(),
        'W' => "0".to_owned(),
        '%' => "%".to_owned(),
        _ => return None,
    })
}

fn format_stat(
    format: &str,
    name: &str,
    link: Option<&str>,
    m: &Metadata,
    escapes: bool,
) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some(d) => match directive(d, name, link, m) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('?');
                    }
                },
                None => out.push('%'),
            },
            '\\' if escapes => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            },
            _ => out.push(c),
        }
    }
    out
}

fn default_stat(name: &str, link: Option<&str>, m: &Metadata) -> String {
    let shown = match link {
        Some(t) => format!("{name} -> {t}"),
        None => name.to_owned(),
    };
    let mut s = String::new();
    let _ = writeln!(s, "  File: {shown}");
    let _ = writeln!(
        s,
        "  Size: {:<15}\tBlocks: {:<10} IO Block: {:<6} {}",
        m.len(),
        m.blocks(),
        m.blksize(),
        file_type(m)
    );
    let dev = m.dev();
    let _ = writeln!(
        s,
        "Device: {},{}\tInode: {:<11} Links: {}",
        (dev >> 8) & 0xfff | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
        m.ino(),
        m.nlink()
    );
    let _ = writeln!(
        s,
        "Access: ({:04o}/{})  Uid: ({:>5}/ UNKNOWN)   Gid: ({:>5}/ UNKNOWN)",
        m.mode() & 0o7777,
        mode_string(m),
        m.uid(),
        m.gid()
    );
    let _ = writeln!(s, "Access: {}", human_time(m.atime(), m.atime_nsec()));
    let _ = writeln!(s, "Modify: {}", human_time(m.mtime(), m.mtime_nsec()));
    let _ = writeln!(s, "Change: {}", human_time(m.ctime(), m.ctime_nsec()));
    s.push_str(" Birth: -\n");
    s
}

pub async fn stat(cx: &Context<'_>, args: &[String]) -> Status {
    let mut follow = false;
    let mut format: Option<(String, bool, bool)> = None; // (format, newline, escapes)
    let mut files = Vec::new();
    let mut i = 0;
    let mut opts_done = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if opts_done || !a.starts_with('-') || a == "-" {
            files.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--" => opts_done = true,
            "-L" | "--dereference" => follow = true,
            "-c" | "--format" | "--printf" => {
                let Some(f) = args.get(i) else {
                    cx.err(&format!(
                        "stat: option requires an argument -- '{}'\n",
                        a.trim_start_matches('-')
                    ))
                    .await;
                    return Ok(1);
                };
                i += 1;
                format = Some((f.clone(), a != "--printf", a == "--printf"));
            }
            "-t" | "--terse" => {
                format = Some(("%n %s %b %f %u %g %D %i %h 0 0 %X %Y %Z %W %o".into(), true, false))
            }
            _ if a.starts_with("--format=") => {
                format = Some((a["--format=".len()..].to_owned(), true, false))
            }
            _ if a.starts_with("--printf=") => {
                format = Some((a["--printf=".len()..].to_owned(), false, true))
            }
            _ if a.starts_with("-c") => format = Some((a[2..].to_owned(), true, false)),
            _ => {
                cx.err(&format!(
                    "stat: unrecognized option '{a}'\nTry 'stat --help' for more information.\n"
                ))
                .await;
                return Ok(1);
            }
        }
    }
    if files.is_empty() {
        cx.err("stat: missing operand\nTry 'stat --help' for more information.\n").await;
        return Ok(1);
    }
    let mut status = 0;
    for f in &files {
        let (dir, rel, meta) = match lookup(cx, f, follow) {
            Ok(x) => x,
            Err(e) => {
                cx.err(&format!("stat: cannot stat '{f}': {}\n", crate::fs::strerror(&e))).await;
                status = 1;
                continue;
            }
        };
        let link = if meta.file_type().is_symlink() {
            dir.read_link_contents(&rel).ok().map(|t| t.to_string_lossy().into_owned())
        } else {
            None
        };
        let text = match &format {
            Some((fmt, newline, escapes)) => {
                let mut t = format_stat(fmt, f, link.as_deref(), &meta, *escapes);
                if *newline {
                    t.push('\n');
                }
                t
            }
            None => default_stat(f, link.as_deref(), &meta),
        };
        cx.out(text.as_bytes()).await?;
    }
    Ok(status)
}

/// `du` sizes: 1 KiB blocks by default, bytes with `-b`.
struct DuOptions {
    all: bool,
    summarize: bool,
    human: bool,
    bytes: bool,
    total: bool,
    max_depth: Option<usize>,
}

impl DuOptions {
    fn show(&self, blocks: u64, apparent: u64) -> String {
        let bytes = if self.bytes { apparent } else { blocks * 512 };
        if self.human {
            human_size(bytes)
        } else if self.bytes {
            bytes.to_string()
        } else {
            bytes.div_ceil(1024).to_string()
        }
    }
}

/// GNU's `-h`: powers of 1024, one decimal below 10, rounded up.
pub(super) fn human_size(bytes: u64) -> String {
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < 5 {
        v /= 1024.0;
        unit += 1;
    }
    let u = ['K', 'M', 'G', 'T', 'P', 'E'][unit];
    let tenth = (v * 10.0).ceil() / 10.0;
    if tenth < 10.0 { format!("{tenth:.1}{u}") } else { format!("{}{u}", v.ceil() as u64) }
}

/// Walks `rel` (shown as `shown`), appending lines, and returns its
/// (blocks, apparent bytes). Symlinks are not followed.
fn du_walk(
    dir: &Dir,
    rel: &Path,
    shown: &str,
    depth: usize,
    o: &DuOptions,
    out: &mut String,
    errors: &mut Vec<String>,
) -> (u64, u64) {
    let probe = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let Ok(meta) = dir.symlink_metadata(probe) else {
        errors.push(format!("du: cannot access '{shown}': No such file or directory\n"));
        return (0, 0);
    };
    let (mut blocks, mut apparent) = (meta.blocks(), meta.len());
    let print_here = |out: &mut String, b: u64, a: u64| {
        if !o.summarize && o.max_depth.is_none_or(|m| depth <= m) || depth == 0 {
            let _ = writeln!(out, "{}\t{shown}", o.show(b, a));
        }
    };
    if !meta.is_dir() {
        if depth == 0 || o.all {
            print_here(out, blocks, apparent);
        }
        return (blocks, apparent);
    }
    match dir.read_dir(probe) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                let child_shown = if shown.ends_with('/') {
                    format!("{shown}{name}")
                } else {
                    format!("{shown}/{name}")
                };
                let (b, a) =
                    du_walk(dir, &rel.join(&name), &child_shown, depth + 1, o, out, errors);
                blocks += b;
                apparent += a;
            }
        }
        Err(e) => errors
            .push(format!("du: cannot read directory '{shown}': {}\n", crate::fs::strerror(&e))),
    }
    print_here(out, blocks, apparent);
    (blocks, apparent)
}

pub async fn du(cx: &Context<'_>, args: &[String]) -> Status {
    let mut o = DuOptions {
        all: false,
        summarize: false,
        human: false,
        bytes: false,
        total: false,
        max_depth: None,
    };
    let mut paths = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(v) = a.strip_prefix("--max-depth=") {
            o.max_depth = v.parse().ok();
            continue;
        }
        match a.as_str() {
            "--all" => o.all = true,
            "--summarize" => o.summarize = true,
            "--human-readable" => o.human = true,
            "--bytes" | "--apparent-size" => o.bytes = true,
            "--total" => o.total = true,
            "-d" => {
                o.max_depth = args.get(i).and_then(|v| v.parse().ok());
                i += 1;
            }
            _ if a.starts_with('-') && a.len() > 1 && !a.starts_with("--") => {
                for (k, c) in a[1..].char_indices() {
                    match c {
                        'a' => o.all = true,
                        's' => o.summarize = true,
                        'h' => o.human = true,
                        'b' => o.bytes = true,
                        'c' => o.total = true,
                        'k' | 'x' | 'L' | 'P' => {}
                        'd' => {
                            let rest = &a[k + 2..];
                            o.max_depth = if rest.is_empty() {
                                i += 1;
                                args.get(i - 1).and_then(|v| v.parse().ok())
                            } else {
                                rest.parse().ok()
                            };
                            break;
                        }
                        _ => {
                            cx.err(&format!(
                                "du: invalid option -- '{c}'\n\
                                 Try 'du --help' for more information.\n"
                            ))
                            .await;
                            return Ok(1);
                        }
                    }
                }
            }
            _ if a.starts_with("--") => {
                cx.err(&format!(
                    "du: unrecognized option '{a}'\nTry 'du --help' for more information.\n"
                ))
                .await;
                return Ok(1);
            }
            _ => paths.push(a.clone()),
        }
    }
    if o.all && o.summarize {
        cx.err(
            "du: cannot both summarize and show all entries\n\
             Try 'du --help' for more information.\n",
        )
        .await;
        return Ok(1);
    }
    if paths.is_empty() {
        paths.push(".".into());
    }
    let (mut total_b, mut total_a) = (0, 0);
    let mut status = 0;
    for p in &paths {
        let mut out = String::new();
        let mut errors = Vec::new();
        match locate(cx, p) {
            Some((dir, rel)) => {
                let (b, a) = du_walk(dir, &rel, p, 0, &o, &mut out, &mut errors);
                total_b += b;
                total_a += a;
            }
            None => errors.push(format!("du: cannot access '{p}': No such file or directory\n")),
        }
        cx.out(out.as_bytes()).await?;
        for e in errors {
            status = 1;
            cx.err(&e).await;
        }
    }
    if o.total {
        cx.out(format!("{}\ttotal\n", o.show(total_b, total_a)).as_bytes()).await?;
    }
    Ok(status)
}

/// What the owner always keeps: read and write, and search on directories.
const KEPT: u32 = 0o600;

/// What is never given: write for group and others (the files are the
/// server's on the host; a tenant may not open them to other local users).
const NEVER: u32 = 0o022;

/// Files `chmod -R` changes before it gives up.
const MAX_RECURSIVE: usize = 100_000;

/// One symbolic clause: who (`ugoa` bits), the operator, the permissions.
struct Clause {
    who: u32,
    op: char,
    perm: String,
}

/// A parsed mode: an octal number or symbolic clauses.
enum Mode {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// Parses `mode`; `None` when it is not a mode.
fn parse_mode(mode: &str) -> Option<Mode> {
    if !mode.is_empty() && mode.len() <= 4 && mode.chars().all(|c| ('0'..='7').contains(&c)) {
        return u32::from_str_radix(mode, 8).ok().map(Mode::Octal);
    }
    let mut clauses = Vec::new();
    for clause in mode.split(',') {
        let who_part: String = clause.chars().take_while(|c| "ugoa".contains(*c)).collect();
        let mut rest = &clause[who_part.len()..];
        if rest.is_empty() {
            return None;
        }
        let who = if who_part.is_empty() {
            0o777
        } else {
            who_part.chars().fold(0, |w, c| {
                w | match c {
                    'u' => 0o700,
                    'g' => 0o070,
                    'o' => 0o007,
                    _ => 0o777,
                }
            })
        };
        // Each operator is followed by permission letters, or one of u/g/o.
        while let Some(op) = rest.chars().next().filter(|c| "+-=".contains(*c)) {
            rest = &rest[1..];
            let perm: String = rest.chars().take_while(|c| !"+-=".contains(*c)).collect();
            rest = &rest[perm.len()..];
            if !(perm.chars().all(|c| "rwxXst".contains(c))
                || matches!(perm.as_str(), "u" | "g" | "o"))
            {
                return None;
            }
            clauses.push(Clause { who, op, perm });
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(Mode::Symbolic(clauses))
}

/// The permission bits `mode` gives a file now at `old` (a directory if
/// `is_dir`).
fn apply_mode(mode: &Mode, old: u32, is_dir: bool) -> u32 {
    let old = old & 0o777;
    let new = match mode {
        Mode::Octal(m) => m & 0o777,
        Mode::Symbolic(clauses) => clauses.iter().fold(old, |cur, c| {
            let bits = match c.perm.as_str() {
                // Copy another class's bits to every class of the clause.
                "u" => ((cur >> 6) & 7) * 0o111,
                "g" => ((cur >> 3) & 7) * 0o111,
                "o" => (cur & 7) * 0o111,
                p => p.chars().fold(0, |b, ch| {
                    b | match ch {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' if is_dir || cur & 0o111 != 0 => 0o111,
                        _ => 0,
                    }
                }),
            } & c.who;
            match c.op {
                '+' => cur | bits,
                '-' => cur & !bits,
                _ => (cur & !c.who) | bits,
            }
        }),
    };
    (new | KEPT | if is_dir { 0o100 } else { 0 }) & !NEVER
}

pub async fn chmod(cx: &Context<'_>, args: &[String]) -> Status {
    let mut quiet = false;
    let mut recursive = false;
    let mut operands: Vec<&String> = Vec::new();
    for a in args {
        match a.as_str() {
            "-R" | "--recursive" => recursive = true,
            "-v" | "--verbose" | "-c" | "--changes" => {}
            "-f" | "--silent" | "--quiet" => quiet = true,
            // `-x`, `-w` are modes, not options.
            _ if a.starts_with("--") => {
                cx.err(&format!(
                    "chmod: unrecognized option '{a}'\nTry 'chmod --help' for more information.\n"
                ))
                .await;
                return Ok(1);
            }
            _ => operands.push(a),
        }
    }
    let Some((mode_arg, files)) = operands.split_first() else {
        cx.err("chmod: missing operand\nTry 'chmod --help' for more information.\n").await;
        return Ok(1);
    };
    let Some(mode) = parse_mode(mode_arg) else {
        cx.err(&format!(
            "chmod: invalid mode: '{mode_arg}'\nTry 'chmod --help' for more information.\n"
        ))
        .await;
        return Ok(1);
    };
    if files.is_empty() {
        cx.err(&format!(
            "chmod: missing operand after '{mode_arg}'\nTry 'chmod --help' for more information.\n"
        ))
        .await;
        return Ok(1);
    }
    let mut status = 0;
    for f in files {
        let msg = match lookup(cx, f, true) {
            Err(e) => Some(format!("chmod: cannot access '{f}': {}\n", crate::fs::strerror(&e))),
            // Read-only areas are the workspace's (the private /tmp has none).
            Ok((dir, rel, _))
                if std::ptr::eq(dir, cx.workspace.dir())
                    && cx.workspace.check_writable(&rel).is_err() =>
            {
                Some(format!("chmod: changing permissions of '{f}': Operation not permitted\n"))
            }
            Ok((dir, rel, meta)) => change(cx, dir, &rel, &meta, &mode, recursive)
                .await
                .err()
                .map(|e| format!("chmod: changing permissions of '{f}': {e}\n")),
        };
        if let Some(m) = msg {
            status = 1;
            if !quiet {
                cx.err(&m).await;
            }
        }
        tokio::task::yield_now().await;
    }
    Ok(status)
}

/// Sets `rel`'s bits (and, with `-R`, those of everything below it, not
/// following symlinks, at most [`MAX_RECURSIVE`] entries).
async fn change(
    cx: &Context<'_>,
    dir: &Dir,
    rel: &Path,
    meta: &Metadata,
    mode: &Mode,
    recursive: bool,
) -> Result<(), String> {
    use cap_std::fs::PermissionsExt;
    let set = |rel: &Path, meta: &Metadata| -> Result<(), String> {
        let bits = apply_mode(mode, meta.mode(), meta.is_dir());
        let probe = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        dir.set_permissions(probe, cap_std::fs::Permissions::from_mode(bits))
            .map_err(|e| crate::fs::strerror(&e))
    };
    set(rel, meta)?;
    if !(recursive && meta.is_dir()) {
        return Ok(());
    }
    let mut seen = 0usize;
    let mut stack = vec![rel.to_path_buf()];
    while let Some(d) = stack.pop() {
        let probe = if d.as_os_str().is_empty() { PathBuf::from(".") } else { d.clone() };
        let entries = dir.read_dir(&probe).map_err(|e| crate::fs::strerror(&e))?;
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_RECURSIVE {
                return Err(format!("more than {MAX_RECURSIVE} files; stopped"));
            }
            if !cx.checkpoint(seen).await {
                return Err("CPU time limit exceeded (max-cpu)".into());
            }
            let child = d.join(entry.file_name());
            let Ok(m) = dir.symlink_metadata(&child) else { continue };
            if m.file_type().is_symlink() || cx.workspace.check_writable(&child).is_err() {
                continue;
            }
            set(&child, &m)?;
            if m.is_dir() {
                stack.push(child);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_and_sizes() {
        assert_eq!(human_time(0, 0), "1970-01-01 00:00:00.000000000 +0000");
        assert_eq!(human_time(1_709_251_199, 5), "2024-02-29 23:59:59.000000005 +0000");
        assert_eq!(human_size(4096), "4.0K");
        assert_eq!(human_size(12 * 1024), "12K");
        assert_eq!(human_size(1536 * 1024), "1.5M");
        assert_eq!(human_size(100), "100");
    }

    #[test]
    fn modes() {
        for ok in ["755", "0644", "+x", "u+x", "a-w", "go=rx", "u+x,g-w", "o=u", "u+x-w"] {
            assert!(parse_mode(ok).is_some(), "{ok}");
        }
        for bad in ["", "999", "x", "u+q", "12345", "u+7", "u", "+x,"] {
            assert!(parse_mode(bad).is_none(), "{bad}");
        }
        let on = |m: &str, old: u32, dir: bool| apply_mode(&parse_mode(m).expect(m), old, dir);
        assert_eq!(on("+x", 0o644, false), 0o755);
        assert_eq!(on("u+x", 0o644, false), 0o744);
        assert_eq!(on("go-r", 0o644, false), 0o600);
        assert_eq!(on("a=r", 0o755, false), 0o644, "the owner keeps write");
        assert_eq!(on("000", 0o755, true), 0o700, "and search on a directory");
        assert_eq!(on("4755", 0o644, false), 0o755, "no setuid");
        assert_eq!(on("g=u", 0o751, false), 0o751, "never group write");
        assert_eq!(on("777", 0o644, false), 0o755);
        assert_eq!(on("a+X", 0o644, false), 0o644, "X: only if some x is set");
        assert_eq!(on("a+X", 0o744, false), 0o755);
        assert_eq!(on("o+X", 0o700, true), 0o701);
    }
}
