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
fn seek(lines: &[String], pattern: &[String], start: usize, eof: bool) -> Option<usize> {
    if pattern.is_empty() {
        return Some(start);
    }
    if pattern.len() > lines.len() {
        return None;
    }
    let last = lines.len() - pattern.len();
    let from = if eof { last.max(start) } else { start };
    let tests: [fn(&str, &str) -> bool; 3] =
        [|a, b| a == b, |a, b| a.trim_end() == b.trim_end(), |a, b| a.trim() == b.trim()];
    for eq in tests {
        for i in from..=last {
            if lines[i..i + pattern.len()].iter().zip(pattern).all(|(a, b)| eq(a, b)) {
                return Some(i);
            }
        }
    }
    if eof && from > start {
        return seek(lines, pattern, start, false);
    }
    None
}

/// The new contents of a file after applying `chunks`.
pub fn apply_chunks(original: &str, chunks: &[Chunk], shown: &str) -> Result<String, String> {
    let mut lines: Vec<String> = original.split('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let mut replacements: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let mut at = 0;
    for chunk in chunks {
        if let Some(ctx) = &chunk.context {
            match seek(&lines, std::slice::from_ref(ctx), at, false) {
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
        let mut found = seek(&lines, old, at, chunk.end_of_file);
        if found.is_none() && old.last().is_some_and(String::is_empty) {
            old = &old[..old.len() - 1];
            if new.last().is_some_and(String::is_empty) {
                new = &new[..new.len() - 1];
            }
            found = seek(&lines, old, at, chunk.end_of_file);
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
    replacements.sort_by_key(|r| r.0);
    for (start, len, new) in replacements.into_iter().rev() {
        let end = (start + len).min(lines.len());
        lines.splice(start..end, new);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// What a checked patch will do, in order.
enum Step {
    Write { rel: PathBuf, data: String },
    Remove { rel: PathBuf },
}

pub async fn run(cx: &Context<'_>, args: &[String]) -> Status {
    let text = match args {
        [] => {
            let data = cx.read_stdin(MAX_PATCH).await;
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
    match plan(cx, &hunks) {
        Ok((steps, summary)) => {
            if let Err(e) = commit(cx, steps) {
                cx.err(&format!("{e}\n")).await;
                return Ok(1);
            }
            cx.out(summary.as_bytes()).await?;
            Ok(0)
        }
        Err(e) => {
            cx.err(&format!("{e}\n")).await;
            Ok(1)
        }
    }
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

/// Checks every hunk against the workspace as the earlier hunks leave it,
/// without writing, and returns the steps and Codex's summary.
fn plan(cx: &Context<'_>, hunks: &[Hunk]) -> Result<(Vec<Step>, String), String> {
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
            None => dir.read_to_string(rel).map_err(|e| format!("{what} {shown}: {e}")),
        }
    };
    let (mut added, mut modified, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    let mut steps = Vec::new();
    for hunk in hunks {
        match hunk {
            Hunk::Add { path, contents } => {
                let rel = target(cx, path)?;
                if dir.metadata(&rel).is_ok_and(|m| m.is_dir()) {
                    return Err(format!("Failed to write file {path}: Is a directory"));
                }
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
                let new = apply_chunks(&original, chunks, path)?;
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
    let dir = cx.workspace.dir();
    let quota = cx.workspace.quota();
    let size =
        |rel: &Path| dir.symlink_metadata(rel).ok().filter(|m| m.is_file()).map_or(0, |m| m.len());
    if let Some(q) = quota {
        // All or nothing: the whole patch is checked against the quota
        // before anything is written (counting each file once, at its last
        // state).
        let mut last: std::collections::HashMap<&Path, u64> = Default::default();
        for step in &steps {
            match step {
                Step::Write { rel, data } => last.insert(rel, data.len() as u64),
                Step::Remove { rel } => last.insert(rel, 0),
            };
        }
        let growth: i64 = last.iter().map(|(rel, new)| *new as i64 - size(rel) as i64).sum();
        q.check(growth.max(0) as u64).map_err(|e| e.to_string())?;
    }
    for step in steps {
        let before = match &step {
            Step::Write { rel, .. } | Step::Remove { rel } if quota.is_some() => size(rel),
            _ => 0,
        };
        match step {
            Step::Write { rel, data } => {
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    dir.create_dir_all(parent).map_err(|e| {
                        format!("Failed to create parent directories for {}: {e}", rel.display())
                    })?;
                }
                let len = data.len() as i64;
                dir.write(&rel, data)
                    .map_err(|e| format!("Failed to write file {}: {e}", rel.display()))?;
                if let Some(q) = quota {
                    q.add(len - before as i64);
                }
            }
            Step::Remove { rel } => {
                dir.remove_file(&rel)
                    .map_err(|e| format!("Failed to delete file {}: {e}", rel.display()))?;
                if let Some(q) = quota {
                    q.add(-(before as i64));
                }
            }
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
