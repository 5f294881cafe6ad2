//! Running the syntax tree: lists, and-or lists, pipelines and compound
//! commands. Simple commands are in [`super::simple`].
//!
//! Pipeline stages run concurrently, each as a task of its own (in its own
//! subshell state, as in bash), so that they use every core; dropping the
//! pipeline's future aborts every stage and drops every guest.

use super::expand;
use super::io::{Input, Io};
use super::parse;
use super::state::{MAX_DEPTH, MAX_VALUE, MemoryLimit, Outcome, Shell, Unwind};
use brush_parser::ast::{self, CompoundCommand, SourceLocation};
use futures::future::BoxFuture;

/// Every this many levels of nesting (functions, `eval`, `$(…)`), the
/// nested run continues in a task of its own, which starts on a fresh
/// stack: polling deeply nested futures would otherwise overflow the
/// worker's stack long before [`MAX_DEPTH`]. The task is aborted when the
/// future awaiting it is dropped, so cancellation still reaches it.
pub const STACK_HOP: usize = 8;

/// Runs `work` on a clone of the shell in its own task and takes the
/// clone's state back afterwards (see [`STACK_HOP`]).
pub async fn on_fresh_stack<W>(sh: &mut Shell, work: W) -> Outcome
where
    W: FnOnce(Shell) -> BoxFuture<'static, (Shell, Outcome)>,
{
    match crate::exec::spawn_part(work(sh.clone())).await {
        Some((state, r)) => {
            *sh = state;
            r
        }
        None => Err(Unwind::Exit(1)),
    }
}

/// Parses and runs `text` in this shell (`eval`, `source`, `bash -c`).
pub fn run_text<'a>(
    sh: &'a mut Shell,
    io: &'a Io,
    text: &'a str,
    origin: &'a str,
) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        if sh.depth % STACK_HOP == STACK_HOP - 1 && sh.depth < MAX_DEPTH {
            let (io, text, origin) = (io.clone(), text.to_owned(), origin.to_owned());
            return on_fresh_stack(sh, move |mut sub| {
                Box::pin(async move {
                    sub.depth += 1;
                    let r = run_text_here(&mut sub, &io, &text, &origin).await;
                    sub.depth -= 1;
                    (sub, r)
                })
            })
            .await;
        }
        run_text_here(sh, io, text, origin).await
    })
}

async fn run_text_here(sh: &mut Shell, io: &Io, text: &str, origin: &str) -> Outcome {
    let outer = std::mem::replace(&mut sh.origin, std::sync::Arc::from(origin));
    let r = run_parsed_text(sh, io, text, origin).await;
    sh.origin = outer;
    r
}

async fn run_parsed_text(sh: &mut Shell, io: &Io, text: &str, origin: &str) -> Outcome {
    let program = match parse::program(text, sh.opts.glob.extglob) {
        Ok(p) => p,
        Err(e) => {
            io.err(&e.message(&sh.arg0, origin)).await;
            sh.status = 2;
            return Ok(2);
        }
    };
    if sh.depth >= MAX_DEPTH {
        io.err(&format!("{}maximum nesting depth exceeded ({MAX_DEPTH})\n", sh.err_prefix())).await;
        return Err(Unwind::Exit(2));
    }
    sh.depth += 1;
    let mut r = Ok(0);
    for list in &program.complete_commands {
        r = run_list(sh, list, io).await;
        if r.is_err() {
            break;
        }
    }
    sh.depth -= 1;
    r
}

/// The redirection of `$(< FILE)`: a command that is one input
/// redirection and nothing else, which bash reads as the file's contents.
fn lone_input_redirect(text: &str) -> Option<ast::IoRedirect> {
    if !text.trim_start().starts_with('<') {
        return None;
    }
    let mut program = parse::program(text, false).ok()?;
    let [list] = program.complete_commands.as_mut_slice() else { return None };
    let [ast::CompoundListItem(and_or, ast::SeparatorOperator::Sequence)] = list.0.as_mut_slice()
    else {
        return None;
    };
    if !and_or.additional.is_empty() || and_or.first.bang || and_or.first.timed.is_some() {
        return None;
    }
    let [ast::Command::Simple(simple)] = and_or.first.seq.as_mut_slice() else { return None };
    if simple.word_or_name.is_some() || simple.suffix.is_some() {
        return None;
    }
    let prefix = simple.prefix.take()?;
    let [ast::CommandPrefixOrSuffixItem::IoRedirect(r)] = <[_; 1]>::try_from(prefix.0).ok()? else {
        return None;
    };
    matches!(&r, ast::IoRedirect::File(None | Some(0), ast::IoFileRedirectKind::Read, _))
        .then_some(r)
}

/// Ends the line: a command substitution gave more than a value may hold.
async fn output_too_large(sh: &Shell, io: &Io) -> Unwind {
    io.err(&format!(
        "{}command substitution: output larger than {} MiB\n",
        sh.err_prefix(),
        MAX_VALUE >> 20
    ))
    .await;
    Unwind::Exit(1)
}

/// `$(…)`: runs `text` in a subshell with stdout captured.
pub async fn capture(sh: &mut Shell, io: &Io, text: &str) -> Result<(Vec<u8>, i32), Unwind> {
    let _slot = match sh.budget.subshell() {
        Ok(slot) => slot,
        Err(msg) => return Err(super::expand::fail(sh, io, &msg).await),
    };
    let mut lease = match sh.budget.lease(0) {
        Ok(lease) => lease,
        Err(m) => return Err(super::expand::out_of_memory(sh, io, m).await),
    };
    // `$(< FILE)`: the file's contents, read by the shell itself.
    if let Some(r) = lone_input_redirect(text) {
        let mut sub = sh.clone();
        let redirect = std::slice::from_ref(&r);
        let Some(rio) = Box::pin(super::redirect::apply_all(&mut sub, io, redirect)).await? else {
            return Ok((Vec::new(), 1));
        };
        let data = rio.stdin.read_all(MAX_VALUE).await;
        if data.len() > MAX_VALUE {
            return Err(output_too_large(sh, io).await);
        }
        if let Err(m) = lease.grow_to(data.len()) {
            return Err(super::expand::out_of_memory(sh, io, m).await);
        }
        return Ok((data, 0));
    }
    let (sink, mut reader) = crate::exec::pipe();
    let mut sub = sh.clone();
    sub.substitution_level += 1;
    let mut sub_io = io.clone();
    sub_io.stdout = sink;
    let run = async move {
        let r = run_text(&mut sub, &sub_io, text, "-c").await;
        drop(sub_io);
        exit_status(&sub, r)
    };
    // Why the capture stopped short: the value's size or the line's memory.
    enum Overflow {
        Value,
        Memory(MemoryLimit),
    }
    let collect = async {
        let mut out = Vec::new();
        while let Some(chunk) = reader.next_chunk().await {
            if out.len() + chunk.len() > MAX_VALUE {
                return (out, Some(Overflow::Value));
            }
            // What is captured is held against the line's memory too.
            if let Err(m) = lease.grow_to(out.len() + chunk.len()) {
                return (out, Some(Overflow::Memory(m)));
            }
            out.extend_from_slice(&chunk);
        }
        (out, None)
    };
    let (status, (out, overflow)) = futures::join!(run, collect);
    if let Some(Overflow::Memory(m)) = overflow {
        return Err(super::expand::out_of_memory(sh, io, m).await);
    }
    if overflow.is_some() {
        return Err(output_too_large(sh, io).await);
    }
    Ok((out, status))
}

/// Files made for `<(…)` and `>(…)` arguments, removed when the command is
/// done; for `>(…)`, the lists that read what the command wrote.
/// The files count against the disk quota like any other file in `/tmp`:
/// charged as they are written, given back when they are removed.
#[derive(Default)]
pub struct ProcSubFiles {
    files: Vec<(cap_std::fs::Dir, String)>,
    /// `>(list)`: the file's index in `files`, and the list's text.
    writers: Vec<(usize, String)>,
    quota: Option<std::sync::Arc<crate::fs::quota::DiskQuota>>,
}

impl Drop for ProcSubFiles {
    fn drop(&mut self) {
        for (dir, name) in &self.files {
            let size = dir.symlink_metadata(name).map_or(0, |m| crate::fs::quota::occupied(&m));
            if dir.remove_file(name).is_ok()
                && let Some(q) = &self.quota
            {
                q.add(-(size as i64));
            }
        }
    }
}

/// `<(…)` as an argument: runs the list with its output captured (held
/// against the line's budget like `$(…)`), writes it to a file in the
/// command's private `/tmp`, and gives that file's path. (bash gives a pipe
/// the command reads while the list runs; a file serves the commands agents
/// pass it to, `diff`, `comm`, `cat`, `while read`, alike.) `Ok(Err)`: the
/// message to print.
pub async fn process_substitution(
    sh: &mut Shell,
    io: &Io,
    kind: &ast::ProcessSubstitutionKind,
    cmd: &ast::SubshellCommand,
    files: &mut ProcSubFiles,
) -> Result<Result<String, String>, Unwind> {
    if files.quota.is_none() {
        files.quota = sh.exec.workspace.quota().cloned();
    }
    let Some(tmp) = sh.exec.workspace.scratch().and_then(|s| s.tmp_dir()) else {
        return Ok(Err("process substitution: there is no private /tmp".into()));
    };
    let tmp = match tmp.try_clone() {
        Ok(d) => d,
        Err(e) => return Ok(Err(format!("process substitution: {e}"))),
    };
    if matches!(kind, ast::ProcessSubstitutionKind::Write) {
        // `>(list)`: a file the command writes; the list reads it when the
        // command is done (bash runs it alongside, through a pipe).
        let path =
            files.write(tmp, "procsub", b"").map_err(|e| format!("process substitution: {e}"));
        if path.is_ok() {
            files.writers.push((files.files.len() - 1, cmd.list.to_string()));
        }
        return Ok(path);
    }
    let (out, _) = capture(sh, io, &cmd.list.to_string()).await?;
    Ok(files.write(tmp, "procsub", &out).map_err(|e| format!("process substitution: {e}")))
}

impl ProcSubFiles {
    /// Runs each `>(list)` with what the command wrote to its file as
    /// stdin (read up to the value limit, held against the line's budget),
    /// in a subshell writing to `io`.
    pub async fn run_writers(&mut self, sh: &mut Shell, io: &Io) -> Result<(), Unwind> {
        for (i, text) in std::mem::take(&mut self.writers) {
            let Some((dir, name)) = self.files.get(i) else { continue };
            let data = read_bounded(dir, name);
            let _held = match sh.budget.lease(data.len()) {
                Ok(lease) => lease,
                Err(m) => return Err(super::expand::out_of_memory(sh, io, m).await),
            };
            let mut sub = sh.clone();
            let mut sub_io = io.clone();
            sub_io.stdin = Input::bytes(data);
            let r = run_text(&mut sub, &sub_io, &text, "-c").await;
            let _ = exit_status(&sub, r);
        }
        Ok(())
    }
}

/// A `>(…)` file's contents, at most [`MAX_VALUE`] bytes.
fn read_bounded(dir: &cap_std::fs::Dir, name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    if let Ok(f) = dir.open(name) {
        let _ = f.take(MAX_VALUE as u64).read_to_end(&mut out);
    }
    out
}

impl ProcSubFiles {
    /// Writes `data` to a new file in the private `/tmp` (`tmp`), removed
    /// with this set; returns its path as commands see it.
    pub fn write(
        &mut self,
        tmp: cap_std::fs::Dir,
        what: &str,
        data: &[u8],
    ) -> Result<String, String> {
        use crate::fs::quota;
        let name = format!(".wes-{what}-{}", uuid::Uuid::new_v4().simple());
        if let Some(q) = &self.quota {
            q.check(quota::ENTRY.max(data.len() as u64 + quota::WRITE_SLACK))
                .map_err(|e| e.to_string())?;
        }
        let written = tmp.write(&name, data);
        // Charged for what it occupies (also when the write failed part way).
        if let Some(q) = &self.quota
            && let Ok(m) = tmp.symlink_metadata(&name)
        {
            q.add(quota::occupied(&m) as i64);
        }
        self.files.push((tmp, name.clone()));
        written.map_err(|e| crate::fs::strerror(&e))?;
        Ok(format!("/tmp/{name}"))
    }
}

/// `< <(…)`: the list's output as stdin.
pub async fn process_substitution_input(
    sh: &mut Shell,
    io: &Io,
    cmd: &ast::SubshellCommand,
) -> Result<Vec<u8>, Unwind> {
    Ok(capture(sh, io, &cmd.list.to_string()).await?.0)
}

/// Runs the shell's EXIT trap, if it set one, as it ends with `status`
/// (the trap sees it in `$?`); the status it ends with, which only an
/// `exit` in the trap changes.
pub async fn run_exit_trap(sh: &mut Shell, io: &Io, status: i32) -> i32 {
    let Some(action) = sh.exit_trap.0.take() else { return status };
    if sh.halted() {
        return status;
    }
    sh.status = status;
    match run_text(sh, io, &action, "trap").await {
        Err(Unwind::Exit(s)) => s,
        _ => status,
    }
}

/// The status a subshell ends with.
pub fn exit_status(sub: &Shell, r: Outcome) -> i32 {
    match r {
        Ok(s) => s,
        Err(Unwind::Exit(s)) | Err(Unwind::Return(s)) => s,
        Err(_) => sub.status,
    }
}

pub fn run_list<'a>(
    sh: &'a mut Shell,
    list: &'a ast::CompoundList,
    io: &'a Io,
) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        let mut status = sh.status;
        // `exec` with only redirections changes the streams of the rest of
        // the list (`exec 3< file`, `exec 2>&1`, `exec > log`).
        let mut kept: Option<Io> = None;
        for ast::CompoundListItem(and_or, sep) in &list.0 {
            let io = kept.as_ref().unwrap_or(io);
            if let (ast::SeparatorOperator::Sequence, Some(redirects)) =
                (sep, bare_exec_redirects(and_or))
            {
                status = match super::redirect::apply_all(sh, io, &redirects).await? {
                    Some(changed) => {
                        kept = Some(changed);
                        0
                    }
                    None => 1,
                };
                sh.status = status;
                continue;
            }
            status = match sep {
                ast::SeparatorOperator::Async => start_job(sh, and_or, io).await?,
                ast::SeparatorOperator::Sequence => run_and_or(sh, and_or, io).await?,
            };
        }
        Ok(status)
    })
}

/// The redirections of `exec` with no command (`exec 3< file`), when the
/// item is that and nothing else.
fn bare_exec_redirects(and_or: &ast::AndOrList) -> Option<Vec<ast::IoRedirect>> {
    if !and_or.additional.is_empty() || and_or.first.bang || and_or.first.seq.len() != 1 {
        return None;
    }
    let ast::Command::Simple(simple) = &and_or.first.seq[0] else { return None };
    if simple.word_or_name.as_ref().map(|w| w.value.as_str()) != Some("exec") {
        return None;
    }
    let items =
        simple.prefix.iter().flat_map(|p| &p.0).chain(simple.suffix.iter().flat_map(|s| &s.0));
    let mut redirects = Vec::new();
    for item in items {
        match item {
            ast::CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r.clone()),
            _ => return None,
        }
    }
    (!redirects.is_empty()).then_some(redirects)
}

/// `list &`: runs `and_or` in a subshell of its own, concurrently, with
/// stdin from nothing (as bash does without job control). Its status is
/// `wait`'s; the line waits for it before it ends ([`wait_jobs`]).
async fn start_job(sh: &mut Shell, and_or: &ast::AndOrList, io: &Io) -> Outcome {
    spawn_job(sh, io, Input::closed(), JobBody::AndOr(and_or.clone())).await?;
    Ok(0)
}

/// `> >(list)`: runs `list` as a job of this shell reading `reader` (what
/// the redirected command writes), its output where this one's goes.
pub async fn start_reader_job(
    sh: &mut Shell,
    io: &Io,
    cmd: &ast::SubshellCommand,
    reader: crate::exec::PipeReader,
) -> Result<(), Unwind> {
    spawn_job(sh, io, Input::pipe(reader), JobBody::List(cmd.list.clone())).await
}

/// What a job runs.
enum JobBody {
    AndOr(ast::AndOrList),
    List(ast::CompoundList),
}

/// Starts `body` as a background job of `sh` (a subshell with `stdin`,
/// under the job and subshell limits), recorded for `wait` and `$!`.
async fn spawn_job(sh: &mut Shell, io: &Io, stdin: Input, body: JobBody) -> Result<(), Unwind> {
    reap_jobs(sh).await;
    if sh.jobs.running.len() >= super::state::MAX_JOBS {
        let msg = format!(
            "fork: background job limit reached ({} running; a limit of this sandbox)",
            super::state::MAX_JOBS
        );
        io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
        return Err(Unwind::Exit(137));
    }
    let slot = match sh.budget.subshell() {
        Ok(slot) => slot,
        Err(msg) => {
            io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
            return Err(Unwind::Exit(137));
        }
    };
    let mut sub = sh.clone();
    sub.pid = super::state::next_pid();
    let pid = sub.pid;
    let mut jio = io.clone();
    jio.stdin = stdin;
    let done = crate::exec::spawn_part(async move {
        let _slot = slot;
        let r = match &body {
            JobBody::AndOr(and_or) => run_and_or(&mut sub, and_or, &jio).await,
            JobBody::List(list) => run_list(&mut sub, list, &jio).await,
        };
        let status = exit_status(&sub, r);
        wait_jobs(&mut sub).await;
        status
    });
    sh.jobs.running.push(super::state::Job { pid, done: std::sync::Mutex::new(Box::pin(done)) });
    sh.jobs.last = Some(pid);
    Ok(())
}

/// Forgets the jobs that have ended.
async fn reap_jobs(sh: &mut Shell) {
    let mut running = Vec::with_capacity(sh.jobs.running.len());
    for mut job in std::mem::take(&mut sh.jobs.running) {
        let done = job.done.get_mut().unwrap_or_else(|e| e.into_inner());
        let ended = futures::FutureExt::now_or_never(done).is_some();
        if !ended {
            running.push(job);
        }
    }
    sh.jobs.running = running;
}

/// Waits for this shell's background jobs; the status of the job `pid`
/// (127 if it is not one), or 0 for all of them.
pub async fn wait_jobs_for(sh: &mut Shell, pid: Option<u32>) -> i32 {
    let mut status = if pid.is_some() { 127 } else { 0 };
    for job in std::mem::take(&mut sh.jobs.running) {
        let done = job.done.into_inner().unwrap_or_else(|e| e.into_inner());
        let s = done.await.unwrap_or(crate::exec::STATUS_TRAP);
        if Some(job.pid) == pid {
            status = s;
        }
    }
    status
}

/// Waits for all of this shell's background jobs.
pub async fn wait_jobs(sh: &mut Shell) {
    wait_jobs_for(sh, None).await;
}

async fn run_and_or(sh: &mut Shell, list: &ast::AndOrList, io: &Io) -> Outcome {
    let last = list.additional.len();
    let mut status = run_pipeline(sh, &list.first, io, last > 0).await?;
    for (i, item) in list.additional.iter().enumerate() {
        let (run, p) = match item {
            ast::AndOr::And(p) => (status == 0, p),
            ast::AndOr::Or(p) => (status != 0, p),
        };
        if run {
            status = run_pipeline(sh, p, io, i + 1 < last).await?;
        }
    }
    Ok(status)
}

async fn run_pipeline(sh: &mut Shell, p: &ast::Pipeline, io: &Io, in_condition: bool) -> Outcome {
    let quiet = p.bang || in_condition;
    if quiet {
        sh.in_condition += 1;
    }
    let r = if p.seq.len() == 1 {
        run_command(sh, &p.seq[0], io).await
    } else {
        Ok(run_stages(sh, p, io).await)
    };
    if quiet {
        sh.in_condition -= 1;
    }
    let status = r?;
    let status = if p.bang { (status == 0) as i32 } else { status };
    sh.status = status;
    if !quiet && status != 0 && sh.in_condition == 0 {
        // `trap … ERR`, before `set -e` ends the shell; not while it runs.
        if sh.in_function == 0 {
            if let Some(action) = sh.err_trap.0.take() {
                let outer = std::mem::replace(&mut sh.in_trap, true);
                let r = Box::pin(run_text(sh, io, &action, "trap")).await;
                sh.in_trap = outer;
                sh.err_trap.0 = Some(action);
                sh.status = status;
                if let Err(u @ Unwind::Exit(_)) = r {
                    return Err(u);
                }
            }
        }
        if sh.opts.errexit {
            return Err(Unwind::Exit(status));
        }
    }
    Ok(status)
}

/// Runs a pipeline of two or more commands concurrently.
async fn run_stages(sh: &mut Shell, p: &ast::Pipeline, io: &Io) -> i32 {
    let n = p.seq.len();
    if n == 0 {
        return 0;
    }
    let mut stage_ios = Vec::with_capacity(n);
    let mut next_in = io.stdin.clone();
    for i in 0..n {
        let mut sio = io.clone();
        sio.stdin = next_in.clone();
        if i + 1 < n {
            let (w, r) = crate::exec::pipe();
            sio.stdout = w;
            next_in = Input::pipe(r);
        }
        stage_ios.push(sio);
    }
    drop(next_in);
    // Every stage but the first in a task of its own (on another core if
    // one is free); the first, which the others wait on, in this one, so
    // that it starts at once.
    let mut slots = Vec::with_capacity(n);
    for _ in 0..n {
        match sh.budget.subshell() {
            Ok(slot) => slots.push(slot),
            Err(msg) => {
                io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
                return 137;
            }
        }
    }
    let mut stage_ios = stage_ios.into_iter();
    let mut slots = slots.into_iter();
    let first_io = stage_ios.next().expect("one Io per stage");
    let first_slot = slots.next();
    let mut spawned = Vec::with_capacity(n - 1);
    for (cmd, sio) in p.seq[1..].iter().zip(stage_ios) {
        let (sub, cmd, slot) = (sh.clone(), cmd.clone(), slots.next());
        spawned.push(crate::exec::spawn_part(async move {
            let _slot = slot;
            run_stage(sub, &cmd, sio).await
        }));
    }
    let first = async {
        let _slot = first_slot;
        run_stage(sh.clone(), &p.seq[0], first_io).await
    };
    let (first, rest) = futures::join!(first, futures::future::join_all(spawned));
    // A stage that panicked failed as a guest that trapped would.
    let statuses: Vec<i32> = std::iter::once(first)
        .chain(rest.into_iter().map(|s| s.unwrap_or(crate::exec::STATUS_TRAP)))
        .collect();
    let _ = sh.set_array(
        "PIPESTATUS",
        super::state::array_of(statuses.iter().map(|s| s.to_string()).collect()),
    );
    let last = statuses.last().copied().unwrap_or(0);
    if sh.opts.pipefail {
        statuses.iter().rev().find(|&&s| s != 0).copied().unwrap_or(0)
    } else {
        last
    }
}

/// One stage of a pipeline, in its own subshell state; its output pipe
/// closes when it ends.
async fn run_stage(mut sub: Shell, cmd: &ast::Command, sio: Io) -> i32 {
    let r = run_command(&mut sub, cmd, &sio).await;
    let status = exit_status(&sub, r);
    wait_jobs(&mut sub).await;
    drop(sio);
    status
}

pub fn run_command<'a>(
    sh: &'a mut Shell,
    cmd: &'a ast::Command,
    io: &'a Io,
) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        // Simple commands yield on their own (with the command budget);
        // the others, which loops are made of, here.
        if !matches!(cmd, ast::Command::Simple(_)) {
            sh.pause().await?;
        }
        match cmd {
            ast::Command::Simple(s) => super::simple::run(sh, s, io).await,
            ast::Command::Compound(c, redirects) => {
                let Some(io) = with_redirects(sh, io, redirects.as_ref()).await? else {
                    return Ok(1);
                };
                run_compound(sh, c, &io).await
            }
            ast::Command::Function(f) => {
                sh.funcs.insert(f.fname.value.clone(), std::sync::Arc::new(f.body.clone()));
                sh.func_origins.insert(f.fname.value.clone(), sh.origin.clone());
                Ok(0)
            }
            ast::Command::ExtendedTest(t, redirects) => {
                if let Some(loc) = t.location().filter(|_| !sh.in_trap) {
                    sh.line = loc.start.line;
                }
                let Some(io) = with_redirects(sh, io, redirects.as_ref()).await? else {
                    return Ok(1);
                };
                if sh.opts.xtrace {
                    io.err(&format!("{}[[ {} ]]\n", sh.trace_prefix(), t.expr)).await;
                }
                let ok = super::cond::extended(sh, &io, &t.expr).await?;
                Ok(ok)
            }
        }
    })
}

/// Runs a function body with its redirections.
pub async fn run_body(sh: &mut Shell, body: &ast::FunctionBody, io: &Io) -> Outcome {
    let ast::FunctionBody(cmd, redirects) = body;
    let Some(io) = with_redirects(sh, io, redirects.as_ref()).await? else { return Ok(1) };
    run_compound(sh, cmd, &io).await
}

/// `io` with a compound command's redirections applied; `None` when one
/// failed (its message is out, the command's status is 1).
async fn with_redirects(
    sh: &mut Shell,
    io: &Io,
    redirects: Option<&ast::RedirectList>,
) -> Result<Option<Io>, Unwind> {
    match redirects {
        Some(r) => super::redirect::apply_all(sh, io, &r.0).await,
        None => Ok(Some(io.clone())),
    }
}

fn run_compound<'a>(
    sh: &'a mut Shell,
    c: &'a CompoundCommand,
    io: &'a Io,
) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        match c {
            CompoundCommand::BraceGroup(g) => run_list(sh, &g.list, io).await,
            CompoundCommand::Subshell(s) => {
                let mut sub = sh.clone();
                let r = run_list(&mut sub, &s.list, io).await;
                let status = exit_status(&sub, r);
                Ok(run_exit_trap(&mut sub, io, status).await)
            }
            CompoundCommand::Arithmetic(a) => {
                let text = expand::string(sh, io, &a.expr.value).await?;
                match super::arith::eval(sh, &text) {
                    Ok(v) => Ok((v == 0) as i32),
                    Err(msg) => {
                        io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
                        Ok(1)
                    }
                }
            }
            CompoundCommand::IfClause(c) => {
                if condition(sh, &c.condition, io).await? {
                    return run_list(sh, &c.then, io).await;
                }
                for e in c.elses.iter().flatten() {
                    match &e.condition {
                        Some(cond) => {
                            if condition(sh, cond, io).await? {
                                return run_list(sh, &e.body, io).await;
                            }
                        }
                        None => return run_list(sh, &e.body, io).await,
                    }
                }
                Ok(0)
            }
            CompoundCommand::WhileClause(w) | CompoundCommand::UntilClause(w) => {
                let until = matches!(c, CompoundCommand::UntilClause(_));
                let mut status = 0;
                sh.loops += 1;
                let r = loop {
                    match condition(sh, &w.0, io).await {
                        Ok(ok) if ok == until => break Ok(status),
                        Ok(_) => {}
                        Err(u) => break Err(u),
                    }
                    match looped(run_list(sh, &w.1.list, io).await) {
                        Step::Next(s) => status = s,
                        Step::Stop(s) => break Ok(s),
                        Step::Out(u) => break Err(u),
                    }
                };
                sh.loops -= 1;
                r
            }
            CompoundCommand::ForClause(f) => {
                let values = match &f.values {
                    Some(words) => {
                        let mut v = Vec::new();
                        for w in words {
                            v.extend(expand::fields(sh, io, &w.value).await?);
                        }
                        v
                    }
                    None => sh.positional.to_vec(),
                };
                let mut status = 0;
                sh.loops += 1;
                let mut r = Ok(0);
                // `set -x` traces the header before each pass, as bash does.
                let header = sh.opts.xtrace.then(|| {
                    let words: Vec<String> =
                        values.iter().map(|v| super::simple::quote_trace(v)).collect();
                    format!("for {} in {}\n", f.variable_name, words.join(" "))
                });
                for v in values {
                    if let Some(h) = &header {
                        io.err(&format!("{}{h}", sh.trace_prefix())).await;
                    }
                    if let Err(msg) = sh.set(&f.variable_name, &v) {
                        io.err(&format!("{}{msg}\n", sh.err_prefix())).await;
                        r = Ok(1);
                        break;
                    }
                    match looped(run_list(sh, &f.body.list, io).await) {
                        Step::Next(s) => status = s,
                        Step::Stop(s) => {
                            status = s;
                            break;
                        }
                        Step::Out(u) => {
                            r = Err(u);
                            break;
                        }
                    }
                    r = Ok(status);
                }
                sh.loops -= 1;
                r.map(|_| status)
            }
            CompoundCommand::ArithmeticForClause(f) => {
                sh.loops += 1;
                let r = arith_for(sh, f, io).await;
                sh.loops -= 1;
                r
            }
            CompoundCommand::CaseClause(c) => {
                let value = expand::string(sh, io, &c.value.value).await?;
                let mut i = 0;
                let mut status = 0;
                let mut fall = false;
                while i < c.cases.len() {
                    let item = &c.cases[i];
                    let mut hit = fall;
                    if !hit {
                        for p in &item.patterns {
                            let pat = expand::pattern_of(sh, io, &p.value).await?;
                            let matched = expand::matches_case(sh, &pat, &value).await;
                            if matched {
                                hit = true;
                                break;
                            }
                        }
                    }
                    fall = false;
                    if hit {
                        if let Some(cmd) = &item.cmd {
                            status = run_list(sh, cmd, io).await?;
                        }
                        match item.post_action {
                            ast::CaseItemPostAction::ExitCase => break,
                            ast::CaseItemPostAction::UnconditionallyExecuteNextCaseItem => {
                                fall = true
                            }
                            ast::CaseItemPostAction::ContinueEvaluatingCases => {}
                        }
                    }
                    i += 1;
                }
                Ok(status)
            }
            CompoundCommand::Coprocess(_) => {
                io.err(&format!("{}coproc: not supported\n", sh.err_prefix())).await;
                Ok(1)
            }
        }
    })
}

async fn arith_for(sh: &mut Shell, f: &ast::ArithmeticForClauseCommand, io: &Io) -> Outcome {
    async fn eval(
        sh: &mut Shell,
        io: &Io,
        e: &Option<ast::UnexpandedArithmeticExpr>,
    ) -> Result<Option<i64>, Unwind> {
        // An empty clause is no clause (an empty condition is true).
        let Some(e) = e.as_ref().filter(|e| !e.value.trim().is_empty()) else { return Ok(None) };
        let text = expand::string(sh, io, &e.value).await?;
        match super::arith::eval(sh, &text) {
            Ok(v) => Ok(Some(v)),
            Err(msg) => Err(expand::fail(sh, io, &msg).await),
        }
    }
    eval(sh, io, &f.initializer).await?;
    let mut status = 0;
    loop {
        if eval(sh, io, &f.condition).await?.is_some_and(|v| v == 0) {
            return Ok(status);
        }
        match looped(run_list(sh, &f.body.list, io).await) {
            Step::Next(s) => status = s,
            Step::Stop(s) => return Ok(s),
            Step::Out(u) => return Err(u),
        }
        eval(sh, io, &f.updater).await?;
    }
}

/// What a loop does after one run of its body.
enum Step {
    Next(i32),
    Stop(i32),
    Out(Unwind),
}

fn looped(r: Outcome) -> Step {
    match r {
        Ok(s) => Step::Next(s),
        Err(Unwind::Break(n)) if n <= 1 => Step::Stop(0),
        Err(Unwind::Break(n)) => Step::Out(Unwind::Break(n - 1)),
        Err(Unwind::Continue(n)) if n <= 1 => Step::Next(0),
        Err(Unwind::Continue(n)) => Step::Out(Unwind::Continue(n - 1)),
        Err(u) => Step::Out(u),
    }
}

/// Runs a condition list with `set -e` suspended.
async fn condition(sh: &mut Shell, list: &ast::CompoundList, io: &Io) -> Result<bool, Unwind> {
    sh.in_condition += 1;
    let r = run_list(sh, list, io).await;
    sh.in_condition -= 1;
    Ok(r? == 0)
}
