//! Redirections: `<`, `>`, `>>`, `2>&1`, `&>`, here-documents and
//! here-strings. Files are opened through the workspace capability only;
//! `/dev/null`, `/dev/stdin`, `/dev/stdout` and `/dev/stderr` are special,
//! and anything outside the workspace fails as bash would report it.

use super::expand;
use super::io::{Input, Io};
use super::state::{Shell, Unwind};
use crate::exec::Sink;
use brush_parser::ast::{
    self, IoFileRedirectKind as K, IoFileRedirectTarget as Target, IoRedirect,
};
use cap_std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

/// How a file is opened for a redirection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
    Append,
}

/// What a special device path stands for.
enum Special {
    Null,
    Stdin,
    Out(i32),
    /// An endless source: zeros, or random bytes.
    Endless(Fill),
}

fn special(path: &str) -> Option<Special> {
    Some(match path {
        "/dev/null" => Special::Null,
        "/dev/stdin" | "/dev/fd/0" => Special::Stdin,
        "/dev/stdout" | "/dev/fd/1" => Special::Out(1),
        "/dev/stderr" | "/dev/fd/2" | "/dev/tty" => Special::Out(2),
        "/dev/zero" => Special::Endless(Fill::Zero),
        "/dev/urandom" | "/dev/random" => Special::Endless(Fill::Random),
        _ => return None,
    })
}

/// What an endless device gives.
#[derive(Clone, Copy)]
enum Fill {
    Zero,
    Random,
}

/// `< /dev/zero`, `< /dev/urandom`: a pipe that a task keeps full of zeros
/// or random bytes until its reader is gone (the pipe's few slots bound
/// what is held).
fn endless(fill: Fill) -> crate::exec::PipeReader {
    const BLOCK: usize = 64 * 1024;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let (sink, reader) = crate::exec::pipe();
    let crate::exec::Sink::Pipe(tx) = sink else { return reader };
    tokio::spawn(async move {
        loop {
            let block = match fill {
                Fill::Zero => bytes::Bytes::from_static(&ZEROS),
                Fill::Random => {
                    let mut b = vec![0u8; BLOCK];
                    if getrandom::fill(&mut b).is_err() {
                        return;
                    }
                    bytes::Bytes::from(b)
                }
            };
            if tx.send(block).await.is_err() {
                return;
            }
        }
    });
    reader
}

/// Whether `path` names an existing regular file (what `set -C` protects).
fn exists(sh: &Shell, path: &str) -> bool {
    sh.resolve(path)
        .is_some_and(|rel| sh.exec.workspace.dir().metadata(&rel).is_ok_and(|m| m.is_file()))
}

/// Opens a workspace file. Errors carry bash's message.
fn open(sh: &Shell, path: &str, mode: Mode) -> Result<std::fs::File, String> {
    let mut o = OpenOptions::new();
    match mode {
        Mode::Read => o.read(true),
        Mode::Write => o.write(true).create(true).truncate(true),
        Mode::Append => o.append(true).create(true),
    };
    let Some(rel) = sh.resolve(path) else {
        // Outside the workspace only the sandbox's private /tmp exists.
        return match sh.locate(path) {
            Some((tmp, below)) => open_counted(sh, tmp, &below, &o, mode)
                .map_err(|e| format!("{path}: {}", crate::fs::strerror(&e))),
            None => Err(format!("{path}: Permission denied")),
        };
    };
    let ws = &sh.exec.workspace;
    if mode != Mode::Read && ws.check_writable(&rel).is_err() {
        return Err(format!("{path}: Read-only file system"));
    }
    if mode == Mode::Read {
        if let Ok(m) = ws.dir().metadata(&rel) {
            if m.is_dir() {
                // Reading a directory fails only when read, as in bash; an
                // empty input is the closest we can give.
                return Err(format!("{path}: Is a directory"));
            }
        }
    }
    open_counted(sh, ws.dir(), &rel, &o, mode)
        .map_err(|e| format!("{path}: {}", crate::fs::strerror(&e)))
}

/// Opens `rel` below `dir`; the disk quota counts what the open changed (a
/// new file's entry, a truncation's freed blocks).
fn open_counted(
    sh: &Shell,
    dir: &cap_std::fs::Dir,
    rel: &Path,
    o: &OpenOptions,
    mode: Mode,
) -> std::io::Result<std::fs::File> {
    use crate::fs::quota;
    let Some(q) = sh.exec.workspace.quota().filter(|_| mode == Mode::Write) else {
        return Ok(dir.open_with(rel, o)?.into_std());
    };
    let before = match dir.metadata(rel) {
        Ok(m) if m.is_file() => quota::occupied(&m),
        Ok(_) => 0,
        Err(_) => {
            q.check(quota::ENTRY)?;
            0
        }
    };
    let file = dir.open_with(rel, o)?.into_std();
    q.add(quota::occupied_file(&file) as i64 - before as i64);
    Ok(file)
}

fn file_sink(sh: &Shell, f: std::fs::File) -> Sink {
    Sink::File(Arc::new(crate::exec::stdio::FileSink::new(f, sh.exec.workspace.quota().cloned())))
}

/// Applies redirections to a copy of `io`. `Ok(None)` means one failed
/// (the message is printed; the command must not run, status 1).
pub async fn apply_all(sh: &mut Shell, io: &Io, list: &[IoRedirect]) -> Result<Option<Io>, Unwind> {
    let mut out = io.clone();
    for r in list {
        if let Err(msg) = apply(sh, &mut out, r).await? {
            io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
            return Ok(None);
        }
    }
    Ok(Some(out))
}

async fn target_word(sh: &mut Shell, io: &Io, w: &str) -> Result<Result<String, String>, Unwind> {
    let fields = expand::fields(sh, io, w).await?;
    Ok(match fields.len() {
        1 => Ok(fields.into_iter().next().unwrap_or_default()),
        _ => Err(format!("{w}: ambiguous redirect")),
    })
}

fn output_to(sh: &Shell, io: &mut Io, fd: i32, path: &str, mode: Mode) -> Result<(), String> {
    let sink = match special(path) {
        Some(Special::Null) => Sink::Null,
        Some(Special::Out(n)) => io.out_fd(n).unwrap_or(Sink::Null),
        // Writes to /dev/zero and /dev/urandom are accepted and dropped, as
        // on Linux.
        Some(Special::Stdin | Special::Endless(_)) => Sink::Null,
        None => file_sink(sh, open(sh, path, mode)?),
    };
    io.set_fd(fd, sink);
    Ok(())
}

async fn apply(sh: &mut Shell, io: &mut Io, r: &IoRedirect) -> Result<Result<(), String>, Unwind> {
    match r {
        IoRedirect::File(fd, kind, target) => {
            let path = match target {
                Target::Filename(w) => match target_word(sh, io, &w.value).await? {
                    Ok(p) => Some(p),
                    Err(m) => return Ok(Err(m)),
                },
                Target::Fd(n) => {
                    return Ok(dup(io, *fd, kind, &n.to_string()));
                }
                Target::Duplicate(w) => {
                    let word = expand::string(sh, io, &w.value).await?;
                    if word == "-" || word.parse::<i32>().is_ok() {
                        return Ok(dup(io, *fd, kind, &word));
                    }
                    // `>&file` is `&>file`.
                    if let Err(m) = output_to(sh, io, 1, &word, Mode::Write) {
                        return Ok(Err(m));
                    }
                    io.stderr = io.stdout.clone();
                    return Ok(Ok(()));
                }
                Target::ProcessSubstitution(ast::ProcessSubstitutionKind::Read, list)
                    if matches!(kind, K::Read) && fd.unwrap_or(0) == 0 =>
                {
                    let out = super::interp::process_substitution_input(sh, io, list).await?;
                    io.stdin = Input::bytes(out);
                    return Ok(Ok(()));
                }
                // `> >(list)`: what the command writes goes down a pipe to
                // the list, which runs beside it as a job (the line waits
                // for it before it ends).
                Target::ProcessSubstitution(ast::ProcessSubstitutionKind::Write, list)
                    if matches!(kind, K::Write | K::Append | K::Clobber) =>
                {
                    let (sink, reader) = crate::exec::pipe();
                    super::interp::start_reader_job(sh, io, list, reader).await?;
                    io.set_fd(fd.unwrap_or(1), sink);
                    return Ok(Ok(()));
                }
                Target::ProcessSubstitution(..) => {
                    return Ok(Err(
                        "this process substitution is not supported; `< <(…)`, `> >(…)`, \
                         `cmd <(…)` and `cmd >(…)` are"
                            .into(),
                    ));
                }
            };
            let Some(path) = path else { return Ok(Ok(())) };
            let res = match kind {
                K::Read | K::ReadAndWrite | K::DuplicateInput => {
                    if let Some(n) = fd.filter(|&n| n != 0) {
                        // `3< file`: a descriptor to read from later (`<&3`).
                        if (3..=9).contains(&n) && matches!(kind, K::Read) {
                            let f = match open(sh, &path, Mode::Read) {
                                Ok(f) => f,
                                Err(m) => return Ok(Err(m)),
                            };
                            io.extra_in.retain(|(f, _)| *f != n);
                            io.extra_in.push((n, Input::file(f)));
                        }
                        return Ok(Ok(()));
                    }
                    match special(&path) {
                        Some(Special::Null) => {
                            io.stdin = Input::closed();
                            Ok(())
                        }
                        Some(Special::Stdin) => Ok(()),
                        Some(Special::Out(_)) => Ok(()),
                        Some(Special::Endless(fill)) => {
                            io.stdin = Input::pipe(endless(fill));
                            Ok(())
                        }
                        None => open(sh, &path, Mode::Read).map(|f| io.stdin = Input::file(f)),
                    }
                }
                K::Write if sh.opts.noclobber && special(&path).is_none() && exists(sh, &path) => {
                    Err(format!("{path}: cannot overwrite existing file"))
                }
                K::Write | K::Clobber | K::DuplicateOutput => {
                    output_to(sh, io, fd.unwrap_or(1), &path, Mode::Write)
                }
                K::Append => output_to(sh, io, fd.unwrap_or(1), &path, Mode::Append),
            };
            Ok(res)
        }
        IoRedirect::OutputAndError(w, append) => {
            let path = match target_word(sh, io, &w.value).await? {
                Ok(p) => p,
                Err(m) => return Ok(Err(m)),
            };
            let mode = if *append { Mode::Append } else { Mode::Write };
            if let Err(m) = output_to(sh, io, 1, &path, mode) {
                return Ok(Err(m));
            }
            io.stderr = io.stdout.clone();
            Ok(Ok(()))
        }
        IoRedirect::HereDocument(fd, doc) => {
            let body = if doc.requires_expansion {
                expand::heredoc(sh, io, &doc.doc.value).await?
            } else {
                doc.doc.value.clone()
            };
            if fd.unwrap_or(0) == 0 {
                io.stdin = Input::bytes(body.into_bytes());
            }
            Ok(Ok(()))
        }
        IoRedirect::HereString(fd, w) => {
            let mut s = expand::string(sh, io, &w.value).await?;
            s.push('\n');
            if fd.unwrap_or(0) == 0 {
                io.stdin = Input::bytes(s.into_bytes());
            }
            Ok(Ok(()))
        }
    }
}

/// `n>&m`, `n<&m`, `n>&-`.
fn dup(io: &mut Io, fd: Option<i32>, kind: &K, word: &str) -> Result<(), String> {
    let input = matches!(kind, K::DuplicateInput | K::Read);
    let fd = fd.unwrap_or(if input { 0 } else { 1 });
    if word == "-" {
        if fd == 0 {
            io.stdin = Input::closed();
        } else {
            io.extra_in.retain(|(f, _)| *f != fd);
            io.extra.retain(|(f, _)| *f != fd);
            if fd <= 2 {
                io.set_fd(fd, Sink::Null);
            }
        }
        return Ok(());
    }
    let Ok(n) = word.parse::<i32>() else { return Err(format!("{word}: ambiguous redirect")) };
    if input || fd == 0 {
        // `<&3`: read from a descriptor opened to read (`exec 3< file`).
        if let Some((_, i)) = io.extra_in.iter().find(|(f, _)| *f == n) {
            let i = i.clone();
            if fd == 0 {
                io.stdin = i;
            } else {
                io.extra_in.retain(|(f, _)| *f != fd);
                io.extra_in.push((fd, i));
            }
        } else if n >= 3 && !io.extra.iter().any(|(f, _)| *f == n) {
            return Err(format!("{n}: Bad file descriptor"));
        }
        return Ok(());
    }
    match io.out_fd(n) {
        Some(s) => {
            io.set_fd(fd, s);
            Ok(())
        }
        None => Err(format!("{n}: Bad file descriptor")),
    }
}
