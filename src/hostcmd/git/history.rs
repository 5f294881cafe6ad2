//! Commands that read commits and references: `log`, `show`, `rev-parse`,
//! `rev-list`, `branch` and `tag` (listing), `remote` (`-v`, `get-url`),
//! `config --get`. Commit dates are printed in the author's own time zone,
//! as git does; no decorations (git omits them when not on a terminal).
//!
//! Over 600 lines: eight small subcommands that share the revision and
//! reference helpers at the top; one file each would mostly repeat them.

use super::diff::{DiffOptions, Format, render, tree_changes};
use super::repo::{Fail, Git, GitResult, fatal, usage};
use gix::bstr::ByteSlice;
use gix::prelude::ObjectIdExt;

fn unsupported(what: &str) -> Fail {
    Fail {
        msg: format!("git: '{what}' is not supported in this sandbox (read-only git)\n"),
        code: 1,
    }
}

/// How commits are printed.
#[derive(Debug, Clone)]
enum Pretty {
    Medium,
    Short,
    Full,
    Oneline,
    /// A `--format` string; `true` when each entry ends with a newline
    /// (`tformat:`, the default for `--format`).
    Format(String, bool),
}

impl Pretty {
    fn parse(spec: &str) -> Self {
        match spec {
            "oneline" => Pretty::Oneline,
            "short" => Pretty::Short,
            "full" | "fuller" => Pretty::Full,
            "medium" => Pretty::Medium,
            _ => match spec.strip_prefix("format:") {
                Some(f) => Pretty::Format(f.to_owned(), false),
                None => {
                    Pretty::Format(spec.strip_prefix("tformat:").unwrap_or(spec).to_owned(), true)
                }
            },
        }
    }
}

/// Options shared by `log` and `show`.
struct View {
    pretty: Pretty,
    date: String,
    diff: Option<DiffOptions>,
}

impl View {
    /// Takes a display option; false when `a` is not one.
    fn parse(&mut self, a: &str) -> bool {
        if a == "--oneline" {
            self.pretty = Pretty::Oneline;
        } else if let Some(spec) =
            a.strip_prefix("--pretty=").or_else(|| a.strip_prefix("--format="))
        {
            self.pretty = Pretty::parse(spec);
        } else if let Some(d) = a.strip_prefix("--date=") {
            self.date = d.to_owned();
        } else if matches!(
            a,
            "--decorate"
                | "--no-decorate"
                | "--abbrev-commit"
                | "--no-color"
                | "--color=never"
                | "--no-abbrev-commit"
        ) {
        } else {
            let mut d = self.diff.unwrap_or_default();
            if !d.parse(a) {
                return false;
            }
            self.diff = Some(d);
        }
        true
    }
}

fn format_date(t: gix::date::Time, style: &str) -> String {
    use gix::date::time::format;
    match style {
        "short" => t.format_or_unix(format::SHORT),
        "iso" | "iso8601" => t.format_or_unix(format::ISO8601),
        "iso-strict" | "iso8601-strict" => t.format_or_unix(format::ISO8601_STRICT),
        "rfc" | "rfc2822" => t.format_or_unix(format::GIT_RFC2822),
        "unix" => t.seconds.to_string(),
        "raw" => t.format_or_unix(format::RAW),
        "relative" => relative(t.seconds),
        _ => t.format_or_unix(format::DEFAULT),
    }
}

/// `3 days ago`, the way git rounds.
fn relative(secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(secs);
    let d = (now - secs).max(0);
    let (n, unit) = match d {
        0..90 => (d, "second"),
        90..5400 => ((d + 30) / 60, "minute"),
        5400..129_600 => ((d + 1800) / 3600, "hour"),
        129_600..1_209_600 => ((d + 43_200) / 86_400, "day"),
        1_209_600..5_184_000 => ((d + 302_400) / 604_800, "week"),
        5_184_000..31_536_000 => ((d + 1_296_000) / 2_592_000, "month"),
        _ => ((d + 15_768_000) / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// The parts of one commit that formats use.
struct Shown {
    id: gix::ObjectId,
    short: String,
    tree: gix::ObjectId,
    parents: Vec<gix::ObjectId>,
    author: (String, String, gix::date::Time),
    committer: (String, String, gix::date::Time),
    message: String,
}

impl Shown {
    fn load(git: &Git, id: gix::ObjectId) -> Result<Self, Fail> {
        let commit = git.repo.find_commit(id)?;
        let sig = |s: gix::actor::SignatureRef<'_>| {
            (s.name.to_string(), s.email.to_string(), s.time().unwrap_or_default())
        };
        Ok(Shown {
            id,
            short: id.attach(&git.repo).shorten_or_id().to_string(),
            tree: commit.tree_id()?.detach(),
            parents: commit.parent_ids().map(|p| p.detach()).collect(),
            author: sig(commit.author()?),
            committer: sig(commit.committer()?),
            message: commit.message_raw_sloppy().to_str_lossy().into_owned(),
        })
    }

    /// The first paragraph on one line.
    fn subject(&self) -> String {
        self.message
            .trim_start()
            .split("\n\n")
            .next()
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn body(&self) -> String {
        match self.message.trim_start().split_once("\n\n") {
            Some((_, b)) => b.trim_end().to_owned() + "\n",
            None => String::new(),
        }
    }

    fn short_of(git: &Git, id: gix::ObjectId) -> String {
        id.attach(&git.repo).shorten_or_id().to_string()
    }

    fn placeholders(&self, git: &Git, fmt: &str, date: &str) -> String {
        let mut out = String::new();
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(d) = chars.next() else { break };
            let person =
                |p: &(String, String, gix::date::Time), k: Option<char>| -> Option<String> {
                    Some(match k? {
                        'n' => p.0.clone(),
                        'e' => p.1.clone(),
                        'd' => format_date(p.2, date),
                        'D' => format_date(p.2, "rfc"),
                        'r' => relative(p.2.seconds),
                        't' => p.2.seconds.to_string(),
                        'i' => format_date(p.2, "iso"),
                        'I' => format_date(p.2, "iso-strict"),
                        's' => format_date(p.2, "short"),
                        _ => return None,
                    })
                };
            let v = match d {
                'H' => self.id.to_string(),
                'h' => self.short.clone(),
                'T' => self.tree.to_string(),
                't' => Self::short_of(git, self.tree),
                'P' => self.parents.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" "),
                'p' => self
                    .parents
                    .iter()
                    .map(|p| Self::short_of(git, *p))
                    .collect::<Vec<_>>()
                    .join(" "),
                's' => self.subject(),
                'b' => self.body(),
                'B' => self.message.trim_end().to_owned() + "\n",
                'n' => "\n".into(),
                '%' => "%".into(),
                'd' | 'D' => String::new(),
                'a' => person(&self.author, chars.next()).unwrap_or_default(),
                'c' => person(&self.committer, chars.next()).unwrap_or_default(),
                other => format!("%{other}"),
            };
            out.push_str(&v);
        }
        out
    }

    fn header(&self, git: &Git, view: &View) -> String {
        let indented: String =
            self.message.trim_end().lines().map(|l| format!("    {l}\n")).collect();
        let merge = if self.parents.len() > 1 {
            format!(
                "Merge: {}\n",
                self.parents.iter().map(|p| Self::short_of(git, *p)).collect::<Vec<_>>().join(" ")
            )
        } else {
            String::new()
        };
        let who = |p: &(String, String, gix::date::Time)| format!("{} <{}>", p.0, p.1);
        match &view.pretty {
            Pretty::Oneline => format!("{} {}\n", self.short, self.subject()),
            Pretty::Format(f, newline) => {
                self.placeholders(git, f, &view.date) + if *newline { "\n" } else { "" }
            }
            Pretty::Short => format!(
                "commit {}\n{merge}Author: {}\n\n    {}\n",
                self.id,
                who(&self.author),
                self.subject()
            ),
            Pretty::Full => format!(
                "commit {}\n{merge}Author: {}\nCommit: {}\n\n{indented}",
                self.id,
                who(&self.author),
                who(&self.committer)
            ),
            Pretty::Medium => format!(
                "commit {}\n{merge}Author: {}\nDate:   {}\n\n{indented}",
                self.id,
                who(&self.author),
                format_date(self.author.2, &view.date)
            ),
        }
    }
}

/// Prints one commit and, when asked, its changes against its first parent.
fn print_commit(
    git: &mut Git,
    shown: &Shown,
    view: &View,
    first: bool,
    paths: &[String],
) -> Result<(), Fail> {
    let separate = !first && !matches!(view.pretty, Pretty::Oneline | Pretty::Format(..));
    if separate {
        git.print("\n");
    }
    let header = shown.header(git, view);
    git.print(header);
    if let Some(opts) = view.diff.filter(|d| d.format != Format::Quiet) {
        if shown.parents.len() > 1 {
            return Ok(());
        }
        let mut changes = tree_changes(
            git,
            shown
                .parents
                .first()
                .map(|p| git.repo.find_commit(*p).and_then(|c| c.tree_id()).map(|t| t.detach()))
                .transpose()?,
            shown.tree,
        )?;
        super::diff::limit(&mut changes, paths);
        if !changes.is_empty() && !matches!(view.pretty, Pretty::Oneline | Pretty::Format(..)) {
            git.print("\n");
        }
        render(git, &changes, opts)?;
    }
    Ok(())
}

/// Splits arguments into revisions and paths the way git does: revisions
/// first, paths after `--` or once an argument names no revision but a path.
fn revs_and_paths(git: &Git, args: &[String]) -> Result<(Vec<String>, Vec<String>), Fail> {
    let (mut revs, mut paths) = (Vec::new(), Vec::new());
    let mut dashdash = false;
    for a in args {
        if dashdash {
            paths.extend(git.repo_path(a));
        } else if a == "--" {
            dashdash = true;
        } else if paths.is_empty()
            && (a.contains("..")
                || a.starts_with('^')
                || git.repo.rev_parse_single(a.as_str()).is_ok())
        {
            revs.push(a.clone());
        } else if git.repo_path(a).is_some_and(|p| {
            git.read_worktree(&p).is_some() || git.ws.dir().is_dir(git.work_rel.join(&p))
        }) {
            paths.extend(git.repo_path(a));
        } else {
            return Err(fatal(&format!(
                "ambiguous argument '{a}': unknown revision or path not in the working tree.\n\
                 Use '--' to separate paths from revisions, like this:\n\
                 'git <command> [<revision>...] -- [<file>...]'"
            )));
        }
    }
    Ok((revs, paths))
}

fn resolve(git: &Git, rev: &str) -> Result<gix::ObjectId, Fail> {
    let id = git.repo.rev_parse_single(rev).map_err(|_| fatal(&format!("bad revision '{rev}'")))?;
    Ok(id.object()?.peel_to_commit()?.id)
}

/// Tips and hidden commits for `a..b`, `^a`, `a b`; HEAD when none.
fn walk_range(
    git: &Git,
    revs: &[String],
) -> Result<(Vec<gix::ObjectId>, Vec<gix::ObjectId>), Fail> {
    let (mut tips, mut hidden) = (Vec::new(), Vec::new());
    for r in revs {
        if let Some((a, b)) = r.split_once("..") {
            let b = b.trim_start_matches('.');
            hidden.push(resolve(git, if a.is_empty() { "HEAD" } else { a })?);
            tips.push(resolve(git, if b.is_empty() { "HEAD" } else { b })?);
        } else if let Some(a) = r.strip_prefix('^') {
            hidden.push(resolve(git, a)?);
        } else {
            tips.push(resolve(git, r)?);
        }
    }
    if tips.is_empty() {
        if git.unborn()? {
            let b = git.branch()?.unwrap_or_else(|| "HEAD".into());
            return Err(fatal(&format!("your current branch '{b}' does not have any commits yet")));
        }
        tips.push(resolve(git, "HEAD")?);
    }
    Ok((tips, hidden))
}

/// Whether a commit changes one of `paths` against its first parent.
fn touches(git: &Git, shown: &Shown, paths: &[String]) -> Result<bool, Fail> {
    if paths.is_empty() {
        return Ok(true);
    }
    let parent_tree = match shown.parents.first() {
        Some(p) => Some(git.repo.find_commit(*p)?.tree_id()?.detach()),
        None => None,
    };
    let mut changes = tree_changes(git, parent_tree, shown.tree)?;
    super::diff::limit(&mut changes, paths);
    Ok(!changes.is_empty())
}

pub fn log(git: &mut Git, args: &[String]) -> GitResult {
    let mut view = View { pretty: Pretty::Medium, date: "default".into(), diff: None };
    let (mut max, mut skip, mut reverse, mut first_parent, mut no_merges) =
        (None, 0usize, false, false, false);
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            rest.extend_from_slice(&args[i - 1..]);
            break;
        }
        if a == "-n" {
            max = args.get(i).and_then(|v| v.parse().ok());
            i += 1;
        } else if let Some(n) = a
            .strip_prefix("--max-count=")
            .or_else(|| a.strip_prefix("-n"))
            .filter(|n| !n.is_empty())
        {
            max = Some(n.parse().map_err(|_| usage(&format!("fatal: '{n}': not an integer")))?);
        } else if let Some(n) =
            a.strip_prefix('-').filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        {
            max = n.parse().ok();
        } else if let Some(n) = a.strip_prefix("--skip=") {
            skip = n.parse().unwrap_or(0);
        } else if a == "--reverse" {
            reverse = true;
        } else if a == "--first-parent" {
            first_parent = true;
        } else if a == "--no-merges" {
            no_merges = true;
        } else if view.parse(a) {
        } else if a.starts_with('-') {
            return Err(fatal(&format!("unrecognized argument: {a}")));
        } else {
            rest.push(a.clone());
        }
    }
    let (revs, paths) = revs_and_paths(git, &rest)?;
    let (tips, hidden) = walk_range(git, &revs)?;
    let mut platform = git
        .repo
        .rev_walk(tips)
        .sorting(gix::revision::walk::Sorting::ByCommitTime(Default::default()))
        .with_hidden(hidden);
    if first_parent {
        platform = platform.first_parent_only();
    }
    let mut selected = Vec::new();
    let mut skipped = 0;
    for info in platform.all()? {
        let info = info?;
        if max.is_some_and(|m| selected.len() >= m) {
            break;
        }
        let shown = Shown::load(git, info.id)?;
        if no_merges && shown.parents.len() > 1 || !touches(git, &shown, &paths)? {
            continue;
        }
        if skipped < skip {
            skipped += 1;
            continue;
        }
        selected.push(shown);
    }
    if reverse {
        selected.reverse();
    }
    for (n, shown) in selected.iter().enumerate() {
        print_commit(git, shown, &view, n == 0, &paths)?;
    }
    Ok(0)
}

pub fn show(git: &mut Git, args: &[String]) -> GitResult {
    let mut view =
        View { pretty: Pretty::Medium, date: "default".into(), diff: Some(DiffOptions::default()) };
    let mut rest = Vec::new();
    for a in args {
        if !view.parse(a) {
            if a.starts_with('-') && a != "--" {
                return Err(fatal(&format!("unrecognized argument: {a}")));
            }
            rest.push(a.clone());
        }
    }
    // `REV:path` prints a file (or lists a directory) as stored.
    if let [spec] = rest.as_slice() {
        if let Some((rev, path)) = spec.split_once(':') {
            let data = stored(git, spec, rev, path)?;
            git.print(data);
            return Ok(0);
        }
    }
    let (revs, paths) = revs_and_paths(git, &rest)?;
    let revs = if revs.is_empty() { vec!["HEAD".to_owned()] } else { revs };
    for (n, rev) in revs.iter().enumerate() {
        let id = resolve(git, rev)?;
        let shown = Shown::load(git, id)?;
        print_commit(git, &shown, &view, n == 0, &paths)?;
    }
    Ok(0)
}

/// `git show REV:path`: a blob's bytes, or a tree's listing.
fn stored(git: &Git, spec: &str, rev: &str, path: &str) -> Result<Vec<u8>, Fail> {
    let rev = if rev.is_empty() { "HEAD" } else { rev };
    let tree = git
        .repo
        .rev_parse_single(rev)
        .map_err(|_| fatal(&format!("invalid object name '{rev}'.")))?
        .object()?
        .peel_to_tree()?;
    let repo_path = match path.strip_prefix("./") {
        Some(p) => git.repo_path(p).unwrap_or_default(),
        None => path.trim_matches('/').to_owned(),
    };
    let listing = |tree: &gix::Tree<'_>| -> String {
        tree.iter()
            .filter_map(|e| e.ok())
            .map(|e| format!("{}{}\n", e.filename(), if e.mode().is_tree() { "/" } else { "" }))
            .collect()
    };
    if repo_path.is_empty() {
        return Ok(format!("tree {spec}\n\n{}", listing(&tree)).into_bytes());
    }
    let entry = tree
        .lookup_entry_by_path(&repo_path)?
        .ok_or_else(|| fatal(&format!("path '{repo_path}' does not exist in '{rev}'")))?;
    let is_tree = entry.mode().is_tree();
    let object = entry.object()?;
    Ok(if is_tree {
        format!("tree {spec}\n\n{}", listing(&object.into_tree())).into_bytes()
    } else {
        object.data.clone()
    })
}

pub fn rev_parse(git: &mut Git, args: &[String]) -> GitResult {
    let (mut abbrev_ref, mut short, mut verify, mut quiet, mut full_name) =
        (false, None::<usize>, false, false, false);
    let mut text = String::new();
    for a in args {
        match a.as_str() {
            "--show-toplevel" => text.push_str(&format!("{}\n", git.visible_top)),
            "--git-dir" if git.prefix.is_empty() => text.push_str(".git\n"),
            "--git-dir" | "--absolute-git-dir" | "--git-common-dir" => {
                text.push_str(&format!("{}/.git\n", git.visible_top.trim_end_matches('/')))
            }
            "--is-inside-work-tree" => text.push_str("true\n"),
            "--is-inside-git-dir" | "--is-bare-repository" | "--is-shallow-repository" => {
                text.push_str("false\n")
            }
            "--show-prefix" => text.push_str(&format!("{}\n", git.prefix)),
            "--show-cdup" => {
                text.push_str(&format!("{}\n", "../".repeat(git.prefix.matches('/').count())))
            }
            "--abbrev-ref" | "--abbrev-ref=strict" | "--abbrev-ref=loose" => abbrev_ref = true,
            "--symbolic-full-name" => full_name = true,
            "--short" => short = Some(7),
            "--verify" => verify = true,
            "-q" | "--quiet" => quiet = true,
            "--" => {}
            _ if a.starts_with("--short=") => {
                short = Some(a[8..].parse().unwrap_or(7).clamp(4, 40))
            }
            _ if a.starts_with('-') => text.push_str(&format!("{a}\n")),
            rev => {
                let Ok(id) = git.repo.rev_parse_single(rev) else {
                    git.print(text);
                    if verify {
                        return Err(if quiet {
                            Fail { msg: String::new(), code: 1 }
                        } else {
                            fatal("Needed a single revision")
                        });
                    }
                    return Err(Fail {
                        msg: format!(
                            "{rev}\n\
                             fatal: ambiguous argument '{rev}': unknown revision or path not in \
                             the working tree.\n\
                             Use '--' to separate paths from revisions, like this:\n\
                             'git <command> [<revision>...] -- [<file>...]'\n"
                        ),
                        code: 128,
                    });
                };
                let line = if abbrev_ref || full_name {
                    let name = if matches!(rev, "HEAD" | "@") {
                        git.repo.head_name()?.map(|n| {
                            if full_name {
                                n.as_bstr().to_string()
                            } else {
                                n.shorten().to_string()
                            }
                        })
                    } else {
                        git.repo.find_reference(rev).ok().map(|r| {
                            if full_name {
                                r.name().as_bstr().to_string()
                            } else {
                                r.name().shorten().to_string()
                            }
                        })
                    };
                    name.unwrap_or_else(|| if full_name { String::new() } else { rev.to_owned() })
                } else if let Some(n) = short {
                    id.to_hex_with_len(n).to_string()
                } else {
                    id.to_string()
                };
                if !(full_name && line.is_empty()) {
                    text.push_str(&format!("{line}\n"));
                }
            }
        }
    }
    git.print(text);
    Ok(0)
}

pub fn rev_list(git: &mut Git, args: &[String]) -> GitResult {
    let (mut count, mut max) = (false, None::<usize>);
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        match a.as_str() {
            "--count" => count = true,
            "-n" => {
                max = args.get(i).and_then(|v| v.parse().ok());
                i += 1;
            }
            _ if a.starts_with("--max-count=") => max = a[12..].parse().ok(),
            _ if a.starts_with('-')
                && a[1..].chars().all(|c| c.is_ascii_digit())
                && a.len() > 1 =>
            {
                max = a[1..].parse().ok()
            }
            _ if a.starts_with("--") && a != "--" => {
                return Err(fatal(&format!("unrecognized argument: {a}")));
            }
            _ => rest.push(a.clone()),
        }
    }
    let (revs, paths) = revs_and_paths(git, &rest)?;
    if revs.is_empty() {
        return Err(usage("usage: git rev-list [<options>] <commit>... [--] [<path>...]"));
    }
    let (tips, hidden) = walk_range(git, &revs)?;
    let walk = git
        .repo
        .rev_walk(tips)
        .sorting(gix::revision::walk::Sorting::ByCommitTime(Default::default()))
        .with_hidden(hidden);
    let mut ids = Vec::new();
    for info in walk.all()? {
        if max.is_some_and(|m| ids.len() >= m) {
            break;
        }
        let info = info?;
        if !paths.is_empty() && !touches(git, &Shown::load(git, info.id)?, &paths)? {
            continue;
        }
        ids.push(info.id);
    }
    let text = if count {
        format!("{}\n", ids.len())
    } else {
        ids.iter().map(|id| format!("{id}\n")).collect()
    };
    git.print(text);
    Ok(0)
}

pub fn branch(git: &mut Git, args: &[String]) -> GitResult {
    let (mut local, mut remote, mut verbose) = (true, false, false);
    for a in args {
        match a.as_str() {
            "--show-current" => {
                let b = git.branch()?.map(|b| format!("{b}\n")).unwrap_or_default();
                git.print(b);
                return Ok(0);
            }
            "-a" | "--all" => remote = true,
            "-r" | "--remotes" => {
                remote = true;
                local = false;
            }
            "-v" | "-vv" | "--verbose" => verbose = true,
            "-l" | "--list" | "--no-color" | "--color=never" | "--no-column" => {}
            _ => return Err(unsupported(&format!("branch {a}"))),
        }
    }
    let current = git.branch()?;
    let refs = git.repo.references()?;
    let mut rows: Vec<(String, gix::ObjectId, bool)> = Vec::new();
    if local {
        for r in refs.local_branches()? {
            let mut r = r?;
            let name = r.name().shorten().to_string();
            let id = r.peel_to_id()?.detach();
            rows.push((name, id, false));
        }
    }
    if remote {
        for r in refs.remote_branches()? {
            let mut r = r?;
            let short = r.name().shorten().to_string();
            let name = if local { format!("remotes/{short}") } else { short };
            let id = r.peel_to_id()?.detach();
            rows.push((name, id, true));
        }
    }
    let mut text = String::new();
    if current.is_none() && local {
        if let Ok(id) = git.repo.head_id() {
            text.push_str(&format!("* (HEAD detached at {})\n", id.to_hex_with_len(7)));
        }
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (name, id, is_remote) in rows {
        let marker =
            if !is_remote && current.as_deref() == Some(name.as_str()) { "* " } else { "  " };
        if verbose {
            let shown = Shown::load(git, id)?;
            text.push_str(&format!("{marker}{name:<width$} {} {}\n", shown.short, shown.subject()));
        } else {
            text.push_str(&format!("{marker}{name}\n"));
        }
    }
    git.print(text);
    Ok(0)
}

pub fn tag(git: &mut Git, args: &[String]) -> GitResult {
    let mut pattern = None;
    for a in args {
        match a.as_str() {
            "-l" | "--list" => {}
            _ if a.starts_with('-') => return Err(unsupported(&format!("tag {a}"))),
            _ if args.iter().any(|x| x == "-l" || x == "--list") => pattern = Some(a.clone()),
            _ => return Err(unsupported("tag <name>")),
        }
    }
    let mut names = Vec::new();
    for r in git.repo.references()?.tags()? {
        let name = r?.name().shorten().to_string();
        let keep = match &pattern {
            Some(p) => crate::pattern::matches(p, &name),
            None => true,
        };
        if keep {
            names.push(name);
        }
    }
    names.sort();
    let text: String = names.iter().map(|n| format!("{n}\n")).collect();
    git.print(text);
    Ok(0)
}

pub fn remote(git: &mut Git, args: &[String]) -> GitResult {
    let names: Vec<String> = git.repo.remote_names().iter().map(|n| n.to_string()).collect();
    let url = |git: &Git, name: &str, dir: gix::remote::Direction| -> Option<String> {
        let remote = git.repo.find_remote(name).ok()?;
        remote.url(dir).map(|u| u.to_bstring().to_string())
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {
            let text: String = names.iter().map(|n| format!("{n}\n")).collect();
            git.print(text);
        }
        ["-v"] | ["--verbose"] => {
            let mut text = String::new();
            for n in &names {
                if let Some(u) = url(git, n, gix::remote::Direction::Fetch) {
                    text.push_str(&format!("{n}\t{u} (fetch)\n"));
                }
                if let Some(u) = url(git, n, gix::remote::Direction::Push)
                    .or_else(|| url(git, n, gix::remote::Direction::Fetch))
                {
                    text.push_str(&format!("{n}\t{u} (push)\n"));
                }
            }
            git.print(text);
        }
        ["get-url", name] => match url(git, name, gix::remote::Direction::Fetch) {
            Some(u) => git.print(format!("{u}\n")),
            None => return Err(Fail { msg: format!("error: No such remote '{name}'\n"), code: 2 }),
        },
        [sub, ..] => return Err(unsupported(&format!("remote {sub}"))),
    }
    Ok(0)
}

pub fn config(git: &mut Git, args: &[String]) -> GitResult {
    let keys: Vec<&String> =
        args.iter().filter(|a| !matches!(a.as_str(), "--get" | "--local" | "--default")).collect();
    if args.iter().any(|a| a.starts_with('-') && !matches!(a.as_str(), "--get" | "--local"))
        || keys.len() != 1
    {
        return Err(unsupported(&format!("config {}", args.join(" "))));
    }
    match git.repo.config_snapshot().string(keys[0].as_str()) {
        Some(v) => {
            git.print(format!("{v}\n"));
            Ok(0)
        }
        None => Ok(1),
    }
}
