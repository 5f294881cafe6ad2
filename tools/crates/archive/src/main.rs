//! `tar`, `gzip`, `gunzip` and `zcat` for the sandbox's toolset, picked by
//! `argv[0]`: GNU-style command lines in front of the `tar` and `flate2`
//! crates, which do all the format work. Built for `wasm32-wasip1` by
//! `tools/build.sh`; see `tools/README.md` for what they do and do not do.

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let name =
        args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_owned()).unwrap_or_default();
    let rest = args.get(1..).unwrap_or_default().to_vec();
    let status = match name.as_str() {
        "tar" => tar(&rest),
        "gzip" => gzip("gzip", &rest, false, false),
        "gunzip" => gzip("gunzip", &rest, true, false),
        "zcat" => gzip("zcat", &rest, true, true),
        other => {
            eprintln!("{other}: not a command of archive.wasm (tar, gzip, gunzip, zcat)");
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

// ---------------------------------------------------------------- tar ----

#[derive(Default)]
struct TarOpts {
    mode: Option<char>,
    file: Option<String>,
    gzip: bool,
    verbose: bool,
    dir: Option<String>,
    strip: usize,
    excludes: Vec<String>,
    to_stdout: bool,
    paths: Vec<String>,
}

fn tar_usage(msg: &str) -> u8 {
    eprintln!("tar: {msg}\nTry 'tar --help' for more information.");
    2
}

fn parse_tar(args: &[String]) -> Result<TarOpts, String> {
    let mut o = TarOpts::default();
    let mut i = 0;
    let mut first = true;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (k, v) = match long.split_once('=') {
                Some((k, v)) => (k, Some(v.to_owned())),
                None => (long, None),
            };
            let mut value = || v.clone().or_else(|| args.get(i).cloned().inspect(|_| i += 1));
            match k {
                "create" => o.mode = Some('c'),
                "extract" | "get" => o.mode = Some('x'),
                "list" => o.mode = Some('t'),
                "gzip" | "gunzip" | "ungzip" => o.gzip = true,
                "verbose" => o.verbose = true,
                "to-stdout" => o.to_stdout = true,
                "file" => o.file = Some(value().ok_or("option '--file' requires an argument")?),
                "directory" => {
                    o.dir = Some(value().ok_or("option '--directory' requires an argument")?)
                }
                "strip-components" => {
                    let v = value().ok_or("option '--strip-components' requires an argument")?;
                    o.strip = v.parse().map_err(|_| format!("invalid number: '{v}'"))?;
                }
                "exclude" => {
                    o.excludes.push(value().ok_or("option '--exclude' requires an argument")?)
                }
                "no-same-owner" | "no-same-permissions" | "overwrite" | "sort=name" => {}
                _ => return Err(format!("unrecognized option '--{long}'")),
            }
            first = false;
            continue;
        }
        // The first argument may be a bundle without a dash (`tar czf x.tgz d`).
        let bundle = match a.strip_prefix('-') {
            Some(b) if !b.is_empty() => b,
            _ if first && !a.is_empty() && a != "-" => a,
            _ => {
                o.paths.push(a.to_owned());
                first = false;
                continue;
            }
        };
        first = false;
        for (k, c) in bundle.char_indices() {
            match c {
                'c' | 'x' | 't' => o.mode = Some(c),
                'z' => o.gzip = true,
                'v' => o.verbose = true,
                'O' => o.to_stdout = true,
                'p' | 'o' | 'm' => {}
                'f' | 'C' => {
                    let rest = &bundle[k + 1..];
                    let v = if !rest.is_empty() && !a.starts_with('-') {
                        // `tar czf FILE`: the letters take their values in order.
                        args.get(i).cloned().inspect(|_| i += 1)
                    } else if !rest.is_empty() {
                        Some(rest.to_owned())
                    } else {
                        args.get(i).cloned().inspect(|_| i += 1)
                    };
                    let v = v.ok_or(format!("option requires an argument -- '{c}'"))?;
                    if c == 'f' {
                        o.file = Some(v)
                    } else {
                        o.dir = Some(v)
                    }
                    if !rest.is_empty() && a.starts_with('-') {
                        break;
                    }
                }
                'j' | 'J' | 'Z' => {
                    return Err(format!(
                        "-{c}: this sandbox's tar knows gzip (-z) only (bzip2, xz and compress are not built in)"
                    ));
                }
                _ => return Err(format!("invalid option -- '{c}'")),
            }
        }
    }
    Ok(o)
}

fn tar(args: &[String]) -> u8 {
    let o = match parse_tar(args) {
        Ok(o) => o,
        Err(msg) => return tar_usage(&msg),
    };
    let result = match o.mode {
        Some('c') => tar_create(&o),
        Some('x') | Some('t') => tar_read(&o),
        _ => {
            return tar_usage(
                "You must specify one of the '-Acdtrux', '--delete' or '--test-label' options",
            );
        }
    };
    match result {
        Ok(status) => status,
        Err(msg) => {
            eprintln!("tar: {msg}");
            2
        }
    }
}

fn excluded(o: &TarOpts, path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    o.excludes.iter().any(|x| glob(x, name) || glob(x, &path.to_string_lossy()))
}

/// `*` and `?` wildcards, for `--exclude`.
fn glob(pat: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn tar_create(o: &TarOpts) -> Result<u8, String> {
    if o.paths.is_empty() {
        return Err("Cowardly refusing to create an empty archive".into());
    }
    let to_stdout = matches!(o.file.as_deref(), None | Some("-"));
    let out: Box<dyn Write> = if to_stdout {
        Box::new(io::stdout().lock())
    } else {
        let f = o.file.as_deref().unwrap_or("-");
        Box::new(File::create(f).map_err(|e| format!("{f}: Cannot open: {}", why(&e)))?)
    };
    let out: Box<dyn Write> = if o.gzip {
        Box::new(GzEncoder::new(BufWriter::new(out), Compression::default()))
    } else {
        Box::new(BufWriter::new(out))
    };
    let base = PathBuf::from(o.dir.as_deref().unwrap_or("."));
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut status = 0;
    for p in &o.paths {
        let mut stack = vec![PathBuf::from(p)];
        while let Some(rel) = stack.pop() {
            if excluded(o, &rel) {
                continue;
            }
            let full = base.join(&rel);
            let meta = match std::fs::symlink_metadata(&full) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("tar: {}: Cannot stat: {}", rel.display(), why(&e));
                    status = 2;
                    continue;
                }
            };
            if o.verbose {
                let shown = if meta.is_dir() {
                    format!("{}/", rel.display())
                } else {
                    rel.display().to_string()
                };
                if to_stdout { eprintln!("{shown}") } else { println!("{shown}") }
            }
            if let Err(e) = append(&mut b, &rel, &full, &meta) {
                return Err(format!("{}: {}", rel.display(), why(&e)));
            }
            if meta.is_dir() {
                let mut names: Vec<_> = std::fs::read_dir(&full)
                    .map_err(|e| format!("{}: Cannot open: {}", rel.display(), why(&e)))?
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for n in names.into_iter().rev() {
                    stack.push(rel.join(n));
                }
            }
        }
    }
    let out = b.into_inner().map_err(|e| why(&e))?;
    finish(out).map_err(|e| why(&e))?;
    Ok(status)
}

/// One member, its header filled from what WASI tells of the file (the
/// `tar` crate leaves that to the platform, and has nothing for WASI):
/// type, size and modification time; modes are 0644 and 0755 (WASI tells
/// none), owners root.
fn append(
    b: &mut tar::Builder<Box<dyn Write>>,
    rel: &Path,
    full: &Path,
    meta: &std::fs::Metadata,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(full)?;
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        return b.append_link(&mut h, rel, target);
    }
    if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        let mut name = rel.as_os_str().to_owned();
        name.push("/");
        return b.append_data(&mut h, PathBuf::from(name), io::empty());
    }
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(meta.len());
    b.append_data(&mut h, rel, File::open(full)?)
}

/// Flushes a writer (a gzip stream writes its trailer when dropped).
fn finish(mut w: Box<dyn Write>) -> io::Result<()> {
    w.flush()?;
    drop(w);
    Ok(())
}

fn open_input(file: Option<&str>) -> Result<Box<dyn Read>, String> {
    match file {
        None | Some("-") => Ok(Box::new(io::stdin().lock())),
        Some(f) => {
            Ok(Box::new(File::open(f).map_err(|e| format!("{f}: Cannot open: {}", why(&e)))?))
        }
    }
}

/// A reader that undoes gzip when the stream starts with its magic bytes.
fn maybe_gunzip(r: Box<dyn Read>, forced: bool) -> io::Result<Box<dyn Read>> {
    let mut r = BufReader::new(r);
    let head = io::BufRead::fill_buf(&mut r)?;
    if forced || head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(r)))
    } else {
        Ok(Box::new(r))
    }
}

fn tar_read(o: &TarOpts) -> Result<u8, String> {
    let input = open_input(o.file.as_deref())?;
    let input = maybe_gunzip(input, o.gzip).map_err(|e| why(&e))?;
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(false);
    archive.set_unpack_xattrs(false);
    let dest = PathBuf::from(o.dir.as_deref().unwrap_or("."));
    let entries = archive.entries().map_err(|e| why(&e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| why(&e))?;
        let path = entry.path().map_err(|e| why(&e))?.into_owned();
        let is_dir = entry.header().entry_type().is_dir();
        let shown = {
            let s = path.display().to_string();
            if is_dir && !s.ends_with('/') { format!("{s}/") } else { s }
        };
        if !o.paths.is_empty() && !o.paths.iter().any(|p| path.starts_with(p.trim_end_matches('/')))
        {
            continue;
        }
        if excluded(o, &path) {
            continue;
        }
        if o.mode == Some('t') {
            println!("{shown}");
            continue;
        }
        if o.verbose {
            println!("{shown}");
        }
        if o.to_stdout {
            if !is_dir {
                io::copy(&mut entry, &mut io::stdout().lock()).map_err(|e| why(&e))?;
            }
            continue;
        }
        // `--strip-components`: fewer leading parts; nothing that climbs out.
        let parts: Vec<Component> = path.components().collect();
        if parts
            .iter()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir | Component::Prefix(_)))
        {
            eprintln!("tar: {shown}: Member name contains '..' or is absolute; skipped");
            continue;
        }
        if parts.len() <= o.strip {
            continue;
        }
        let target: PathBuf = parts[o.strip..].iter().collect();
        let full = dest.join(&target);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("{}: Cannot mkdir: {}", target.display(), why(&e)))?;
        }
        let kind = entry.header().entry_type();
        let written = if kind.is_dir() {
            std::fs::create_dir_all(&full)
        } else if kind.is_symlink() || kind.is_hard_link() {
            let link = entry.link_name().map_err(|e| why(&e))?.unwrap_or_default().into_owned();
            let _ = std::fs::remove_file(&full);
            if kind.is_symlink() {
                #[allow(deprecated)] // the portable name; WASI has no `os::unix`
                std::fs::soft_link(&link, &full)
            } else {
                std::fs::hard_link(dest.join(&link), &full)
            }
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            // Written here rather than with `Entry::unpack`, which sets
            // permission bits WASI cannot set (and fails on that).
            File::create(&full).and_then(|mut out| io::copy(&mut entry, &mut out).map(drop))
        } else {
            eprintln!("tar: {shown}: Unsupported member type; skipped");
            continue;
        };
        written.map_err(|e| format!("{}: Cannot open: {}", target.display(), why(&e)))?;
    }
    Ok(0)
}

// --------------------------------------------------------------- gzip ----

fn gzip(name: &str, args: &[String], decompress: bool, to_stdout: bool) -> u8 {
    let (mut decompress, mut to_stdout, mut keep, mut force, mut test) =
        (decompress, to_stdout, false, false, false);
    let mut level = 6;
    let mut files = vec![];
    let mut options_done = false;
    for a in args {
        if options_done || !a.starts_with('-') || a == "-" {
            files.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--" => options_done = true,
            "--decompress" | "--uncompress" => decompress = true,
            "--stdout" | "--to-stdout" => to_stdout = true,
            "--keep" => keep = true,
            "--force" => force = true,
            "--test" => test = true,
            "--quiet" | "--no-name" | "--name" | "--verbose" => {}
            _ if a.starts_with("--") => {
                eprintln!("{name}: unrecognized option '{a}'");
                return 1;
            }
            _ => {
                for c in a[1..].chars() {
                    match c {
                        'd' => decompress = true,
                        'c' => to_stdout = true,
                        'k' => keep = true,
                        'f' => force = true,
                        't' => test = true,
                        'q' | 'n' | 'N' | 'v' => {}
                        '1'..='9' => level = c as u32 - '0' as u32,
                        _ => {
                            eprintln!("{name}: invalid option -- '{c}'");
                            return 1;
                        }
                    }
                }
            }
        }
    }
    if files.is_empty() {
        files.push("-".into());
    }
    let mut status = 0;
    for f in &files {
        let r = if test {
            gz_test(f)
        } else if decompress {
            gz_decompress(f, to_stdout, keep, force)
        } else {
            gz_compress(f, to_stdout, keep, force, level)
        };
        if let Err(msg) = r {
            eprintln!("{name}: {msg}");
            status = 1;
        }
    }
    status
}

fn gz_compress(
    f: &str,
    to_stdout: bool,
    keep: bool,
    force: bool,
    level: u32,
) -> Result<(), String> {
    let level = Compression::new(level);
    if f == "-" {
        let mut e = GzEncoder::new(io::stdout().lock(), level);
        io::copy(&mut io::stdin().lock(), &mut e).map_err(|e| why(&e))?;
        e.finish().and_then(|mut w| w.flush()).map_err(|e| why(&e))?;
        return Ok(());
    }
    let mut input = File::open(f).map_err(|e| format!("{f}: {}", why(&e)))?;
    if input.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(format!("{f} is a directory -- ignored"));
    }
    if f.ends_with(".gz") && !force && !to_stdout {
        return Err(format!("{f} already has .gz suffix -- unchanged"));
    }
    let base = Path::new(f).file_name().and_then(|n| n.to_str()).unwrap_or(f);
    if to_stdout {
        let mut e = flate2::GzBuilder::new().filename(base).write(io::stdout().lock(), level);
        io::copy(&mut input, &mut e).map_err(|e| why(&e))?;
        e.finish().and_then(|mut w| w.flush()).map_err(|e| why(&e))?;
        return Ok(());
    }
    let out_name = format!("{f}.gz");
    if Path::new(&out_name).exists() && !force {
        return Err(format!("{out_name} already exists; not overwritten"));
    }
    let out = File::create(&out_name).map_err(|e| format!("{out_name}: {}", why(&e)))?;
    let mut e = flate2::GzBuilder::new().filename(base).write(BufWriter::new(out), level);
    io::copy(&mut input, &mut e).map_err(|e| why(&e))?;
    e.finish().and_then(|mut w| w.flush()).map_err(|e| why(&e))?;
    if !keep {
        std::fs::remove_file(f).map_err(|e| format!("{f}: {}", why(&e)))?;
    }
    Ok(())
}

fn gz_decompress(f: &str, to_stdout: bool, keep: bool, force: bool) -> Result<(), String> {
    if f == "-" {
        let mut d = MultiGzDecoder::new(io::stdin().lock());
        return copy_gz(&mut d, &mut io::stdout().lock(), "stdin");
    }
    let input = File::open(f).map_err(|e| format!("{f}: {}", why(&e)))?;
    let mut d = MultiGzDecoder::new(BufReader::new(input));
    if to_stdout {
        return copy_gz(&mut d, &mut io::stdout().lock(), f);
    }
    let out_name = match (f.strip_suffix(".gz"), f.strip_suffix(".tgz")) {
        (Some(stem), _) => stem.to_owned(),
        (None, Some(stem)) => format!("{stem}.tar"),
        (None, None) => return Err(format!("{f}: unknown suffix -- ignored")),
    };
    if Path::new(&out_name).exists() && !force {
        return Err(format!("{out_name} already exists; not overwritten"));
    }
    let mut out =
        BufWriter::new(File::create(&out_name).map_err(|e| format!("{out_name}: {}", why(&e)))?);
    copy_gz(&mut d, &mut out, f)?;
    out.flush().map_err(|e| why(&e))?;
    if !keep {
        std::fs::remove_file(f).map_err(|e| format!("{f}: {}", why(&e)))?;
    }
    Ok(())
}

fn copy_gz(d: &mut impl Read, out: &mut impl Write, name: &str) -> Result<(), String> {
    match io::copy(d, out) {
        Ok(_) => Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::InvalidInput
                || e.kind() == io::ErrorKind::InvalidData =>
        {
            Err(format!("{name}: not in gzip format"))
        }
        Err(e) => Err(why(&e)),
    }
}

fn gz_test(f: &str) -> Result<(), String> {
    let input = open_input(Some(f)).map_err(|m| m.replace(": Cannot open", ""))?;
    let mut d = MultiGzDecoder::new(input);
    copy_gz(&mut d, &mut io::sink(), f)
}
