//! `git grep`: the tracked files of the work tree (under the working
//! directory, or the pathspecs given) searched for a pattern, printed as
//! git prints them (`path:line`, `-n`, `-l`, `-c`, `Binary file … matches`).
//! Patterns are git's basic regular expressions by default (`-E` extended,
//! `-F` fixed strings), run by the `regex` crate (linear time: no
//! backreferences). Every file is read through the workspace capability,
//! within the command's memory budget.

use super::repo::{Fail, Git, GitResult, usage};

#[derive(Default)]
struct Opts {
    line_number: bool,
    ignore_case: bool,
    files_with_matches: bool,
    files_without_match: bool,
    count: bool,
    word: bool,
    invert: bool,
    fixed: bool,
    extended: bool,
    quiet: bool,
    no_filename: bool,
    binary_skip: bool,
}

/// A basic regular expression (git grep's default) as an extended one: in
/// a BRE `+ ? | ( ) { }` are literal and their escaped forms are operators
/// (GNU), the other way round from an ERE.
fn bre_to_ere(p: &str) -> String {
    let mut out = String::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('+' | '?' | '|' | '(' | ')' | '{' | '}')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push_str("\\\\"),
            },
            '+' | '?' | '|' | '(' | ')' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

pub fn grep(git: &mut Git, args: &[String]) -> GitResult {
    let mut o = Opts::default();
    let mut patterns = Vec::new();
    let mut paths = Vec::new();
    let mut only_paths = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if only_paths {
            paths.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--" => only_paths = true,
            "-e" => match it.next() {
                Some(p) => patterns.push(p.clone()),
                None => return Err(usage("error: switch `e' requires a value")),
            },
            "--line-number" => o.line_number = true,
            "--ignore-case" => o.ignore_case = true,
            "--files-with-matches" | "--name-only" => o.files_with_matches = true,
            "--files-without-match" => o.files_without_match = true,
            "--count" => o.count = true,
            "--word-regexp" => o.word = true,
            "--invert-match" => o.invert = true,
            "--fixed-strings" => o.fixed = true,
            "--extended-regexp" | "--perl-regexp" => o.extended = true,
            "--basic-regexp" => o.extended = false,
            "--quiet" => o.quiet = true,
            "--no-color" | "--color=never" | "--full-name" | "--untracked" | "--cached" => {}
            s if s.starts_with("--") => {
                return Err(usage(&format!(
                    "git grep: option '{s}' is not supported in this sandbox (read-only git)"
                )));
            }
            s if s.starts_with('-') && s.len() > 1 => {
                for c in s[1..].chars() {
                    match c {
                        'n' => o.line_number = true,
                        'i' => o.ignore_case = true,
                        'l' => o.files_with_matches = true,
                        'L' => o.files_without_match = true,
                        'c' => o.count = true,
                        'w' => o.word = true,
                        'v' => o.invert = true,
                        'F' => o.fixed = true,
                        'E' | 'P' => o.extended = true,
                        'G' => o.extended = false,
                        'q' => o.quiet = true,
                        'h' => o.no_filename = true,
                        'H' => o.no_filename = false,
                        'I' => o.binary_skip = true,
                        _ => {
                            return Err(usage(&format!(
                                "git grep: option '-{c}' is not supported in this sandbox \
                                 (read-only git)"
                            )));
                        }
                    }
                }
            }
            _ if patterns.is_empty() => patterns.push(a.clone()),
            _ => paths.push(a.clone()),
        }
    }
    if patterns.is_empty() {
        return Err(usage("fatal: no pattern given"));
    }
    let alternatives: Vec<String> = patterns
        .iter()
        .map(|p| {
            if o.fixed {
                regex::escape(p)
            } else if o.extended {
                p.clone()
            } else {
                bre_to_ere(p)
            }
        })
        .map(|p| if o.word { format!(r"\b(?:{p})\b") } else { format!("(?:{p})") })
        .collect();
    let re = regex::bytes::RegexBuilder::new(&alternatives.join("|"))
        .case_insensitive(o.ignore_case)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Fail {
            msg: format!("fatal: command line, '{}': {e}\n", patterns[0]),
            code: 128,
        })?;
    let mut limits: Vec<String> = paths.iter().filter_map(|p| git.repo_path(p)).collect();
    if limits.is_empty() && !git.prefix.is_empty() {
        limits.push(git.prefix.trim_end_matches('/').to_owned());
    }
    let index = git.repo.index_or_empty()?;
    let mut tracked: Vec<String> = Vec::new();
    for entry in index.entries() {
        let path = entry.path(&index).to_string();
        if tracked.last() == Some(&path) {
            continue;
        }
        let wanted = limits.is_empty()
            || limits.iter().any(|l| {
                l.is_empty()
                    || path == *l
                    || path.starts_with(&format!("{l}/"))
                    || crate::pattern::matches(l, &path)
            });
        if wanted {
            tracked.push(path);
        }
    }
    let mut found = false;
    for path in tracked {
        git.check(0);
        let Some(data) = git.read_worktree(&path) else { continue };
        let shown = git.show_path(&path);
        let binary = data[..data.len().min(8000)].contains(&0);
        let mut count = 0usize;
        let mut lines = String::new();
        for (i, line) in data.split_inclusive(|c| *c == b'\n').enumerate() {
            if i > 0 && i % 4096 == 0 {
                git.check(0);
            }
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            if re.is_match(line) == o.invert {
                continue;
            }
            count += 1;
            if binary || o.quiet || o.files_with_matches || o.files_without_match || o.count {
                continue;
            }
            if !o.no_filename {
                lines.push_str(&shown);
                lines.push(':');
            }
            if o.line_number {
                lines.push_str(&format!("{}:", i + 1));
            }
            lines.push_str(&String::from_utf8_lossy(line));
            lines.push('\n');
        }
        drop(data);
        if count > 0 {
            found = true;
        }
        if o.quiet {
            if found {
                return Ok(0);
            }
            continue;
        }
        if o.files_without_match {
            if count == 0 {
                git.print(format!("{shown}\n"));
            }
        } else if count == 0 {
        } else if o.files_with_matches {
            git.print(format!("{shown}\n"));
        } else if o.count {
            git.print(if o.no_filename {
                format!("{count}\n")
            } else {
                format!("{shown}:{count}\n")
            });
        } else if binary {
            if !o.binary_skip {
                git.print(format!("Binary file {shown} matches\n"));
            }
        } else {
            git.print(lines);
        }
    }
    Ok(if found { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::bre_to_ere;

    #[test]
    fn basic_expressions_become_extended() {
        assert_eq!(bre_to_ere(r"a\|b"), "a|b");
        assert_eq!(bre_to_ere("a+b(c)"), r"a\+b\(c\)");
        assert_eq!(bre_to_ere(r"\(x\)\{2\}"), "(x){2}");
        assert_eq!(bre_to_ere(r"fn \w+"), r"fn \w\+");
    }
}
