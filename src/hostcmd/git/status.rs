//! `git status` (long, `--short`/`-s`, `--porcelain`, `-b`, `-uno`) and
//! `git ls-files`. Paths are shown relative to the working directory, as
//! git does, except in `--porcelain`, which is relative to the top.

use super::diff::{Change, collect};
use super::repo::{Git, GitResult, usage};
use std::collections::BTreeMap;

fn label(status: char) -> &'static str {
    match status {
        'A' => "new file:   ",
        'D' => "deleted:    ",
        'R' => "renamed:    ",
        'C' => "copied:     ",
        'T' => "typechange: ",
        'U' => "both modified:   ",
        _ => "modified:   ",
    }
}

pub fn status(git: &mut Git, args: &[String]) -> GitResult {
    let (mut short, mut porcelain, mut branch, mut untracked) = (false, false, false, true);
    let mut paths = Vec::new();
    for a in args {
        match a.as_str() {
            "-s" | "--short" => short = true,
            "--porcelain" | "--porcelain=v1" => porcelain = true,
            "-b" | "--branch" => branch = true,
            "-sb" | "-bs" => {
                short = true;
                branch = true;
            }
            "-uno" | "--untracked-files=no" => untracked = false,
            "-u"
            | "-uall"
            | "-unormal"
            | "--untracked-files"
            | "--untracked-files=all"
            | "--untracked-files=normal" => {}
            "--long"
            | "--no-renames"
            | "--renames"
            | "--ignore-submodules"
            | "--no-ahead-behind"
            | "--" => {}
            _ if a.starts_with("--porcelain=") => {
                return Err(usage(&format!("fatal: unsupported porcelain version '{}'", &a[12..])));
            }
            _ if a.starts_with('-') => {
                return Err(usage(&format!(
                    "error: unknown option `{}'",
                    a.trim_start_matches('-')
                )));
            }
            _ => paths.push(a.clone()),
        }
    }
    let mut changes = collect(git, untracked)?;
    let limits: Vec<String> = paths.iter().filter_map(|p| git.repo_path(p)).collect();
    super::diff::limit(&mut changes.staged, &limits);
    super::diff::limit(&mut changes.unstaged, &limits);
    if !limits.is_empty() {
        changes.untracked.retain(|u| {
            let u = u.trim_end_matches('/');
            limits.iter().any(|l| {
                l.is_empty()
                    || u == l
                    || u.starts_with(&format!("{l}/"))
                    || l.starts_with(&format!("{u}/"))
            })
        });
    }
    let head_branch = git.branch()?;
    let unborn = git.unborn()?;
    if short || porcelain {
        let show = |git: &Git, p: &str| if porcelain { p.to_owned() } else { git.show_path(p) };
        if branch {
            let line = match (&head_branch, unborn) {
                (Some(b), true) => format!("## No commits yet on {b}\n"),
                (Some(b), false) => format!("## {b}\n"),
                (None, _) => "## HEAD (no branch)\n".to_owned(),
            };
            git.print(line);
        }
        // path → (X, Y, original path for renames)
        let mut rows: BTreeMap<String, (char, char, Option<String>)> = BTreeMap::new();
        for c in &changes.staged {
            let orig = (c.old_path != c.path).then(|| c.old_path.clone());
            rows.insert(c.path.clone(), (c.status, ' ', orig));
        }
        for c in &changes.unstaged {
            let row = rows.entry(c.path.clone()).or_insert((' ', ' ', None));
            if c.status == 'U' {
                *row = ('U', 'U', None);
            } else {
                row.1 = c.status;
            }
        }
        let mut text = String::new();
        for (path, (x, y, orig)) in rows {
            let shown = match orig {
                Some(o) => format!("{} -> {}", show(git, &o), show(git, &path)),
                None => show(git, &path),
            };
            text.push_str(&format!("{x}{y} {shown}\n"));
        }
        for u in &changes.untracked {
            text.push_str(&format!("?? {}\n", show(git, u)));
        }
        git.print(text);
        return Ok(0);
    }
    let mut text = match &head_branch {
        Some(b) => format!("On branch {b}\n"),
        None => {
            let id = git.repo.head_id()?;
            format!("HEAD detached at {}\n", id.to_hex_with_len(7))
        }
    };
    if unborn {
        text.push_str("\nNo commits yet\n\n");
    }
    let section = |text: &mut String, title: &str, hints: &[&str], list: &[Change], git: &Git| {
        text.push_str(title);
        for h in hints {
            text.push_str(&format!("  ({h})\n"));
        }
        for c in list {
            let shown = if c.old_path != c.path {
                format!("{} -> {}", git.show_path(&c.old_path), git.show_path(&c.path))
            } else {
                git.show_path(&c.path)
            };
            text.push_str(&format!("\t{}{shown}\n", label(c.status)));
        }
        text.push('\n');
    };
    if !changes.staged.is_empty() {
        let hint = if unborn {
            "use \"git rm --cached <file>...\" to unstage"
        } else {
            "use \"git restore --staged <file>...\" to unstage"
        };
        section(&mut text, "Changes to be committed:\n", &[hint], &changes.staged, git);
    }
    if !changes.unstaged.is_empty() {
        let add = if changes.unstaged.iter().any(|c| c.status == 'D') {
            "use \"git add/rm <file>...\" to update what will be committed"
        } else {
            "use \"git add <file>...\" to update what will be committed"
        };
        section(
            &mut text,
            "Changes not staged for commit:\n",
            &[add, "use \"git restore <file>...\" to discard changes in working directory"],
            &changes.unstaged,
            git,
        );
    }
    if !changes.untracked.is_empty() {
        text.push_str(
            "Untracked files:\n  (use \"git add <file>...\" to include in what will be \
             committed)\n",
        );
        for u in &changes.untracked {
            text.push_str(&format!("\t{}\n", git.show_path(u)));
        }
        text.push('\n');
    }
    let trailer = match (
        changes.staged.is_empty(),
        changes.unstaged.is_empty(),
        changes.untracked.is_empty(),
    ) {
        (false, _, _) => "",
        (true, false, _) => {
            "no changes added to commit (use \"git add\" and/or \"git commit -a\")\n"
        }
        (true, true, false) => {
            "nothing added to commit but untracked files present (use \"git add\" to track)\n"
        }
        (true, true, true) if unborn => {
            "nothing to commit (create/copy files and use \"git add\" to track)\n"
        }
        (true, true, true) if !untracked => "nothing to commit (use -u to show untracked files)\n",
        (true, true, true) => "nothing to commit, working tree clean\n",
    };
    text.push_str(trailer);
    git.print(text);
    Ok(0)
}

/// `git ls-files [--cached] [<path>…]`: index entries under the working
/// directory, shown relative to it.
pub fn ls_files(git: &mut Git, args: &[String]) -> GitResult {
    let mut paths = Vec::new();
    for a in args {
        match a.as_str() {
            "-c" | "--cached" | "--" | "--full-name" | "-z" => {}
            _ if a.starts_with('-') => {
                return Err(usage(&format!(
                    "git ls-files: option '{a}' is not supported in this sandbox (read-only git)"
                )));
            }
            _ => paths.push(a.clone()),
        }
    }
    let nul = args.iter().any(|a| a == "-z");
    let full = args.iter().any(|a| a == "--full-name");
    let mut limits: Vec<String> = paths.iter().filter_map(|p| git.repo_path(p)).collect();
    if limits.is_empty() && !git.prefix.is_empty() {
        limits.push(git.prefix.trim_end_matches('/').to_owned());
    }
    let index = git.repo.index_or_empty()?;
    let mut text = String::new();
    let mut last = String::new();
    for entry in index.entries() {
        let path = entry.path(&index).to_string();
        if path == last {
            continue;
        }
        if !limits.is_empty()
            && !limits
                .iter()
                .any(|l| l.is_empty() || path == *l || path.starts_with(&format!("{l}/")))
        {
            continue;
        }
        let shown = if full { path.clone() } else { git.show_path(&path) };
        text.push_str(&shown);
        text.push(if nul { '\0' } else { '\n' });
        last = path;
    }
    git.print(text);
    Ok(0)
}
