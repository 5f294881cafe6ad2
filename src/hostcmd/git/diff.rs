//! Change lists (HEAD ↔ index ↔ work tree, tree ↔ tree) and how they are
//! printed: unified patches like git's (`diff --git` headers, `index`
//! lines, `\ No newline at end of file`, `Binary files … differ`),
//! `--stat`, `--numstat`, `--name-only`, `--name-status`. Hunk headers
//! carry git's default function-name context (the nearest line above the
//! hunk that starts with a letter, `_` or `$`).
//!
//! Over 600 lines: collecting changes and printing them in git's formats
//! are one pipeline over the same `Change` list, kept together.

use super::repo::{Fail, Git, GitResult, fatal, usage};
use gix::bstr::BString;
use gix::diff::blob::unified_diff::{ConsumeHunk, ContextSize, DiffLineKind, HunkHeader};
use gix::diff::blob::{Algorithm, Diff, InternedInput, UnifiedDiff};
use gix::status::index_worktree::Item as WorktreeItem;
use gix::status::plumbing::index_as_worktree::{Change as WtChange, EntryStatus};
use std::collections::BTreeMap;

/// Where a side of a change is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Blob(gix::ObjectId),
    Worktree,
}

/// One changed path: `status` is git's letter (A, M, D, R, C, T, U).
#[derive(Debug, Clone)]
pub struct Change {
    pub status: char,
    pub old_path: String,
    pub path: String,
    pub old: Option<(Side, u32)>,
    pub new: Option<(Side, u32)>,
}

/// HEAD ↔ index, index ↔ work tree, and the untracked paths (collapsed to
/// directories like `git status`, ending in `/`).
pub struct Changes {
    pub staged: Vec<Change>,
    pub unstaged: Vec<Change>,
    pub untracked: Vec<String>,
}

fn tree_mode(m: gix::objs::tree::EntryMode) -> u32 {
    u32::from(m.value())
}

pub fn collect(git: &Git, untracked: bool) -> Result<Changes, Fail> {
    let mode = if untracked {
        gix::status::UntrackedFiles::Collapsed
    } else {
        gix::status::UntrackedFiles::None
    };
    // gix's status panics ("arc conversion always works") when the object
    // store cannot be reopened as a shared one: a `.git/objects` swapped
    // for a file while git runs. Checked here first; a swap in the window
    // left is a panic that `command::run` turns into an error.
    git.repo.objects.clone().into_arc()?;
    let iter = git
        .repo
        .status(gix::progress::Discard)?
        .untracked_files(mode)
        .index_worktree_submodules(None)
        .into_iter(Vec::<BString>::new())?;
    let mut c = Changes { staged: Vec::new(), unstaged: Vec::new(), untracked: Vec::new() };
    for item in iter {
        match item? {
            gix::status::Item::TreeIndex(t) => {
                use gix::diff::index::ChangeRef as T;
                let change = match t {
                    T::Addition { location, entry_mode, id, .. } => Change {
                        status: 'A',
                        old_path: location.to_string(),
                        path: location.to_string(),
                        old: None,
                        new: Some((Side::Blob(id.into_owned()), entry_mode.bits())),
                    },
                    T::Deletion { location, entry_mode, id, .. } => Change {
                        status: 'D',
                        old_path: location.to_string(),
                        path: location.to_string(),
                        old: Some((Side::Blob(id.into_owned()), entry_mode.bits())),
                        new: None,
                    },
                    T::Modification {
                        location,
                        previous_entry_mode,
                        previous_id,
                        entry_mode,
                        id,
                        ..
                    } => Change {
                        status: if (previous_entry_mode.bits() ^ entry_mode.bits()) & 0o170000 != 0
                        {
                            'T'
                        } else {
                            'M'
                        },
                        old_path: location.to_string(),
                        path: location.to_string(),
                        old: Some((
                            Side::Blob(previous_id.into_owned()),
                            previous_entry_mode.bits(),
                        )),
                        new: Some((Side::Blob(id.into_owned()), entry_mode.bits())),
                    },
                    T::Rewrite {
                        source_location,
                        source_entry_mode,
                        source_id,
                        location,
                        entry_mode,
                        id,
                        copy,
                        ..
                    } => Change {
                        status: if copy { 'C' } else { 'R' },
                        old_path: source_location.to_string(),
                        path: location.to_string(),
                        old: Some((Side::Blob(source_id.into_owned()), source_entry_mode.bits())),
                        new: Some((Side::Blob(id.into_owned()), entry_mode.bits())),
                    },
                };
                c.staged.push(change);
            }
            gix::status::Item::IndexWorktree(w) => match w {
                WorktreeItem::Modification { entry, rela_path, status, .. } => {
                    let path = rela_path.to_string();
                    let old = Some((Side::Blob(entry.id), entry.mode.bits()));
                    let wt_mode = git.worktree_mode(&path).unwrap_or(entry.mode.bits());
                    let (letter, old, new) = match status {
                        EntryStatus::Change(WtChange::Removed) => ('D', old, None),
                        EntryStatus::Change(WtChange::Modification { .. }) => {
                            ('M', old, Some((Side::Worktree, wt_mode)))
                        }
                        EntryStatus::Change(WtChange::Type { .. }) => {
                            ('T', old, Some((Side::Worktree, wt_mode)))
                        }
                        EntryStatus::Conflict { .. } => ('U', old, Some((Side::Worktree, wt_mode))),
                        EntryStatus::IntentToAdd => ('A', None, Some((Side::Worktree, wt_mode))),
                        EntryStatus::Change(WtChange::SubmoduleModification(_))
                        | EntryStatus::NeedsUpdate(_) => continue,
                    };
                    c.unstaged.push(Change {
                        status: letter,
                        old_path: path.clone(),
                        path,
                        old,
                        new,
                    });
                }
                WorktreeItem::DirectoryContents { entry, .. } => {
                    if matches!(entry.status, gix::dir::entry::Status::Untracked) {
                        let mut p = entry.rela_path.to_string();
                        if matches!(entry.disk_kind, Some(gix::dir::entry::Kind::Directory)) {
                            p.push('/');
                        }
                        c.untracked.push(p);
                    }
                }
                WorktreeItem::Rewrite { .. } => {}
            },
        }
    }
    for list in [&mut c.staged, &mut c.unstaged] {
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list.dedup_by(|a, b| a.path == b.path && a.status == b.status);
    }
    c.untracked.sort();
    Ok(c)
}

/// Changes between two trees (either may be the empty tree), blobs only.
pub fn tree_changes(
    git: &Git,
    old: Option<gix::ObjectId>,
    new: gix::ObjectId,
) -> Result<Vec<Change>, Fail> {
    let repo = &git.repo;
    let new_tree = repo.find_tree(new)?;
    let old_tree = match old {
        Some(id) => repo.find_tree(id)?,
        None => repo.empty_tree(),
    };
    let mut out = Vec::new();
    for ch in repo.diff_tree_to_tree(Some(&old_tree), Some(&new_tree), None)? {
        use gix::object::tree::diff::ChangeDetached as D;
        let c = match ch {
            D::Addition { location, entry_mode, id, .. } if !entry_mode.is_tree() => Change {
                status: 'A',
                old_path: location.to_string(),
                path: location.to_string(),
                old: None,
                new: Some((Side::Blob(id), tree_mode(entry_mode))),
            },
            D::Deletion { location, entry_mode, id, .. } if !entry_mode.is_tree() => Change {
                status: 'D',
                old_path: location.to_string(),
                path: location.to_string(),
                old: Some((Side::Blob(id), tree_mode(entry_mode))),
                new: None,
            },
            D::Modification { location, previous_entry_mode, previous_id, entry_mode, id }
                if !entry_mode.is_tree() =>
            {
                Change {
                    status: if previous_entry_mode.kind() != entry_mode.kind() { 'T' } else { 'M' },
                    old_path: location.to_string(),
                    path: location.to_string(),
                    old: Some((Side::Blob(previous_id), tree_mode(previous_entry_mode))),
                    new: Some((Side::Blob(id), tree_mode(entry_mode))),
                }
            }
            D::Rewrite {
                source_location,
                source_entry_mode,
                source_id,
                entry_mode,
                id,
                location,
                copy,
                ..
            } if !entry_mode.is_tree() => Change {
                status: if copy { 'C' } else { 'R' },
                old_path: source_location.to_string(),
                path: location.to_string(),
                old: Some((Side::Blob(source_id), tree_mode(source_entry_mode))),
                new: Some((Side::Blob(id), tree_mode(entry_mode))),
            },
            _ => continue,
        };
        out.push(c);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// How changes are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Patch,
    Stat,
    NumStat,
    NameOnly,
    NameStatus,
    Quiet,
}

/// Options shared by `diff`, `show` and `log -p`.
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    pub format: Format,
    pub context: u32,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self { format: Format::Patch, context: 3 }
    }
}

impl DiffOptions {
    /// Takes a diff option; false when `a` is not one.
    pub fn parse(&mut self, a: &str) -> bool {
        match a {
            "-p" | "-u" | "--patch" => self.format = Format::Patch,
            "--stat" => self.format = Format::Stat,
            "--numstat" => self.format = Format::NumStat,
            "--name-only" => self.format = Format::NameOnly,
            "--name-status" => self.format = Format::NameStatus,
            "-s" | "--no-patch" | "--quiet" => self.format = Format::Quiet,
            "--no-color" | "--color=never" | "--no-ext-diff" | "--no-textconv"
            | "--find-renames" | "-M" | "--no-renames" => {}
            _ if a.starts_with("--unified=") => {
                self.context = a["--unified=".len()..].parse().unwrap_or(3)
            }
            _ if a.starts_with("-U") && a.len() > 2 => self.context = a[2..].parse().unwrap_or(3),
            _ if a.starts_with("--stat=") => self.format = Format::Stat,
            _ => return false,
        }
        true
    }
}

fn load(git: &mut Git, side: &Side, path: &str) -> Result<Vec<u8>, Fail> {
    match side {
        Side::Blob(id) => {
            // Its size first: a small compressed object may inflate to
            // gigabytes.
            let size = git.repo.find_header(*id)?.size() as usize;
            git.check(size);
            Ok(git.repo.find_object(*id)?.data.clone())
        }
        Side::Worktree => Ok(git.read_worktree(path).unwrap_or_default()),
    }
}

fn object_id(git: &Git, side: &Side, data: &[u8]) -> Result<gix::ObjectId, Fail> {
    match side {
        Side::Blob(id) => Ok(*id),
        Side::Worktree => {
            Ok(gix::objs::compute_hash(git.repo.object_hash(), gix::objs::Kind::Blob, data)?)
        }
    }
}

fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(8000)].contains(&0)
}

/// Collects hunks in git's text form.
struct Hunks<'a> {
    text: Vec<u8>,
    /// The old file's lines, for the function-name context.
    old_lines: Vec<&'a [u8]>,
}

impl<'a> Hunks<'a> {
    /// git's default `xfuncname`: the nearest line above old line `start`
    /// (1-based) that begins with a letter, `_` or `$`, at most 80 bytes,
    /// without trailing white space.
    fn function_context(&self, start: u32) -> Option<&'a [u8]> {
        let above = (start as usize).saturating_sub(1).min(self.old_lines.len());
        let line: &'a [u8] = self.old_lines[..above].iter().rev().copied().find(|l| {
            l.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b'$')
        })?;
        let line = &line[..line.len().min(80)];
        let end = line.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(0, |i| i + 1);
        Some(&line[..end])
    }
}

impl ConsumeHunk for Hunks<'_> {
    type Out = Vec<u8>;

    fn consume_hunk(
        &mut self,
        h: HunkHeader,
        lines: &[(DiffLineKind, &[u8])],
    ) -> std::io::Result<()> {
        let range = |start: u32, len: u32| match len {
            0 => format!("{},0", start.saturating_sub(1)),
            1 => start.to_string(),
            n => format!("{start},{n}"),
        };
        self.text.extend_from_slice(
            format!(
                "@@ -{} +{} @@",
                range(h.before_hunk_start, h.before_hunk_len),
                range(h.after_hunk_start, h.after_hunk_len)
            )
            .as_bytes(),
        );
        if let Some(func) = self.function_context(h.before_hunk_start) {
            self.text.push(b' ');
            self.text.extend_from_slice(func);
        }
        self.text.push(b'\n');
        for (kind, line) in lines {
            self.text.push(kind.to_prefix() as u8);
            self.text.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                self.text.extend_from_slice(b"\n\\ No newline at end of file\n");
            }
        }
        Ok(())
    }

    fn finish(self) -> Vec<u8> {
        self.text
    }
}

/// (insertions, deletions, hunks text).
fn line_diff(old: &[u8], new: &[u8], context: u32) -> (u32, u32, Vec<u8>) {
    let input = InternedInput::new(old, new);
    let mut diff = Diff::compute(Algorithm::Histogram, &input);
    diff.postprocess_lines(&input);
    let text = UnifiedDiff::new(
        &diff,
        &input,
        Hunks { text: Vec::new(), old_lines: old.split_inclusive(|c| *c == b'\n').collect() },
        ContextSize::symmetrical(context),
    )
    .consume()
    .unwrap_or_default();
    (diff.count_additions(), diff.count_removals(), text)
}

/// One file's line in `--stat`: its name, its added and deleted lines (none
/// for a binary file) and its old and new sizes.
type StatLine = (String, Option<(u32, u32)>, (usize, usize));

/// Prints `changes`; returns whether there were any.
pub fn render(git: &mut Git, changes: &[Change], opts: DiffOptions) -> Result<bool, Fail> {
    let mut stats: Vec<StatLine> = Vec::new();
    for c in changes {
        let old_data = match &c.old {
            Some((side, _)) => load(git, side, &c.old_path)?,
            None => Vec::new(),
        };
        let new_data = match &c.new {
            Some((side, _)) => load(git, side, &c.path)?,
            None => Vec::new(),
        };
        let binary = is_binary(&old_data) || is_binary(&new_data);
        let display = if c.old_path != c.path {
            format!("{} => {}", c.old_path, c.path)
        } else {
            c.path.clone()
        };
        match opts.format {
            Format::Quiet => {}
            Format::NameOnly => git.print(format!("{}\n", c.path)),
            Format::NameStatus if matches!(c.status, 'R' | 'C') => {
                let score = if c.old.as_ref().map(|o| &o.0) == c.new.as_ref().map(|n| &n.0) {
                    100
                } else {
                    50
                };
                git.print(format!("{}{:03}\t{}\t{}\n", c.status, score, c.old_path, c.path))
            }
            Format::NameStatus => git.print(format!("{}\t{}\n", c.status, c.path)),
            Format::NumStat | Format::Stat => {
                let counts = if binary {
                    None
                } else {
                    Some(line_diff(&old_data, &new_data, 0)).map(|(a, d, _)| (a, d))
                };
                stats.push((display, counts, (old_data.len(), new_data.len())));
            }
            Format::Patch => patch(git, c, &old_data, &new_data, binary, opts.context)?,
        }
    }
    match opts.format {
        Format::NumStat => {
            for (name, counts, _) in &stats {
                match counts {
                    Some((a, d)) => git.print(format!("{a}\t{d}\t{name}\n")),
                    None => git.print(format!("-\t-\t{name}\n")),
                }
            }
        }
        Format::Stat if !stats.is_empty() => print_stat(git, &stats),
        _ => {}
    }
    Ok(!changes.is_empty())
}

fn patch(
    git: &mut Git,
    c: &Change,
    old: &[u8],
    new: &[u8],
    binary: bool,
    context: u32,
) -> Result<(), Fail> {
    let mut head = format!("diff --git a/{} b/{}\n", c.old_path, c.path);
    let old_mode = c.old.as_ref().map(|o| o.1);
    let new_mode = c.new.as_ref().map(|n| n.1);
    match (old_mode, new_mode) {
        (None, Some(m)) => head.push_str(&format!("new file mode {m:o}\n")),
        (Some(m), None) => head.push_str(&format!("deleted file mode {m:o}\n")),
        (Some(a), Some(b)) if a != b => head.push_str(&format!("old mode {a:o}\nnew mode {b:o}\n")),
        _ => {}
    }
    if c.old_path != c.path {
        let verb = if c.status == 'C' { "copy" } else { "rename" };
        let similarity = if old == new { 100 } else { 50 };
        head.push_str(&format!(
            "similarity index {similarity}%\n{verb} from {}\n{verb} to {}\n",
            c.old_path, c.path
        ));
    }
    let null = gix::ObjectId::null(git.repo.object_hash());
    let old_id = match &c.old {
        Some((side, _)) => object_id(git, side, old)?,
        None => null,
    };
    let new_id = match &c.new {
        Some((side, _)) => object_id(git, side, new)?,
        None => null,
    };
    if old_id == new_id && old_mode == new_mode && c.old_path == c.path {
        // Only the stat information changed: git prints nothing.
        return Ok(());
    }
    if old_id != new_id {
        let same_mode = match (old_mode, new_mode) {
            (Some(a), Some(b)) if a == b => format!(" {a:o}"),
            _ => String::new(),
        };
        head.push_str(&format!(
            "index {}..{}{same_mode}\n",
            old_id.to_hex_with_len(7),
            new_id.to_hex_with_len(7)
        ));
    }
    let a = if c.old.is_some() { format!("a/{}", c.old_path) } else { "/dev/null".into() };
    let b = if c.new.is_some() { format!("b/{}", c.path) } else { "/dev/null".into() };
    git.print(head);
    if old_id == new_id {
        return Ok(());
    }
    if binary {
        git.print(format!("Binary files {a} and {b} differ\n"));
        return Ok(());
    }
    git.print(format!("--- {a}\n+++ {b}\n"));
    let (_, _, text) = line_diff(old, new, context);
    git.print(text);
    Ok(())
}

fn print_stat(git: &mut Git, stats: &[StatLine]) {
    let name_width = stats.iter().map(|s| s.0.chars().count()).max().unwrap_or(0);
    let max_change = stats.iter().filter_map(|s| s.1.map(|(a, d)| a + d)).max().unwrap_or(0);
    let count_width = stats
        .iter()
        .map(|s| match s.1 {
            Some((a, d)) => (a + d).to_string().len(),
            None => 3,
        })
        .max()
        .unwrap_or(1);
    let graph_width = 80usize.saturating_sub(name_width + count_width + 4).clamp(6, 53) as u32;
    let (mut ins, mut del) = (0, 0);
    for (name, counts, (old_len, new_len)) in stats {
        match counts {
            Some((a, d)) => {
                ins += a;
                del += d;
                let (pa, pd) = if max_change > graph_width {
                    let scale = |n: u32| {
                        if n == 0 {
                            0
                        } else {
                            ((n as u64 * graph_width as u64) / max_change as u64).max(1) as u32
                        }
                    };
                    (scale(*a), scale(*d))
                } else {
                    (*a, *d)
                };
                git.print(format!(
                    " {name:<name_width$} | {:>count_width$} {}{}\n",
                    a + d,
                    "+".repeat(pa as usize),
                    "-".repeat(pd as usize)
                ));
            }
            None => git.print(format!(" {name:<name_width$} | Bin {old_len} -> {new_len} bytes\n")),
        }
    }
    let n = stats.len();
    let mut summary = format!(" {n} file{} changed", if n == 1 { "" } else { "s" });
    if ins > 0 || del == 0 {
        summary.push_str(&format!(", {ins} insertion{}(+)", if ins == 1 { "" } else { "s" }));
    }
    if del > 0 || ins == 0 {
        summary.push_str(&format!(", {del} deletion{}(-)", if del == 1 { "" } else { "s" }));
    }
    git.print(summary + "\n");
}

/// Keeps the changes under one of `paths` (repository paths; empty = all).
pub fn limit(changes: &mut Vec<Change>, paths: &[String]) {
    if paths.is_empty() {
        return;
    }
    let under =
        |p: &str| paths.iter().any(|l| l.is_empty() || p == l || p.starts_with(&format!("{l}/")));
    changes.retain(|c| under(&c.path) || under(&c.old_path));
}

/// `git diff [--cached] [<rev> [<rev>]] [--] [<path>…]`.
pub fn diff(git: &mut Git, args: &[String]) -> GitResult {
    let mut opts = DiffOptions::default();
    let mut cached = false;
    let mut exit_code = false;
    let mut revs: Vec<String> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let mut dashdash = false;
    for a in args {
        if dashdash {
            paths.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--" => dashdash = true,
            "--cached" | "--staged" => cached = true,
            "--exit-code" => exit_code = true,
            "--quiet" => {
                exit_code = true;
                opts.format = Format::Quiet;
            }
            _ if opts.parse(a) => {}
            _ if a.starts_with('-') => return Err(usage(&format!("error: invalid option: {a}"))),
            _ if paths.is_empty() && git.repo.rev_parse_single(a.as_str()).is_ok() => {
                revs.push(a.clone())
            }
            _ if a.contains("..") => revs.push(a.clone()),
            _ if git.repo_path(a).is_some_and(|p| {
                git.read_worktree(&p).is_some() || git.ws.dir().is_dir(git.work_rel.join(&p))
            }) =>
            {
                paths.push(a.clone())
            }
            _ => {
                return Err(fatal(&format!(
                    "ambiguous argument '{a}': unknown revision or path not in the working tree.\n\
                     Use '--' to separate paths from revisions, like this:\n\
                     'git <command> [<revision>...] -- [<file>...]'"
                )));
            }
        }
    }
    let limits: Vec<String> = paths.iter().filter_map(|p| git.repo_path(p)).collect();
    if revs.len() == 1 {
        if let Some((a, b)) = revs[0].split_once("...").or_else(|| revs[0].split_once("..")) {
            revs = vec![
                if a.is_empty() { "HEAD".into() } else { a.to_owned() },
                if b.is_empty() { "HEAD".into() } else { b.to_owned() },
            ];
        }
    }
    let tree_of = |git: &Git, rev: &str| -> Result<gix::ObjectId, Fail> {
        let id =
            git.repo.rev_parse_single(rev).map_err(|_| fatal(&format!("bad revision '{rev}'")))?;
        Ok(id.object()?.peel_to_tree()?.id)
    };
    let mut changes = match (cached, revs.as_slice()) {
        (false, []) => collect(git, false)?.unstaged,
        (true, []) => collect(git, false)?.staged,
        (true, [rev])
            if git.repo.rev_parse_single(rev.as_str()).ok() == git.repo.head_id().ok() =>
        {
            collect(git, false)?.staged
        }
        (false, [rev]) => worktree_against(git, tree_of(git, rev)?)?,
        (false, [a, b]) => tree_changes(git, Some(tree_of(git, a)?), tree_of(git, b)?)?,
        _ => return Err(fatal("this form of 'git diff' is not supported by read-only git")),
    };
    limit(&mut changes, &limits);
    let any = render(git, &changes, opts)?;
    Ok(if exit_code && any { 1 } else { 0 })
}

/// A tree against the work tree (`git diff HEAD`): every path that differs
/// in the index or the work tree, compared with its blob in `tree`.
fn worktree_against(git: &Git, tree: gix::ObjectId) -> Result<Vec<Change>, Fail> {
    let changes = collect(git, false)?;
    let mut paths: BTreeMap<String, ()> = BTreeMap::new();
    for c in changes.staged.iter().chain(&changes.unstaged) {
        paths.insert(c.path.clone(), ());
        paths.insert(c.old_path.clone(), ());
    }
    if let Ok(head) = git.repo.head_tree_id() {
        if head.detach() != tree {
            for c in tree_changes(git, Some(tree), head.detach())? {
                paths.insert(c.path, ());
            }
        }
    }
    let tree = git.repo.find_tree(tree)?;
    let mut out = Vec::new();
    for path in paths.into_keys() {
        let old = tree
            .lookup_entry_by_path(&path)?
            .map(|e| (Side::Blob(e.object_id()), tree_mode(e.mode())));
        let new = git
            .read_worktree(&path)
            .map(|data| (data, git.worktree_mode(&path).unwrap_or(0o100644)));
        let status = match (&old, &new) {
            (None, None) => continue,
            (None, Some(_)) => 'A',
            (Some(_), None) => 'D',
            (Some((Side::Blob(id), _)), Some((data, _))) => {
                if gix::objs::compute_hash(git.repo.object_hash(), gix::objs::Kind::Blob, data)?
                    == *id
                {
                    continue;
                }
                'M'
            }
            _ => 'M',
        };
        out.push(Change {
            status,
            old_path: path.clone(),
            path,
            old,
            new: new.map(|(_, m)| (Side::Worktree, m)),
        });
    }
    Ok(out)
}
