//! `git blame`: who last changed each line of a file, over gitoxide's
//! blame (`gix::blame`), printed in git's default format:
//! `8c5e1f2a (Ada Lovelace 2024-03-01 12:00:00 +0100 3) line`.
//!
//! The walk reads objects through [`Watched`], which checks the command's
//! cancellation, memory and CPU time at every object, so a long history
//! stops with the command's limits like every other git command.

use super::repo::{Git, GitResult, fatal, usage};
use gix::bstr::{BStr, ByteSlice};
use gix::prelude::ObjectIdExt;
use std::cell::RefCell;
use std::collections::HashMap;

/// What the options asked for.
#[derive(Default)]
struct Options {
    /// `-L a,b`: one-based, inclusive.
    range: Option<(u32, u32)>,
    /// `-s`: no author and date.
    no_author: bool,
    /// `-e`: the author's email instead of the name.
    email: bool,
    /// `-l`: whole object names.
    long: bool,
}

pub fn blame(git: &mut Git, args: &[String]) -> GitResult {
    let mut opts = Options::default();
    let mut rest = Vec::new();
    let mut dashdash = None;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        match a.as_str() {
            "--" => {
                dashdash = Some(rest.len());
                rest.extend(args[i..].iter().cloned());
                break;
            }
            "-s" => opts.no_author = true,
            "-e" | "--show-email" => opts.email = true,
            "-l" => opts.long = true,
            "-L" => {
                let Some(spec) = args.get(i) else {
                    return Err(usage("error: switch `L' requires a value"));
                };
                i += 1;
                opts.range = Some(line_range(spec)?);
            }
            s if s.starts_with("-L") => opts.range = Some(line_range(&s[2..])?),
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(usage(&format!(
                    "error: unknown option `{}'",
                    s.trim_start_matches('-')
                )));
            }
            _ => rest.push(a.clone()),
        }
    }
    // `blame FILE`, `blame REV FILE`, `blame REV -- FILE`.
    let (rev, file) = match (rest.as_slice(), dashdash) {
        ([file], _) => (None, file.clone()),
        ([rev, file], Some(1) | None) => (Some(rev.clone()), file.clone()),
        _ => return Err(usage("usage: git blame [<options>] [<rev>] [--] <file>")),
    };
    let path = git.repo_path(&file).unwrap_or_default();
    let head = match &rev {
        Some(r) => {
            git.repo
                .rev_parse_single(r.as_str())
                .map_err(|_| fatal(&format!("bad revision '{r}'")))?
                .object()?
                .peel_to_commit()?
                .id
        }
        None => git.repo.head_id().map_err(|_| fatal("no such ref: HEAD"))?.detach(),
    };
    let known = git.repo.find_commit(head)?.tree()?.lookup_entry_by_path(&path)?.is_some();
    if !known {
        let at = rev.as_deref().unwrap_or("HEAD");
        return Err(fatal(&format!("no such path '{path}' in {at}")));
    }
    // Without a revision, the work tree's file is blamed: lines not yet
    // committed are "Not Committed Yet".
    let start = match &rev {
        Some(_) => gix::blame::Start::Commit(head),
        None => {
            let contents = git
                .read_worktree(&path)
                .ok_or_else(|| fatal(&format!("no such path '{file}' in HEAD")))?;
            gix::blame::Start::Contents { first_suspect: head, contents: contents.into() }
        }
    };
    let ranges = match opts.range {
        Some((a, b)) => gix::blame::BlameRanges::from_one_based_inclusive_range(a..=b)
            .map_err(|e| fatal(&e.to_string()))?,
        None => gix::blame::BlameRanges::default(),
    };
    let options = gix::blame::Options {
        diff_algorithm: git.repo.diff_algorithm()?,
        ranges,
        since: None,
        rewrites: None,
        debug_track_path: false,
    };
    let cache = git.repo.commit_graph_if_enabled()?;
    let mut resources = git.repo.diff_resource_cache_for_tree_diff()?;
    let odb = git.repo.objects.clone();
    let outcome = {
        let watched = Watched { odb: &odb, git: RefCell::new(&mut *git) };
        gix::blame::file(&watched, start, cache, &mut resources, BStr::new(&path), options)
    }
    .map_err(|e| fatal(&e.to_string()))?;
    print(git, &outcome, &opts)
}

/// `-L a,b` (or `-L a`): one-based and inclusive.
fn line_range(spec: &str) -> Result<(u32, u32), super::repo::Fail> {
    let bad = || fatal(&format!("invalid -L argument '{spec}'"));
    let (a, b) = spec.split_once(',').unwrap_or((spec, ""));
    let a: u32 = a.parse().map_err(|_| bad())?;
    let b: u32 = if b.is_empty() { u32::MAX } else { b.parse().map_err(|_| bad())? };
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// The author of a commit as blame shows it.
struct Author {
    name: String,
    time: String,
    /// A root commit: shown with `^`, as git shows the boundary.
    boundary: bool,
}

fn print(git: &mut Git, outcome: &gix::blame::Outcome, opts: &Options) -> GitResult {
    let mut authors: HashMap<gix::ObjectId, Author> = HashMap::new();
    for e in &outcome.entries {
        git.check(0);
        if authors.contains_key(&e.commit_id) {
            continue;
        }
        let author = if e.commit_id.is_null() {
            let now = gix::date::Time::now_utc();
            Author {
                name: if opts.email {
                    "<not.committed.yet>".into()
                } else {
                    "Not Committed Yet".into()
                },
                time: now.format_or_unix(gix::date::time::format::ISO8601),
                boundary: false,
            }
        } else {
            let commit = git.repo.find_commit(e.commit_id)?;
            let sig = commit.author()?;
            Author {
                name: if opts.email { format!("<{}>", sig.email) } else { sig.name.to_string() },
                time: sig
                    .time()
                    .unwrap_or_default()
                    .format_or_unix(gix::date::time::format::ISO8601),
                boundary: commit.parent_ids().next().is_none(),
            }
        };
        authors.insert(e.commit_id, author);
    }
    let lines: Vec<&[u8]> = outcome.blob.lines_with_terminator().collect();
    let last = outcome.entries.iter().map(|e| e.range_in_blamed_file().end).max().unwrap_or(0);
    let digits = last.to_string().len();
    let widest = authors.values().map(|a| a.name.chars().count()).max().unwrap_or(0);
    // git's default: one more than the repository's abbreviation (7 in a
    // small one, more in a large one), so that a boundary's `^` still
    // leaves it whole.
    let abbrev = outcome
        .entries
        .iter()
        .find(|e| !e.commit_id.is_null())
        .and_then(|e| e.commit_id.attach(&git.repo).shorten().ok())
        .map_or(7, |p| p.hex_len());
    let hex_len = if opts.long { 40 } else { (abbrev + 1).min(40) };
    for e in &outcome.entries {
        let a = &authors[&e.commit_id];
        let hex = e.commit_id.to_hex().to_string();
        let id = if a.boundary && !opts.long {
            format!("^{}", &hex[..hex_len - 1])
        } else if a.boundary {
            format!("^{hex}")
        } else {
            hex[..hex_len].to_owned()
        };
        for n in e.range_in_blamed_file() {
            let text = lines.get(n).copied().unwrap_or_default();
            let mut line = if opts.no_author {
                format!("{id} {:>digits$}) ", n + 1)
            } else {
                let pad = widest - a.name.chars().count();
                format!("{id} ({}{} {} {:>digits$}) ", a.name, " ".repeat(pad), a.time, n + 1)
            }
            .into_bytes();
            line.extend_from_slice(text);
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            git.print(line);
        }
    }
    Ok(0)
}

/// The object database as blame reads it: every object read is a point
/// where the command's cancellation, memory and CPU time are checked.
struct Watched<'a> {
    odb: &'a gix::OdbHandle,
    git: RefCell<&'a mut Git>,
}

impl Watched<'_> {
    fn check(&self, more: usize) {
        let mut git = self.git.borrow_mut();
        git.check(more);
        // Blame reads few objects and diffs whole files between them: each
        // read charges the time since the last.
        git.charge_cpu();
    }
}

impl gix::objs::Find for Watched<'_> {
    fn try_find<'b>(
        &self,
        id: &gix::hash::oid,
        buffer: &'b mut Vec<u8>,
    ) -> gix::error::Result<Option<gix::objs::Data<'b>>> {
        self.check(0);
        let found = self.odb.try_find(id, buffer)?;
        if let Some(d) = &found {
            self.check(d.data.len());
        }
        Ok(found)
    }
}

impl gix::objs::FindHeader for Watched<'_> {
    fn try_header(&self, id: &gix::hash::oid) -> gix::error::Result<Option<gix::objs::Header>> {
        self.check(0);
        self.odb.try_header(id)
    }
}
