//! `apply_patch`: the Codex patch format, for clients that call it as a
//! command (`apply_patch "$PATCH"` or `apply_patch <<'EOF' … EOF`).
//!
//! The format is Codex's own, not a unified diff:
//!
//! ```text
//! *** Begin Patch
//! *** Add File: path        then `+line` for every line
//! *** Delete File: path
//! *** Update File: path
//! *** Move to: new/path     (optional)
//! @@ optional context line  then ` ctx`, `-old`, `+new` lines
//! *** End of File           (optional: the chunk ends the file)
//! *** End Patch
//! ```
//!
//! Parsing follows `codex-rs/apply-patch` (lenient about surrounding
//! whitespace and a stray heredoc wrapper; old lines are found exactly, then
//! ignoring trailing whitespace, then ignoring surrounding whitespace). Unlike
//! Codex, nothing is written until every hunk has been checked, so a patch
//! that fails leaves the workspace as it was. Every file goes through the
//! workspace capability and `Workspace::check_writable`.

use super::context::{Context, Status};
use std::io;
use std::path::{Path, PathBuf};

/// Largest patch read from standard input.
const MAX_PATCH: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hunk {
    Add { path: String, contents: String },
    Delete { path: String },
    Update { path: String, move_to: Option<String>, chunks: Vec<Chunk> },
}

/// One `@@` section of an update: `old` lines replaced by `new` lines,
/// searched for after `context` (when given).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    pub context: Option<String>,
    pub old: Vec<String>,
    pub new: Vec<String>,
    pub end_of_file: bool,
}

/// Parses a whole patch. Messages follow Codex's wording.
pub fn parse(text: &str) -> Result<Vec<Hunk>, String> {
    let all: Vec<&str> = text.trim().lines().collect();
    let body = match boundaries(&all) {
        Ok(b) => b,
        // A model sometimes passes the heredoc itself as the argument.
        Err(e) => match all.as_slice() {
            [first, .., last]
                if matches!(*first, "<<EOF" | "<<'EOF'" | "<<\"EOF\"")
                    && last.ends_with("EOF")
                    && all.len() >= 4 =>
            {
                boundaries(&all[1..all.len() - 1])?
            }
            _ => return Err(e),
        },
    };
    let mut hunks = Vec::new();
    let mut rest = body;
    let mut line_number = 2;
    while !rest.is_empty() {
        let (hunk, used) = parse_hunk(rest, line_number)?;
        hunks.push(hunk);
        line_number += used;
        rest = &rest[used..];
    }
    Ok(hunks)
}

fn boundaries<'a>(lines: &'a [&'a str]) -> Result<&'a [&'a str], String> {
    match lines {
        [first, .., last]
            if first.trim() == "*** Begin Patch" && last.trim() == "*** End Patch" =>
        {
            Ok(&lines[1..lines.len() - 1])
        }
        [first, ..] if first.trim() != "*** Begin Patch" => {
            Err("invalid patch: The first line of the patch must be '*** Begin Patch'".into())
        }
        [] => Err("invalid patch: The first line of the patch must be '*** Begin Patch'".into()),
        _ => Err("invalid patch: The last line of the patch must be '*** End Patch'".into()),
    }
}

fn hunk_error(message: String, line_number: usize) -> String {
    format!("invalid hunk at line {line_number}, {message}")
}

fn parse_hunk(lines: &[&str], line_number: usize) -> Result<(Hunk, usize), String> {
    let first = lines[0].trim();
    if let Some(path) = first.strip_prefix("*** Add File: ") {
        let mut contents = String::new();
        let mut used = 1;
        for l in &lines[1..] {
            let Some(text) = l.strip_prefix('+') else { break };
            contents.push_str(text);
            contents.push('\n');
            used += 1;
        }
        return Ok((Hunk::Add { path: path.to_owned(), contents }, used));
    }
    if let Some(path) = first.strip_prefix("*** Delete File: ") {
        return Ok((Hunk::Delete { path: path.to_owned() }, 1));
    }
    if let Some(path) = first.strip_prefix("*** Update File: ") {
        let mut rest = &lines[1..];
        let mut used = 1;
        let move_to = rest.first().and_then(|l| l.strip_prefix("*** Move to: ")).map(str::to_owned);
        if move_to.is_some() {
            rest = &rest[1..];
            used += 1;
        }
        let mut chunks = Vec::new();
        while !rest.is_empty() {
            if rest[0].trim().is_empty() {
                rest = &rest[1..];
                used += 1;
                continue;
            }
            if rest[0].starts_with('*') {
                break;
            }
            let (chunk, n) = parse_chunk(rest, line_number + used, chunks.is_empty())?;
            chunks.push(chunk);
            used += n;
            rest = &rest[n..];
        }
        if chunks.is_empty() {
            return Err(hunk_error(
                format!("Update file hunk for path '{path}' is empty"),
                line_number,
            ));
        }
        return Ok((Hunk::Update { path: path.to_owned(), move_to, chunks }, used));
    }
    Err(hunk_error(
        format!(
            "'{first}' is not a valid hunk header. Valid hunk headers: \
             '*** Add File: {{path}}', '*** Delete File: {{path}}', '*** Update File: {{path}}'"
        ),
        line_number,
    ))
}

fn parse_chunk(
    lines: &[&str],
    line_number: usize,
    first_chunk: bool,
) -> Result<(Chunk, usize), String> {
    let (context, start) = if lines[0] == "@@" {
        (None, 1)
    } else if let Some(c) = lines[0].strip_prefix("@@ ") {
        (Some(c.to_owned()), 1)
    } else if first_chunk {
        (None, 0)
    } else {
        return Err(hunk_error(
            format!("Expected update hunk to start with a @@ context marker, got: '{}'", lines[0]),
            line_number,
        ));
    };
    if start >= lines.len() {
        return Err(hunk_error("Update hunk does not contain any lines".into(), line_number + 1));
    }
    let mut chunk = Chunk { context, ..Default::default() };
    let mut used = 0;
    for l in &lines[start..] {
        if *l == "*** End of File" {
            if used == 0 {
                return Err(hunk_error(
                    "Update hunk does not contain any lines".into(),
                    line_number + 1,
                ));
            }
            chunk.end_of_file = true;
            used += 1;
            break;
        }
        match l.chars().next() {
            None => {
                chunk.old.push(String::new());
                chunk.new.push(String::new());
            }
            Some(' ') => {
                chunk.old.push(l[1..].to_owned());
                chunk.new.push(l[1..].to_owned());
            }
            Some('+') => chunk.new.push(l[1..].to_owned()),
            Some('-') => chunk.old.push(l[1..].to_owned()),
            _ if used == 0 => {
                return Err(hunk_error(
                    format!(
                        "Unexpected line found in update hunk: '{l}'. Every line should start with \
                         ' ' (context line), '+' (added line), or '-' (removed line)"
                    ),
                    line_number + 1,
                ));
            }
            _ => break,
        }
        used += 1;
    }
    Ok((chunk, used + start))
}

/// Finds `pattern` in `lines` at or after `start`: exactly, then ignoring
/// trailing whitespace, then ignoring surrounding whitespace. With `eof`
/// the match is tried at the end of the file first.
/// Steps (window moves and line comparisons) one patch may take to place
/// its chunks: the patch and the file come from the command, so a patch of
/// many chunks against a long file is bounded here (a tenth of a second of
/// work or so), not by the server's patience.
const MAX_SEEK_WORK: u64 = 1 << 26;

/// The three ways a patch line may equal a file line, tried in order (as
/// Codex does): exactly, ignoring trailing space, ignoring surrounding space.
const NORMS: [fn(&str) -> &str; 3] = [|s| s, str::trim_end, str::trim];

/// Finds runs of lines in a file in time linear in the file: every line is
/// hashed once per way of comparing, and a window's hash rolls along the
/// file (Rabin-Karp), so comparing a run of k lines at each place costs
/// O(1) instead of O(k). The line hashes are keyed at random, so a file
/// cannot be made of lines whose windows collide.
struct Seeker<'a> {
    lines: &'a [String],
    keys: [Vec<u64>; 3],
    hasher: std::collections::hash_map::RandomState,
    base: u64,
    work: u64,
}

impl<'a> Seeker<'a> {
    fn new(lines: &'a [String]) -> Self {
        let hasher = std::collections::hash_map::RandomState::new();
        let base = std::hash::BuildHasher::hash_one(&hasher, "base") | 1;
        let keys = NORMS.map(|n| {
            lines.iter().map(|l| std::hash::BuildHasher::hash_one(&hasher, n(l))).collect()
        });
        Self { lines, keys, hasher, base, work: 0 }
    }

    /// Where `pattern` starts at or after `start` (at the end of the file
    /// first when `eof`).
    fn seek(
        &mut self,
        pattern: &[String],
        start: usize,
        eof: bool,
    ) -> Result<Option<usize>, String> {
        let lines = self.lines;
        if pattern.is_empty() {
            return Ok(Some(start));
        }
        if pattern.len() > lines.len() {
            return Ok(None);
        }
        let last = lines.len() - pattern.len();
        let from = if eof { last.max(start) } else { start };
        let len = pattern.len();
        // B^(len-1), to take the line leaving the window out.
        let top = (1..len).fold(1u64, |p, _| p.wrapping_mul(self.base));
        for (t, norm) in NORMS.iter().enumerate() {
            if from > last {
                break;
            }
            let keys = &self.keys[t];
            let roll = |h: u64, k: u64| h.wrapping_mul(self.base).wrapping_add(k);
            let want = pattern
                .iter()
                .map(|p| std::hash::BuildHasher::hash_one(&self.hasher, norm(p)))
                .fold(0, roll);
            let mut h = keys[from..from + len].iter().fold(0, |h, &k| roll(h, k));
            for i in from..=last {
                self.work += 1;
                if h == want {
                    self.work += len as u64;
                    if lines[i..i + len].iter().zip(pattern).all(|(a, b)| norm(a) == norm(b)) {
                        return Ok(Some(i));
                    }
                }
                if self.work > MAX_SEEK_WORK {
                    return Err("the patch takes too much work to place (too many chunks \
                                for the length of the file)"
                        .into());
                }
                if i < last {
                    h = roll(h.wrapping_sub(keys[i].wrapping_mul(top)), keys[i + len]);
                }
            }
        }
        if eof && from > start {
            return self.seek(pattern, start, false);
        }
        Ok(None)
    }
}

/// The new contents of a file after applying `chunks`.
pub fn apply_chunks(original: &str, chunks: &[Chunk], shown: &str) -> Result<String, String> {
    let mut lines: Vec<String> = original.split('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let mut replacements: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let mut at = 0;
    let mut seeker = Seeker::new(&lines);
    for chunk in chunks {
        if let Some(ctx) = &chunk.context {
            match seeker.seek(std::slice::from_ref(ctx), at, false)? {
                Some(i) => at = i + 1,
                None => return Err(format!("Failed to find context '{ctx}' in {shown}")),
            }
        }
        if chunk.old.is_empty() {
            replacements.push((lines.len(), 0, chunk.new.clone()));
            continue;
        }
        let mut old: &[String] = &chunk.old;
        let mut new: &[String] = &chunk.new;
        let mut found = seeker.seek(old, at, chunk.end_of_file)?;
        if found.is_none() && old.last().is_some_and(String::is_empty) {
            old = &old[..old.len() - 1];
            if new.last().is_some_and(String::is_empty) {
                new = &new[..new.len() - 1];
            }
            found = seeker.seek(old, at, chunk.end_of_file)?;
        }
        match found {
            Some(i) => {
                replacements.push((i, old.len(), new.to_vec()));
                at = i + old.len();
            }
            None => {
                return Err(format!(
                    "Failed to find expected lines in {shown}:\n{}",
                    chunk.old.join("\n")
                ));
            }
        }
    }
    // One pass over the file (splicing each replacement in place moved
    // the rest of the file every time: quadratic in the chunks).
    replacements.sort_by_key(|r| r.0);
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut cursor = 0;
    for (start, len, new) in replacements {
        let start = start.clamp(cursor, lines.len());
        out.extend(lines[cursor..start].iter_mut().map(std::mem::take));
        out.extend(new);
        cursor = (start + len).min(lines.len());
    }
    out.extend(lines[cursor..].iter_mut().map(std::mem::take));
    let mut out = out.join("\n");
    out.push('\n');
    Ok(out)
}

/// What a checked patch will do, in order.
enum Step {
    Write { rel: PathBuf, data: String },
    Remove { rel: PathBuf },
}

pub async fn run(cx: &Context<'_>, args: &[String]) -> Status {
    // Everything apply_patch holds (the patch read from stdin, each file
    // read, each new text and its staged copy) is held against the line's
    // memory budget, and given back when it ends.
    let mut held = cx.held();
    let text = match args {
        [] => {
            let data = cx.read_stdin(MAX_PATCH).await;
            if let Err(msg) = held.take(data.len()) {
                return out_of_memory(cx, &msg).await;
            }
            if data.is_empty() {
                cx.err("Usage: apply_patch 'PATCH'\n       echo 'PATCH' | apply_patch\n").await;
                return Ok(2);
            }
            String::from_utf8_lossy(&data).into_owned()
        }
        [patch] => patch.clone(),
        _ => {
            cx.err("Error: apply_patch accepts exactly one argument.\n").await;
            return Ok(2);
        }
    };
    let hunks = match parse(&text) {
        Ok(h) => h,
        Err(e) => {
            cx.err(&format!("{e}\n")).await;
            return Ok(1);
        }
    };
    if hunks.is_empty() {
        cx.err("No files were modified.\n").await;
        return Ok(1);
    }
    match plan(cx, &hunks, &mut held).await {
        Err(Refusal::Memory(msg)) => out_of_memory(cx, &msg).await,
        Ok((steps, summary)) => {
            if let Err(e) = commit(cx, steps) {
                cx.err(&format!("{e}\n")).await;
                return Ok(1);
            }
            cx.out(summary.as_bytes()).await?;
            Ok(0)
        }
        Err(Refusal::Patch(e)) => {
            cx.err(&format!("{e}\n")).await;
            Ok(1)
        }
    }
}

/// Why a patch was not applied.
enum Refusal {
    /// It does not apply; the message is Codex's.
    Patch(String),
    /// The line's memory budget has no room for what it needs.
    Memory(String),
}

impl From<String> for Refusal {
    fn from(e: String) -> Self {
        Refusal::Patch(e)
    }
}

/// Ends apply_patch as a guest past max-memory ends: 137, the limit named.
async fn out_of_memory(cx: &Context<'_>, msg: &str) -> Status {
    cx.err(&format!("apply_patch: {msg}\n")).await;
    Ok(137)
}

/// A patch path → root-relative path, refused outside the workspace and in
/// read-only areas.
fn target(cx: &Context<'_>, path: &str) -> Result<PathBuf, String> {
    let abs = crate::fs::path::normalize_absolute(&cx.absolute(path));
    let rel = cx
        .workspace
        .relative(&abs)
        .ok_or_else(|| format!("{path}: Permission denied (outside the workspace)"))?;
    cx.workspace
        .check_writable(&rel)
        .map_err(|_| format!("{path}: Permission denied (read-only area)"))?;
    if rel.as_os_str().is_empty() {
        return Err(format!("{path}: Is a directory"));
    }
    Ok(rel)
}

/// Largest file apply_patch reads: the file, its new text and the staged
/// copies are held at once, on the host.
const MAX_PATCH_FILE: u64 = 64 << 20;

/// Checks every hunk against the workspace as the earlier hunks leave it,
/// without writing, and returns the steps and Codex's summary.
async fn plan(
    cx: &Context<'_>,
    hunks: &[Hunk],
    held: &mut crate::hostcmd::Held<'_>,
) -> Result<(Vec<Step>, String), Refusal> {
    let dir = cx.workspace.dir();
    // Files as the patch leaves them so far: `None` once deleted.
    let mut staged: std::collections::HashMap<PathBuf, Option<String>> = Default::default();
    let read = |staged: &std::collections::HashMap<PathBuf, Option<String>>,
                rel: &Path,
                shown: &str,
                what: &str| {
        match staged.get(rel) {
            Some(Some(s)) => Ok(s.clone()),
            Some(None) => Err(format!("{what} {shown}: No such file or directory (os error 2)")),
            None => cx
                .workspace
                .read_bounded(rel, MAX_PATCH_FILE)
                .and_then(|b| String::from_utf8(b).map_err(|_| io::ErrorKind::InvalidData.into()))
                .map_err(|e| format!("{what} {shown}: {e}")),
        }
    };
    let (mut added, mut modified, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    let mut steps = Vec::new();
    for hunk in hunks {
        // A patch may name thousands of files: let others run between them
        // (and terminate or max-wall drop this one).
        tokio::task::yield_now().await;
        match hunk {
            Hunk::Add { path, contents } => {
                let rel = target(cx, path)?;
                if dir.metadata(&rel).is_ok_and(|m| m.is_dir()) {
                    return Err(format!("Failed to write file {path}: Is a directory").into());
                }
                // Staged, and in its step.
                held.take(contents.len().saturating_mul(2)).map_err(Refusal::Memory)?;
                staged.insert(rel.clone(), Some(contents.clone()));
                steps.push(Step::Write { rel, data: contents.clone() });
                added.push(path.clone());
            }
            Hunk::Delete { path } => {
                let rel = target(cx, path)?;
                read(&staged, &rel, path, "Failed to delete file")?;
                staged.insert(rel.clone(), None);
                steps.push(Step::Remove { rel });
                deleted.push(path.clone());
            }
            Hunk::Update { path, move_to, chunks } => {
                let rel = target(cx, path)?;
                let original = read(&staged, &rel, path, "Failed to read file to update")?;
                // The file, and its new text twice (staged, and in its step),
                // taken before the work of applying: the new text is about
                // the old one's size, and what it adds is taken after.
                held.take(original.len().saturating_mul(3)).map_err(Refusal::Memory)?;
                let new = apply_chunks(&original, chunks, path)?;
                let grown = new.len().saturating_sub(original.len());
                held.take(grown.saturating_mul(2)).map_err(Refusal::Memory)?;
                match move_to {
                    Some(dest) => {
                        let dest_rel = target(cx, dest)?;
                        staged.insert(dest_rel.clone(), Some(new.clone()));
                        steps.push(Step::Write { rel: dest_rel.clone(), data: new });
                        if dest_rel != rel {
                            staged.insert(rel.clone(), None);
                            steps.push(Step::Remove { rel });
                        }
                        modified.push(dest.clone());
                    }
                    None => {
                        staged.insert(rel.clone(), Some(new.clone()));
                        steps.push(Step::Write { rel, data: new });
                        modified.push(path.clone());
                    }
                }
            }
        }
    }
    let mut summary = String::from("Success. Updated the following files:\n");
    for (tag, list) in [("A", added), ("M", modified), ("D", deleted)] {
        for p in list {
            summary.push_str(&format!("{tag} {p}\n"));
        }
    }
    Ok((steps, summary))
}

fn commit(cx: &Context<'_>, steps: Vec<Step>) -> Result<(), String> {
    use crate::fs::quota::{ENTRY, new_top, path_size};
    let dir = cx.workspace.dir();
    let quota = cx.workspace.quota();
    if let Some(q) = quota {
        // All or nothing: the whole patch is checked against the quota
        // before anything is written (counting each file once, at its last
        // state, as its length and an entry: what it will about occupy).
        let mut last: std::collections::HashMap<&Path, u64> = Default::default();
        for step in &steps {
            match step {
                Step::Write { rel, data } => last.insert(rel, data.len() as u64 + ENTRY),
                Step::Remove { rel } => last.insert(rel, 0),
            };
        }
        let growth: i64 =
            last.iter().map(|(rel, new)| *new as i64 - path_size(dir, rel) as i64).sum();
        q.check(growth.max(0) as u64).map_err(|e| e.to_string())?;
    }
    for step in steps {
        // Counted from the shallowest directory the step creates (or the
        // file itself): what it occupies after against before.
        let counted = quota.map(|_| {
            let (Step::Write { rel, .. } | Step::Remove { rel }) = &step;
            let top = new_top(dir, rel).to_path_buf();
            let before = path_size(dir, &top);
            (top, before)
        });
        match step {
            Step::Write { rel, data } => {
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    dir.create_dir_all(parent).map_err(|e| {
                        format!("Failed to create parent directories for {}: {e}", rel.display())
                    })?;
                }
                dir.write(&rel, data)
                    .map_err(|e| format!("Failed to write file {}: {e}", rel.display()))?;
            }
            Step::Remove { rel } => {
                dir.remove_file(&rel)
                    .map_err(|e| format!("Failed to delete file {}: {e}", rel.display()))?;
            }
        }
        if let (Some(q), Some((top, before))) = (quota, counted) {
            q.add(path_size(dir, &top) as i64 - before as i64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn seeking_is_linear_and_bounded() {
        let chunk = |old: Vec<String>, new: &str| Chunk {
            context: None,
            new: old.iter().cloned().chain([new.to_owned()]).collect(),
            old,
            end_of_file: false,
        };
        // 200,000 equal lines and a run of 2,000 of them ending in a line
        // the file lacks: every place compares 2,000 lines when compared
        // one by one (400 million comparisons, three times); a rolling
        // hash moves once per place.
        let file = "a\n".repeat(200_000);
        let mut old = vec!["a".to_owned(); 2_000];
        old.push("b".into());
        let err = apply_chunks(&file, &[chunk(old, "x")], "f").expect_err("not there");
        assert!(err.starts_with("Failed to find expected lines in f"), "{err}");
        // Found where it is, with leading and trailing space ignored last.
        let file = "a\nb\n  c  \nd\n";
        let got = apply_chunks(file, &[chunk(strings(&["b", "c"]), "B")], "f").expect("applies");
        assert_eq!(got, "a\nb\nc\nB\nd\n");
        // Many chunks that each search the whole file twice before the
        // third way of comparing finds them (their lines differ from the
        // file's in leading space): refused once the work passes its bound,
        // not after minutes.
        let mut file: String = (0..2_000).map(|i| format!("t{i}\n")).collect();
        file.push_str(&"x\n".repeat(100_000));
        let chunks: Vec<Chunk> = (0..2_000).map(|i| chunk(vec![format!("  t{i}")], "y")).collect();
        assert!(apply_chunks(&file, &chunks[..10], "f").is_ok());
        let err = apply_chunks(&file, &chunks, "f").expect_err("bounded");
        assert!(err.contains("too much work"), "{err}");
    }

    #[test]
    fn parses_every_hunk_kind() {
        let patch = "*** Begin Patch\n*** Add File: path/add.py\n+abc\n+def\n\
                     *** Delete File: path/delete.py\n*** Update File: path/update.py\n\
                     *** Move to: path/update2.py\n@@ def f():\n-    pass\n+    return 123\n\
                     *** End Patch";
        assert_eq!(
            parse(patch).expect("parse"),
            vec![
                Hunk::Add { path: "path/add.py".into(), contents: "abc\ndef\n".into() },
                Hunk::Delete { path: "path/delete.py".into() },
                Hunk::Update {
                    path: "path/update.py".into(),
                    move_to: Some("path/update2.py".into()),
                    chunks: vec![Chunk {
                        context: Some("def f():".into()),
                        old: strings(&["    pass"]),
                        new: strings(&["    return 123"]),
                        end_of_file: false
                    }],
                },
            ]
        );
    }

    #[test]
    fn first_chunk_may_omit_the_marker_and_heredoc_wrapper_is_tolerated() {
        let patch = "<<'EOF'\n*** Begin Patch\n*** Update File: f.py\n import foo\n+bar\n\
                     *** End Patch\nEOF\n";
        assert_eq!(
            parse(patch).expect("parse"),
            vec![Hunk::Update {
                path: "f.py".into(),
                move_to: None,
                chunks: vec![Chunk {
                    context: None,
                    old: strings(&["import foo"]),
                    new: strings(&["import foo", "bar"]),
                    end_of_file: false
                }],
            }]
        );
    }

    #[test]
    fn parse_errors_use_codex_messages() {
        assert_eq!(
            parse("bad"),
            Err("invalid patch: The first line of the patch must be '*** Begin Patch'".into())
        );
        assert_eq!(
            parse("*** Begin Patch\nbad"),
            Err("invalid patch: The last line of the patch must be '*** End Patch'".into())
        );
        assert_eq!(
            parse("*** Begin Patch\n*** Update File: t.py\n*** End Patch"),
            Err("invalid hunk at line 2, Update file hunk for path 't.py' is empty".into())
        );
        let e = parse("*** Begin Patch\n*** Frobnicate: x\n*** End Patch").expect_err("bad header");
        assert!(
            e.starts_with("invalid hunk at line 2, '*** Frobnicate: x' is not a valid hunk header"),
            "{e}"
        );
    }

    #[test]
    fn applies_chunks_with_context_and_whitespace_tolerance() {
        let original = "fn a() {\n    one();\n}\nfn b() {\n    one();  \n}\n";
        let chunks = vec![Chunk {
            context: Some("fn b() {".into()),
            old: strings(&["    one();"]),
            new: strings(&["    two();"]),
            end_of_file: false,
        }];
        assert_eq!(
            apply_chunks(original, &chunks, "x.rs").expect("apply"),
            "fn a() {\n    one();\n}\nfn b() {\n    two();\n}\n"
        );
    }

    #[test]
    fn pure_additions_append_and_missing_lines_fail() {
        let chunks = vec![Chunk { old: vec![], new: strings(&["c"]), ..Default::default() }];
        assert_eq!(apply_chunks("a\nb\n", &chunks, "f").expect("apply"), "a\nb\nc\n");
        let chunks =
            vec![Chunk { old: strings(&["zzz"]), new: strings(&["y"]), ..Default::default() }];
        assert_eq!(
            apply_chunks("a\n", &chunks, "f"),
            Err("Failed to find expected lines in f:\nzzz".into())
        );
    }

    #[test]
    fn end_of_file_chunks_match_the_last_occurrence() {
        let chunks = vec![Chunk {
            old: strings(&["x"]),
            new: strings(&["y"]),
            end_of_file: true,
            ..Default::default()
        }];
        assert_eq!(apply_chunks("x\nmid\nx\n", &chunks, "f").expect("apply"), "x\nmid\ny\n");
    }
}
