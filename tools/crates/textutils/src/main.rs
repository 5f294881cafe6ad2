//! `patch`, `column` and `file` for the sandbox's toolset, picked by
//! `argv[0]`.
//! `patch` is a GNU-style command line over the `diffy` crate, which parses
//! unified diffs and applies them (finding each hunk's place as GNU patch
//! does, without fuzz); `column` lays out tables (`-t`) and lists as
//! util-linux does; `file` names common types in libmagic's words (binary
//! formats recognised by the `infer` crate's magic numbers, text and
//! scripts by their contents). Built for `wasm32-wasip1` by
//! `tools/build.sh`; see `tools/README.md`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let name =
        args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_owned()).unwrap_or_default();
    let rest = args.get(1..).unwrap_or_default();
    let status = match name.as_str() {
        "patch" => patch(rest),
        "column" => column(rest),
        "file" => file(rest),
        other => {
            eprintln!("{other}: not a command of textutils.wasm (patch, column, file)");
            2
        }
    };
    ExitCode::from(status)
}

/// The C library's wording of an I/O error, without Rust's `(os error N)`.
fn why(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

// -------------------------------------------------------------- patch ----

#[derive(Default)]
struct PatchOpts {
    strip: Option<usize>,
    reverse: bool,
    dry_run: bool,
    input: Option<String>,
    silent: bool,
    forward: bool,
    orig: Option<String>,
}

fn parse_patch(args: &[String]) -> Result<PatchOpts, String> {
    let mut o = PatchOpts::default();
    let mut positional = vec![];
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        let mut value = |flag: &str| {
            args.get(i)
                .cloned()
                .inspect(|_| i += 1)
                .ok_or(format!("option '{flag}' requires an argument"))
        };
        let strip =
            |v: &str| v.parse::<usize>().map_err(|_| format!("strip count {v} is not a number"));
        match a {
            "-R" | "--reverse" => o.reverse = true,
            "--dry-run" => o.dry_run = true,
            "-s" | "--silent" | "--quiet" => o.silent = true,
            "-N" | "--forward" => o.forward = true,
            "-f"
            | "--force"
            | "-t"
            | "--batch"
            | "-u"
            | "--unified"
            | "-E"
            | "--remove-empty-files"
            | "--no-backup-if-mismatch"
            | "-l"
            | "--ignore-whitespace" => {}
            "-p" => o.strip = Some(strip(&value("-p")?)?),
            "-i" => o.input = Some(value("-i")?),
            _ if a.starts_with("--strip=") => o.strip = Some(strip(&a[8..])?),
            _ if a.starts_with("--input=") => o.input = Some(a[8..].to_owned()),
            _ if a.starts_with("-p") => o.strip = Some(strip(&a[2..])?),
            _ if a.starts_with("-i") => o.input = Some(a[2..].to_owned()),
            _ if a.starts_with('-') && a.len() > 1 => {
                return Err(format!("unrecognized option '{a}'"));
            }
            _ => positional.push(a.to_owned()),
        }
    }
    let mut positional = positional.into_iter();
    o.orig = positional.next();
    if let Some(p) = positional.next() {
        o.input = Some(p);
    }
    Ok(o)
}

/// One file's part of a patch: its header names and its text.
struct FilePatch {
    old: String,
    new: String,
    text: String,
}

/// The name in a `---`/`+++` line, without the timestamp after a tab.
fn header_name(line: &str) -> String {
    let name = &line[4..];
    let name = name.split('\t').next().unwrap_or(name);
    name.trim_end().trim_matches('"').to_owned()
}

/// Splits a unified diff into its files, counting each hunk's lines (so a
/// removed line that starts with `-- ` is not taken for a header).
fn split_patch(text: &str) -> Vec<FilePatch> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = vec![];
    let mut i = 0;
    while i + 1 < lines.len() {
        if !(lines[i].starts_with("--- ") && lines[i + 1].starts_with("+++ ")) {
            i += 1;
            continue;
        }
        let (old, new) = (header_name(lines[i].trim_end()), header_name(lines[i + 1].trim_end()));
        let start = i;
        i += 2;
        while i < lines.len() && lines[i].starts_with("@@") {
            let (mut old_left, mut new_left) = hunk_counts(lines[i]).unwrap_or((0, 0));
            i += 1;
            while i < lines.len() && (old_left > 0 || new_left > 0 || lines[i].starts_with('\\')) {
                match lines[i].as_bytes().first() {
                    Some(b' ') | Some(b'\n') | Some(b'\r') => {
                        old_left = old_left.saturating_sub(1);
                        new_left = new_left.saturating_sub(1);
                    }
                    Some(b'-') => old_left = old_left.saturating_sub(1),
                    Some(b'+') => new_left = new_left.saturating_sub(1),
                    Some(b'\\') => {}
                    _ => break,
                }
                i += 1;
            }
        }
        out.push(FilePatch { old, new, text: lines[start..i].concat() });
    }
    out
}

/// `@@ -a,b +c,d @@`: the old and new line counts (b and d, 1 when left out).
fn hunk_counts(line: &str) -> Option<(usize, usize)> {
    let mut parts = line.split_whitespace().skip(1);
    let count = |r: &str| -> Option<usize> {
        Some(match r[1..].split_once(',') {
            Some((_, n)) => n.parse().ok()?,
            None => 1,
        })
    };
    Some((count(parts.next()?)?, count(parts.next()?)?))
}

/// `-pN`: the name without its first N components; `None` when it has
/// fewer. Without `-p`, the name as it stands.
fn strip_name(name: &str, strip: Option<usize>) -> Option<PathBuf> {
    let Some(n) = strip else { return Some(PathBuf::from(name)) };
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    (parts.len() > n).then(|| parts[n..].iter().collect())
}

fn patch(args: &[String]) -> u8 {
    let o = match parse_patch(args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("patch: {msg}\npatch: Try 'patch --help' for more information.");
            return 2;
        }
    };
    let mut text = String::new();
    let read = match &o.input {
        Some(f) if f != "-" => std::fs::read_to_string(f).map(|t| text = t),
        _ => io::stdin().read_to_string(&mut text).map(drop),
    };
    if let Err(e) = read {
        eprintln!("patch: {}: {}", o.input.as_deref().unwrap_or("-"), why(&e));
        return 2;
    }
    let files = split_patch(&text);
    if files.is_empty() {
        eprintln!("patch: **** Only garbage was found in the patch input.");
        return 2;
    }
    let mut status = 0;
    for fp in files {
        let (old, new) = if o.reverse { (&fp.new, &fp.old) } else { (&fp.old, &fp.new) };
        let creating = old == "/dev/null";
        let deleting = new == "/dev/null";
        let target = match &o.orig {
            Some(f) => Some(PathBuf::from(f)),
            None => {
                let candidates = [old, new].into_iter().filter(|n| *n != "/dev/null");
                let names: Vec<PathBuf> =
                    candidates.filter_map(|n| strip_name(n, o.strip)).collect();
                names.iter().find(|p| p.exists()).or(names.first()).cloned()
            }
        };
        let Some(target) = target else {
            eprintln!("patch: can't find file to patch (try -p)");
            status = 1;
            continue;
        };
        let shown = target.display().to_string();
        let parsed = match diffy::Patch::from_str(&fp.text) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("patch: **** malformed patch for {shown}: {e}");
                status = 2;
                continue;
            }
        };
        let parsed = if o.reverse { parsed.reverse() } else { parsed };
        let base = if creating && !target.exists() {
            String::new()
        } else {
            match std::fs::read_to_string(&target) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("patch: {shown}: {}", why(&e));
                    status = 1;
                    continue;
                }
            }
        };
        if !o.silent {
            println!("{} file {shown}", if o.dry_run { "checking" } else { "patching" });
        }
        let result = match diffy::apply(&base, &parsed) {
            Ok(r) => r,
            Err(e) => {
                // Already applied? (`-N`: skip it quietly, as GNU does.)
                let applied = diffy::apply(&base, &parsed.reverse()).is_ok();
                if applied && o.forward {
                    println!("Reversed (or previously applied) patch detected!  Skipping patch.");
                } else {
                    let hunks = parsed.hunks().len();
                    println!(
                        "{} FAILED -- no reject file written",
                        e.to_string().replacen("error applying hunk", "Hunk", 1)
                    );
                    println!("1 out of {hunks} hunk{} FAILED", if hunks == 1 { "" } else { "s" });
                }
                status = 1;
                continue;
            }
        };
        if o.dry_run {
            continue;
        }
        let written = if deleting && result.is_empty() {
            std::fs::remove_file(&target)
        } else {
            if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(parent);
            }
            std::fs::write(&target, result.as_bytes())
        };
        if let Err(e) = written {
            eprintln!("patch: {shown}: {}", why(&e));
            status = 2;
        }
    }
    status
}

// ------------------------------------------------------------- column ----

fn column(args: &[String]) -> u8 {
    let (mut table, mut seps, mut out_sep, mut width) =
        (false, None::<String>, "  ".to_owned(), 80);
    let mut files = vec![];
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        let mut value = || args.get(i).cloned().inspect(|_| i += 1);
        match a {
            "-t" | "--table" => table = true,
            "-s" | "--separator" => seps = value(),
            "-o" | "--output-separator" => out_sep = value().unwrap_or_default(),
            "-c" | "--output-width" => width = value().and_then(|v| v.parse().ok()).unwrap_or(80),
            "-x" | "--fillrows" | "-n" => {}
            _ if a.starts_with("-s") && a.len() > 2 => seps = Some(a[2..].to_owned()),
            _ if a.starts_with("-o") && a.len() > 2 => out_sep = a[2..].to_owned(),
            _ if a.starts_with("-t") && a.len() > 2 => {
                table = true;
                if let Some(s) = a[2..].strip_prefix('s') {
                    seps =
                        Some(if s.is_empty() { value().unwrap_or_default() } else { s.to_owned() });
                }
            }
            _ if a.starts_with('-') && a.len() > 1 => {
                eprintln!("column: invalid option -- '{}'", &a[1..]);
                return 1;
            }
            _ => files.push(a.to_owned()),
        }
    }
    let mut text = String::new();
    if files.is_empty()
        && let Err(e) = io::stdin().read_to_string(&mut text)
    {
        eprintln!("column: {}", why(&e));
        return 1;
    }
    for f in &files {
        match std::fs::read_to_string(Path::new(f)) {
            Ok(t) => text.push_str(&t),
            Err(e) => {
                eprintln!("column: {f}: {}", why(&e));
                return 1;
            }
        }
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = String::new();
    if table {
        let split = |l: &str| -> Vec<String> {
            match &seps {
                Some(s) => {
                    l.split(|c| s.contains(c)).filter(|f| !f.is_empty()).map(String::from).collect()
                }
                None => l.split_whitespace().map(String::from).collect(),
            }
        };
        let rows: Vec<Vec<String>> = lines.iter().map(|l| split(l)).collect();
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; cols];
        for r in &rows {
            for (k, f) in r.iter().enumerate() {
                widths[k] = widths[k].max(f.chars().count());
            }
        }
        // Every row has every column (missing cells empty), each but the
        // last padded and followed by the separator, as util-linux prints.
        for r in &rows {
            for (k, width) in widths.iter().enumerate() {
                let f = r.get(k).map_or("", String::as_str);
                out.push_str(f);
                if k + 1 < cols {
                    out.extend(std::iter::repeat_n(' ', width - f.chars().count()));
                    out.push_str(&out_sep);
                }
            }
            out.push('\n');
        }
    } else {
        // Entries down the columns, at tab stops, within the width.
        const TAB: usize = 8;
        let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let col_width = (longest + TAB) & !(TAB - 1);
        let numcols = (width / col_width.max(1)).max(1);
        let numrows = lines.len().div_ceil(numcols);
        for row in 0..numrows {
            let (mut end, mut chars) = (col_width, 0);
            let mut base = row;
            while base < lines.len() {
                out.push_str(lines[base]);
                chars += lines[base].chars().count();
                base += numrows;
                if base >= lines.len() {
                    break;
                }
                loop {
                    let next = (chars + TAB) & !(TAB - 1);
                    if next > end {
                        break;
                    }
                    out.push('\t');
                    chars = next;
                }
                end += col_width;
            }
            out.push('\n');
        }
    }
    let mut stdout = io::stdout().lock();
    if stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return 1;
    }
    0
}

// --------------------------------------------------------------- file ----

/// What `file` says of one file: libmagic's description and MIME type.
fn classify(path: &Path, follow: bool) -> (String, String) {
    let meta = if follow { std::fs::metadata(path) } else { std::fs::symlink_metadata(path) };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => {
            let shown = path.display();
            return (format!("cannot open `{shown}' ({})", why(&e)), "cannot open".into());
        }
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default();
        return (format!("symbolic link to {target}"), "inode/symlink".into());
    }
    if meta.is_dir() {
        return ("directory".into(), "inode/directory".into());
    }
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(1 << 16).read_to_end(&mut head));
    if let Err(e) = read {
        return (format!("cannot open `{}' ({})", path.display(), why(&e)), "cannot open".into());
    }
    if head.is_empty() {
        return ("empty".into(), "inode/x-empty".into());
    }
    // Binary formats by their magic numbers; text (scripts too) below.
    if let Some(kind) = infer::get(&head).filter(|k| k.matcher_type() != infer::MatcherType::Text) {
        let mime = kind.mime_type();
        let what = match mime {
            "image/png" => png_description(&head),
            "image/jpeg" => "JPEG image data".into(),
            "image/gif" => "GIF image data".into(),
            "image/webp" => "RIFF (little-endian) data, Web/P image".into(),
            "application/gzip" => "gzip compressed data".into(),
            "application/zip" => "Zip archive data".into(),
            "application/x-tar" => "POSIX tar archive".into(),
            "application/x-bzip2" => "bzip2 compressed data".into(),
            "application/x-xz" => "XZ compressed data".into(),
            "application/zstd" => "Zstandard compressed data".into(),
            "application/pdf" => "PDF document".into(),
            "application/wasm" => "WebAssembly (wasm) binary module".into(),
            "application/x-executable" => "ELF executable".into(),
            "application/vnd.sqlite3" | "application/x-sqlite3" => "SQLite 3.x database".into(),
            other => other.to_owned(),
        };
        return (what, mime.to_owned());
    }
    if head.contains(&0) {
        return ("data".into(), "application/octet-stream".into());
    }
    let Ok(text) = std::str::from_utf8(&head) else {
        // Cut in the middle of a character at the 64 KiB mark is still text.
        let valid = std::str::from_utf8(&head).map_err(|e| e.valid_up_to()).unwrap_err();
        if head.len() - valid >= 4 || head.len() < 1 << 16 {
            return ("ISO-8859 text".into(), "text/plain".into());
        }
        return describe_text(std::str::from_utf8(&head[..valid]).unwrap_or(""), &meta);
    };
    describe_text(text, &meta)
}

fn png_description(head: &[u8]) -> String {
    match (head.get(16..20), head.get(20..24)) {
        (Some(w), Some(h)) => {
            let n = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            format!("PNG image data, {} x {}", n(w), n(h))
        }
        _ => "PNG image data".into(),
    }
}

fn describe_text(text: &str, meta: &std::fs::Metadata) -> (String, String) {
    let ascii = text.is_ascii();
    let (charset, kind) =
        if ascii { ("us-ascii", "ASCII text") } else { ("utf-8", "Unicode text, UTF-8 text") };
    let mut suffix = String::new();
    if text.contains("\r\n") {
        suffix.push_str(", with CRLF line terminators");
    } else if !text.contains('\n') {
        suffix.push_str(", with no line terminators");
    }
    // Scripts, by their `#!` line.
    if let Some(line) = text.strip_prefix("#!").and_then(|t| t.lines().next()) {
        let mut words = line.split_whitespace();
        let mut program = words.next().map(|p| p.rsplit('/').next().unwrap_or(p)).unwrap_or("");
        if program == "env" {
            program = words.find(|w| !w.starts_with('-')).unwrap_or("");
        }
        let program = program.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        let (name, mime) = match program {
            "bash" => ("Bourne-Again shell script", "text/x-shellscript"),
            "sh" | "dash" => ("POSIX shell script", "text/x-shellscript"),
            "zsh" => ("Paul Falstad's zsh script", "text/x-shellscript"),
            "python" => ("Python script", "text/x-script.python"),
            "perl" => ("Perl script text", "text/x-perl"),
            "ruby" => ("Ruby script text", "text/x-ruby"),
            "node" => ("Node.js script text", "application/javascript"),
            _ => ("", ""),
        };
        if !name.is_empty() {
            let what = if name.ends_with(" text") {
                format!("{name} executable{suffix}")
            } else {
                format!("{name}, {kind} executable{suffix}")
            };
            return (what, mime.into());
        }
        let _ = meta;
    }
    let t = text.trim();
    let json = (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']'));
    if json && looks_like_json(t) {
        return ("JSON text data".into(), "application/json".into());
    }
    (format!("{kind}{suffix}"), format!("text/plain; charset={charset}"))
}

/// A shallow check that `t` is JSON: balanced brackets outside strings, and
/// quoted keys after `{` and `,` inside objects.
fn looks_like_json(t: &str) -> bool {
    let mut stack = vec![];
    let (mut in_str, mut escaped, mut expect_key) = (false, false, false);
    for c in t.chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if expect_key && !c.is_whitespace() {
            if c != '"' && c != '}' {
                return false;
            }
            expect_key = false;
        }
        match c {
            '"' => in_str = true,
            '{' => {
                stack.push('}');
                expect_key = true;
            }
            '[' => stack.push(']'),
            '}' | ']' if stack.pop() != Some(c) => return false,
            ',' => expect_key = stack.last() == Some(&'}'),
            _ => {}
        }
    }
    stack.is_empty() && !in_str
}

fn file(args: &[String]) -> u8 {
    let (mut brief, mut mime, mut mime_type, mut follow) = (false, false, false, false);
    let mut names = vec![];
    for a in args {
        match a.as_str() {
            "-b" | "--brief" => brief = true,
            "-i" | "--mime" => mime = true,
            "--mime-type" => mime_type = true,
            "-L" | "--dereference" => follow = true,
            "-h" | "--no-dereference" => follow = false,
            _ if a.starts_with('-') && a.len() > 1 && !a.starts_with("--") => {
                for c in a[1..].chars() {
                    match c {
                        'b' => brief = true,
                        'i' => mime = true,
                        'L' => follow = true,
                        'h' => follow = false,
                        _ => {
                            eprintln!("file: invalid option -- '{c}'");
                            return 1;
                        }
                    }
                }
            }
            _ if a.starts_with("--") => {
                eprintln!("file: unrecognized option '{a}'");
                return 1;
            }
            _ => names.push(a.clone()),
        }
    }
    if names.is_empty() {
        eprintln!("Usage: file [-bchiLNpsvz0] [--mime-type] [--mime-encoding] file ...");
        return 1;
    }
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for n in &names {
        let (what, mime_full) = classify(Path::new(n), follow);
        let shown = if mime_type {
            mime_full.split(';').next().unwrap_or("").to_owned()
        } else if mime {
            if mime_full.contains(';') || mime_full == "cannot open" {
                mime_full.clone()
            } else {
                format!("{mime_full}; charset=binary")
            }
        } else {
            what
        };
        if brief {
            out.push_str(&format!("{shown}\n"));
        } else {
            let label = format!("{n}:");
            out.push_str(&format!(
                "{label:<w$} {shown}\n",
                w = if names.len() > 1 { width } else { 0 }
            ));
        }
    }
    let mut stdout = io::stdout().lock();
    if stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return 1;
    }
    0
}
