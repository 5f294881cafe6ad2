//! `ls` in its long formats (`-l`, `-n`, `-g`, `-o`), run by the host
//! because WASI hides permission bits, link counts and block counts: the
//! wasm `ls` showed invented modes (`-r-xr-xr-x`), owners and totals. Other
//! `ls` invocations stay with the bundled tool. Every path goes through the
//! workspace capability; owners are the sandbox identity (`sandbox`, 1000),
//! times UTC, names sorted bytewise (`LANG=C.UTF-8`).

use super::context::{Context, Status};
use super::fileinfo::{human_size, human_time, lookup, mode_string};
use super::identity::{UID, USER};
use cap_std::fs::{Metadata, MetadataExt};
use std::path::{Path, PathBuf};

/// Entries one listing shows before it stops (a directory of millions).
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
struct Flags {
    all: bool,
    almost_all: bool,
    human: bool,
    by_time: bool,
    by_size: bool,
    reverse: bool,
    directory: bool,
    numeric: bool,
    no_owner: bool,
    no_group: bool,
    classify: bool,
}

/// Whether `args` ask for a long listing this module serves: `-l` (or `-n`,
/// `-g`, `-o`) with only the flags below. Anything else is the bundled
/// tool's.
pub fn is_long(args: &[String]) -> bool {
    parse(args).is_some_and(|(long, _, _)| long)
}

fn parse(args: &[String]) -> Option<(bool, Flags, Vec<String>)> {
    let mut f = Flags::default();
    let mut long = false;
    let mut operands = Vec::new();
    let mut only_operands = false;
    for a in args {
        if only_operands || !a.starts_with('-') || a == "-" {
            operands.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--" => only_operands = true,
            "--all" => f.all = true,
            "--almost-all" => f.almost_all = true,
            "--human-readable" => f.human = true,
            "--reverse" => f.reverse = true,
            "--directory" => f.directory = true,
            "--numeric-uid-gid" => (long, f.numeric) = (true, true),
            "--classify" => f.classify = true,
            "--color" | "--color=never" | "--color=auto" | "--color=none" => {}
            s if s.starts_with("--") => return None,
            s => {
                for c in s[1..].chars() {
                    match c {
                        'l' => long = true,
                        'a' => f.all = true,
                        'A' => f.almost_all = true,
                        'h' => f.human = true,
                        't' => f.by_time = true,
                        'S' => f.by_size = true,
                        'r' => f.reverse = true,
                        'd' => f.directory = true,
                        'n' => (long, f.numeric) = (true, true),
                        'g' => (long, f.no_owner) = (true, true),
                        'o' => (long, f.no_group) = (true, true),
                        'F' => f.classify = true,
                        '1' => {}
                        _ => return None,
                    }
                }
            }
        }
    }
    Some((long, f, operands))
}

struct Row {
    name: String,
    meta: Metadata,
    link: Option<String>,
}

pub async fn ls(cx: &Context<'_>, args: &[String]) -> Status {
    let Some((_, f, mut operands)) = parse(args) else { return Ok(2) };
    if operands.is_empty() {
        operands.push(".".into());
    }
    let mut status = 0;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for op in &operands {
        // Only the workspace: the shell gives `ls` in the private /tmp to
        // the bundled tool.
        let in_workspace = |(dir, rel, meta): (&cap_std::fs::Dir, _, _)| {
            if std::ptr::eq(dir, cx.workspace.dir()) {
                Ok((rel, meta))
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        };
        match lookup(cx, op, true).or_else(|_| lookup(cx, op, false)).and_then(in_workspace) {
            Ok((rel, meta)) if meta.is_dir() && !f.directory => dirs.push((op.clone(), rel)),
            Ok((rel, _)) => {
                if let Some(row) = row(cx, &rel, op.clone()) {
                    files.push(row);
                }
            }
            Err(e) => {
                let msg = crate::fs::strerror(&e);
                cx.err(&format!("ls: cannot access '{op}': {msg}\n")).await;
                status = 2;
            }
        }
    }
    let mut out = String::new();
    if !files.is_empty() {
        sort(&mut files, &f);
        // GNU ls sizes the files' columns with the directory operands in
        // them too (it reads all operands before it sets them aside).
        let dir_rows: Vec<Row> =
            dirs.iter().filter_map(|(shown, rel)| row(cx, rel, shown.clone())).collect();
        out += &render(&files, &f, None, &dir_rows);
    }
    sort_names(&mut dirs, &f);
    let titled = operands.len() > 1;
    for (i, (shown, rel)) in dirs.iter().enumerate() {
        if titled {
            if i > 0 || !files.is_empty() {
                out.push('\n');
            }
            out += &format!("{shown}:\n");
        }
        let rows = match entries(cx, rel, &f).await {
            Ok(rows) => rows,
            Err(e) => {
                cx.err(&format!("ls: cannot open directory '{shown}': {e}\n")).await;
                status = 2;
                continue;
            }
        };
        let blocks: u64 = rows.iter().map(|r| r.meta.blocks() / 2).sum();
        out += &render(&rows, &f, Some(blocks), &[]);
        if out.len() > 1 << 20 {
            cx.out(out.as_bytes()).await?;
            out.clear();
        }
    }
    cx.out(out.as_bytes()).await?;
    Ok(status)
}

/// What a listing stopped for its command's CPU budget says.
const CPU_LIMIT: &str = "CPU time limit exceeded (max-cpu)";

fn row(cx: &Context<'_>, rel: &Path, name: String) -> Option<Row> {
    let dir = cx.workspace.dir();
    let probe = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let meta = dir.symlink_metadata(probe).ok()?;
    let link = meta
        .file_type()
        .is_symlink()
        .then(|| dir.read_link(probe).ok().map(|t| t.to_string_lossy().into_owned()))
        .flatten();
    Some(Row { name, meta, link })
}

async fn entries(cx: &Context<'_>, rel: &Path, f: &Flags) -> Result<Vec<Row>, String> {
    let dir = cx.workspace.dir();
    let probe = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel.to_path_buf() };
    let list = dir.read_dir(&probe).map_err(|e| crate::fs::strerror(&e))?;
    let mut rows = Vec::new();
    if f.all {
        for dot in [".", ".."] {
            let meta =
                if dot == "." { dir.metadata(&probe) } else { dir.metadata(probe.join("..")) };
            // `..` of the root is the root as far as the sandbox goes.
            let meta =
                meta.or_else(|_| dir.metadata(&probe)).map_err(|e| crate::fs::strerror(&e))?;
            rows.push(Row { name: dot.into(), meta, link: None });
        }
    }
    for (i, e) in list.flatten().enumerate() {
        if rows.len() >= MAX_ENTRIES {
            break;
        }
        if !cx.checkpoint(i).await {
            return Err(CPU_LIMIT.into());
        }
        let Ok(name) = e.file_name().into_string() else { continue };
        if name.starts_with('.') && !(f.all || f.almost_all) {
            continue;
        }
        if let Some(r) = row(cx, &probe.join(&name), name) {
            rows.push(r);
        }
    }
    sort(&mut rows, f);
    Ok(rows)
}

fn mtime(m: &Metadata) -> (i64, i64) {
    (m.mtime(), m.mtime_nsec())
}

fn sort(rows: &mut [Row], f: &Flags) {
    rows.sort_by(|a, b| {
        let by_name = a.name.cmp(&b.name);
        let o = if f.by_time {
            mtime(&b.meta).cmp(&mtime(&a.meta)).then(by_name)
        } else if f.by_size {
            b.meta.len().cmp(&a.meta.len()).then(by_name)
        } else {
            by_name
        };
        if f.reverse { o.reverse() } else { o }
    });
}

fn sort_names(dirs: &mut [(String, PathBuf)], f: &Flags) {
    dirs.sort_by(|a, b| if f.reverse { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) });
}

/// `Dec  6 14:02` within six months of now, `Dec  6  2025` otherwise (UTC).
fn date(m: &Metadata, now: i64) -> String {
    let (secs, _) = mtime(m);
    let t = human_time(secs, 0); // "YYYY-MM-DD HH:MM:SS.000000000 +0000"
    let month: usize = t[5..7].parse().unwrap_or(1);
    let day: u32 = t[8..10].parse().unwrap_or(1);
    let names =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let name = names[month.clamp(1, 12) - 1];
    let half_year = 365 * 86_400 / 2;
    if secs > now - half_year && secs <= now + 3600 {
        format!("{name} {day:>2} {}", &t[11..16])
    } else {
        format!("{name} {day:>2}  {}", &t[0..4])
    }
}

/// The long lines of `rows` (after `total`, for a directory); `also` only
/// widens the columns.
fn render(rows: &[Row], f: &Flags, total: Option<u64>, also: &[Row]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let size = |r: &Row| {
        if f.human { human_size(r.meta.len()) } else { r.meta.len().to_string() }
    };
    let owner = if f.numeric { UID.to_string() } else { USER.to_owned() };
    let links: Vec<String> = rows.iter().map(|r| r.meta.nlink().to_string()).collect();
    let sizes: Vec<String> = rows.iter().map(size).collect();
    let wl = links
        .iter()
        .map(String::len)
        .chain(also.iter().map(|r| r.meta.nlink().to_string().len()))
        .max()
        .unwrap_or(0);
    let ws =
        sizes.iter().map(String::len).chain(also.iter().map(|r| size(r).len())).max().unwrap_or(0);
    let mut out = String::new();
    if let Some(blocks) = total {
        let t = if f.human { human_size(blocks * 1024) } else { blocks.to_string() };
        out += &format!("total {t}\n");
    }
    for (i, r) in rows.iter().enumerate() {
        let mut line = format!("{} {:>wl$} ", mode_string(&r.meta), links[i]);
        if !f.no_owner {
            line += &format!("{owner} ");
        }
        if !f.no_group {
            line += &format!("{owner} ");
        }
        line += &format!("{:>ws$} {} {}", sizes[i], date(&r.meta, now), r.name);
        if let Some(t) = &r.link {
            line += &format!(" -> {t}");
        } else if f.classify {
            if r.meta.is_dir() {
                line.push('/');
            } else if r.meta.mode() & 0o111 != 0 {
                line.push('*');
            }
        }
        line.push('\n');
        out += &line;
    }
    out
}
