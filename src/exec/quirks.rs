//! What some tools need told differently under WASI than on Linux, decided
//! from their arguments before they start.

/// CPython under WASI starts in `/`, and resolves a relative script path
/// against it before any Python code runs. For the bundled python3 the
/// server puts the start-up hook in the skeleton on `PYTHONPATH` (it changes
/// into `$PWD`; `fs/sitecustomize.py`), and makes a relative script path
/// absolute, passing the name it was given in `WES_PYTHON_ARGV0` for the
/// hook to put back in `sys.argv[0]`. `argv[0]` is the command name.
pub(super) fn python_start(argv: &mut [String], cwd: &str, env: &mut Vec<(String, String)>) {
    let hook = crate::fs::scratch::PYTHON_HOOK_DIR;
    let path = match env.iter().position(|(k, _)| k == "PYTHONPATH") {
        Some(i) => format!("{hook}:{}", env.remove(i).1),
        None => hook.to_owned(),
    };
    env.push(("PYTHONPATH".into(), path));
    let Some(at) = python_script_index(argv) else { return };
    let script = &argv[at];
    if script.starts_with('/') {
        return;
    }
    let absolute = format!("{}/{script}", cwd.trim_end_matches('/'));
    env.retain(|(k, _)| k != "WES_PYTHON_ARGV0");
    env.push(("WES_PYTHON_ARGV0".into(), std::mem::replace(&mut argv[at], absolute)));
}

/// Where the script path is in a python command line: the first argument
/// that is not an option, unless `-c`, `-m` or `-` names the program first.
fn python_script_index(argv: &[String]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        if a == "--" {
            return (i + 1 < argv.len()).then_some(i + 1);
        }
        if a == "-" {
            return None;
        }
        if let Some(long) = a.strip_prefix("--") {
            // --check-hash-based-pycs MODE; the others take no value.
            i += if long == "check-hash-based-pycs" { 2 } else { 1 };
            continue;
        }
        let Some(flags) = a.strip_prefix('-') else { return Some(i) };
        // Short flags may be grouped (`-uB`); `c` and `m` end the options
        // (their program follows), `W` and `X` take the rest or the next.
        let mut takes_next = false;
        for (k, f) in flags.char_indices() {
            match f {
                'c' | 'm' => return None,
                'W' | 'X' => {
                    takes_next = k + 1 == flags.len();
                    break;
                }
                _ => {}
            }
        }
        i += if takes_next { 2 } else { 1 };
    }
    None
}

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
    use super::{python_script_index, python_start, rg_has_path};

    fn has(args: &[&str]) -> bool {
        rg_has_path(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn python_script_found_after_options() {
        let at = |args: &[&str]| {
            let argv: Vec<String> =
                std::iter::once("python3").chain(args.iter().copied()).map(String::from).collect();
            python_script_index(&argv)
        };
        assert_eq!(at(&["s.py", "-c"]), Some(1));
        assert_eq!(at(&["-u", "-B", "s.py"]), Some(3));
        assert_eq!(at(&["-uB", "-W", "ignore", "-X", "dev", "s.py"]), Some(6));
        assert_eq!(at(&["-Wignore", "-Xdev", "s.py"]), Some(3));
        assert_eq!(at(&["--check-hash-based-pycs", "never", "s.py"]), Some(3));
        assert_eq!(at(&["--", "-s.py"]), Some(2));
        assert_eq!(at(&["-c", "print(1)", "s.py"]), None);
        assert_eq!(at(&["-uc", "print(1)"]), None);
        assert_eq!(at(&["-m", "json.tool", "f.json"]), None);
        assert_eq!(at(&["-", "s.py"]), None);
        assert_eq!(at(&["-u"]), None);
    }

    #[test]
    fn python_relative_script_made_absolute() {
        let mut argv: Vec<String> = ["python3", "-u", "tools/s.py", "a"].map(String::from).into();
        let mut env = vec![("PYTHONPATH".to_owned(), "lib".to_owned())];
        python_start(&mut argv, "/w/sub/", &mut env);
        assert_eq!(argv[2], "/w/sub/tools/s.py");
        assert!(env.contains(&("WES_PYTHON_ARGV0".into(), "tools/s.py".into())));
        let hook = crate::fs::scratch::PYTHON_HOOK_DIR;
        assert!(env.contains(&("PYTHONPATH".into(), format!("{hook}:lib"))));
        let mut argv: Vec<String> = ["python3", "/abs/s.py"].map(String::from).into();
        let mut env = Vec::new();
        python_start(&mut argv, "/w", &mut env);
        assert_eq!(argv[1], "/abs/s.py");
        assert_eq!(env, vec![("PYTHONPATH".to_owned(), hook.to_owned())]);
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
