//! What some tools need told differently under WASI than on Linux, decided
//! from their arguments before they start.

/// Whether ripgrep's arguments name a path to search (else it would search
/// the working directory instead of reading stdin).
pub(super) fn rg_has_path(args: &[String]) -> bool {
    // Options that take a value as the next argument.
    const WITH_VALUE: &[&str] = &[
        "-e",
        "--regexp",
        "-f",
        "--file",
        "-g",
        "--glob",
        "--iglob",
        "-t",
        "--type",
        "-T",
        "--type-not",
        "-m",
        "--max-count",
        "-A",
        "--after-context",
        "-B",
        "--before-context",
        "-C",
        "--context",
        "-j",
        "--threads",
        "-M",
        "--max-columns",
        "-d",
        "--max-depth",
        "-E",
        "--encoding",
        "--type-add",
        "-r",
        "--replace",
        "--sort",
        "--sortr",
        "--color",
        "--colors",
        "--max-filesize",
        "--path-separator",
        "--context-separator",
        "--field-match-separator",
        "--field-context-separator",
        "--pre",
        "--pre-glob",
        "--engine",
        "--dfa-size-limit",
        "--regex-size-limit",
    ];
    let mut positional = Vec::new();
    let mut pattern_given = false;
    let mut files_mode = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            positional.extend(args[i + 1..].iter().map(String::as_str));
            break;
        }
        if a == "--files" || a == "--type-list" {
            files_mode = true;
        }
        if matches!(a, "-e" | "--regexp" | "-f" | "--file")
            || a.starts_with("--regexp=")
            || a.starts_with("--file=")
        {
            pattern_given = true;
        }
        if WITH_VALUE.contains(&a) {
            i += 2;
            continue;
        }
        if a.starts_with('-') && a != "-" {
            i += 1;
            continue;
        }
        positional.push(a);
        i += 1;
    }
    let paths = if pattern_given || files_mode {
        positional.len()
    } else {
        positional.len().saturating_sub(1)
    };
    paths > 0 || files_mode
}

#[cfg(test)]
mod tests {
    use super::rg_has_path;

    fn has(args: &[&str]) -> bool {
        rg_has_path(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn ripgrep_path_detection() {
        assert!(!has(&["foo"]));
        assert!(!has(&["-n", "-i", "foo"]));
        assert!(!has(&["-e", "foo"]));
        assert!(!has(&["-A", "2", "foo"]));
        assert!(has(&["foo", "src"]));
        assert!(has(&["-e", "foo", "src"]));
        assert!(has(&["--files"]));
        assert!(has(&["foo", "-"]));
        assert!(has(&["-g", "*.rs", "foo", "."]));
    }
}
