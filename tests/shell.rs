//! The shell against real bash: a corpus of agent-style command lines run
//! in a fixture repository and compared with output recorded from
//! `/bin/bash` (tests/shell/corpus.expected), plus tests of the paths bash
//! cannot record for us (escapes, cancellation, streaming, limits).
//! The corpus is grouped in categories (`#### category: NAME` lines), and
//! the comparison prints a pass rate for each.
//! Over 600 lines: the fixture repository and its comparison harness are
//! one unit with the tests that use them.
//!
//! Re-record after changing the corpus or the fixture:
//! `cargo test --test shell -- --ignored record_corpus`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasm_exec_server::config::Limits;
use wasm_exec_server::exec::{CommandSpec, Executor, Sink, Stdin, StreamKind};
use wasm_exec_server::fs::Workspace;

const CORPUS: &str = include_str!("shell/corpus.txt");
const EXPECTED: &str = "tests/shell/corpus.expected";

/// The fixture repository: a small Rust project with docs, data, logs,
/// scripts, a hidden directory, a file name with spaces and a symlink.
fn fixture(root: &Path) {
    let mut log = String::new();
    for i in 1..=40 {
        let level = if i % 10 == 0 {
            "ERROR"
        } else if i % 7 == 0 {
            "WARN"
        } else {
            "INFO"
        };
        log.push_str(&format!("2024-01-01 12:00:{:02} {level} request {i} handled\n", i));
    }
    let files: &[(&str, &str)] = &[
        (
            "README.md",
            "# Fixture\n\nHello world, this is a fixture repository.\n\n\
             ## Usage\n\nRun `cargo build`.\n",
        ),
        (
            "Cargo.toml",
            "[package]\nname = \"fixture\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n",
        ),
        (
            "src/main.rs",
            "use fixture::greet;\n\n\
             fn main() {\n    // TODO: parse args\n    println!(\"{}\", greet(\"world\"));\n}\n",
        ),
        (
            "src/lib.rs",
            "pub mod util;\n\n\
             pub fn greet(name: &str) -> String {\n    format!(\"Hello, {name}!\")\n}\n\n\
             pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
        ),
        ("src/util/mod.rs", "pub mod strings;\n"),
        (
            "src/util/strings.rs",
            "// TODO: more helpers\npub fn shout(s: &str) -> String {\n    s.to_uppercase()\n}\n",
        ),
        (
            "tests/integration.rs",
            "#[test]\nfn adds() {\n    assert_eq!(fixture::add(2, 2), 4);\n}\n",
        ),
        ("docs/guide.md", "# Guide\n\nStep one.\nStep two.\n"),
        ("docs/notes with space.txt", "notes line\n"),
        (
            "scripts/build.sh",
            "#!/bin/bash\n# build script\necho \"building with $# args\"\nexit 0\n",
        ),
        ("scripts/check.py", "print('ok')\n"),
        (
            "data/users.csv",
            "name,age,city\nalice,30,Paris\nbob,25,Berlin\ncarol,35,Paris\ndave,28,Rome\n",
        ),
        ("data/config.json", "{\n  \"name\": \"fixture\",\n  \"debug\": true\n}\n"),
        (".gitignore", "target/\n*.log\n"),
        (".hidden/secret.txt", "hidden\n"),
        ("empty.txt", ""),
    ];
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write fixture");
    }
    std::fs::create_dir_all(root.join("logs")).expect("mkdir logs");
    std::fs::write(root.join("logs/app.log"), log).expect("write log");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("scripts/build.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("README.md", root.join("link_to_readme")).expect("symlink");
}

/// One corpus case.
struct Case {
    name: String,
    /// What it exercises: set by the `#### category: NAME` line before it.
    category: String,
    script: String,
}

/// The cases of the corpus: `## name` starts one, `#### category: NAME`
/// sets the category of the cases after it and ends the one before.
fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    let mut category = "uncategorized".to_owned();
    let mut in_case = false;
    for line in CORPUS.lines() {
        if let Some(rest) = line.strip_prefix("#### ") {
            let name = rest.strip_prefix("category:").expect("a `#### category: NAME` line");
            category = name.trim().to_owned();
            in_case = false;
        } else if let Some(name) = line.strip_prefix("## ") {
            out.push(Case {
                name: name.trim().to_owned(),
                category: category.clone(),
                script: String::new(),
            });
            in_case = true;
        } else if let Some(c) = out.last_mut().filter(|_| in_case) {
            c.script.push_str(line);
            c.script.push('\n');
        }
    }
    for c in &mut out {
        let trimmed = c.script.trim_end_matches('\n').to_owned();
        c.script = trimmed;
    }
    out
}

/// What a command line printed and returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Outcome {
    stdout: String,
    stderr: String,
    status: i32,
}

fn env_for(root: &str) -> Vec<(String, String)> {
    [
        ("HOME", root),
        ("PATH", "/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
        ("USER", "sandbox"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn normalize(s: &[u8], root: &str) -> String {
    String::from_utf8_lossy(s).replace(root, "$ROOT")
}

/// A fresh fixture in a temporary directory; returns it and its canonical root.
fn fresh_fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("repo");
    std::fs::create_dir(&root).expect("mkdir repo");
    fixture(&root);
    let root = std::fs::canonicalize(&root).expect("canonical root");
    (tmp, root)
}

/// Runs a line through our shell on a workspace rooted at `root`.
async fn run_ours(root: &Path, cwd: &str, line: &str, stdin: Stdin) -> Outcome {
    let workspace =
        Workspace::open_in(root, None, root.parent().expect("fixture dir")).expect("workspace");
    let root_s = workspace.visible_root().to_owned();
    let exec = Executor { runtime: common::runtime(), workspace, limits: Limits::default() };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let cwd = if cwd.is_empty() { root_s.clone() } else { format!("{root_s}/{cwd}") };
    let spec = CommandSpec {
        argv: vec!["bash".into(), "-c".into(), line.into()],
        arg0: None,
        env: env_for(&root_s),
        cwd,
        stdin,
        stdout: Sink::Output { tx: tx.clone(), stream: StreamKind::Stdout },
        stderr: Sink::Output { tx, stream: StreamKind::Stderr },
        tty: false,
    };
    let run = async {
        tokio::time::timeout(
            Duration::from_secs(30),
            wasm_exec_server::shell::run_command(&exec, spec),
        )
        .await
        .unwrap_or(-1)
    };
    let collect = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some((kind, data)) = rx.recv().await {
            match kind {
                StreamKind::Stderr => err.extend_from_slice(&data),
                _ => out.extend_from_slice(&data),
            }
        }
        (out, err)
    };
    let (status, (out, err)) = tokio::join!(run, collect);
    Outcome { stdout: normalize(&out, &root_s), stderr: normalize(&err, &root_s), status }
}

/// Host stand-ins for the example guests, so bash can run the same lines.
const SHIMS: &[(&str, &str)] = &[
    ("hello", "echo 'hello from wasm'"),
    (
        "echo-args",
        r#"case "$1" in
--env) shift; for n in "$@"; do printf '%s=%s\n' "$n" "$(printenv "$n")"; done ;;
--pwd) pwd ;;
*) echo "$*" ;;
esac"#,
    ),
    (
        "cat-files",
        concat!(
            r#"[ $# -eq 0 ] && set -- -
s=0
for f in "$@"; do
  if [ "$f" = - ]; then cat; elif [ -r "$f" ] && [ ! -d "$f" ]; then cat "$f"; else "#,
            r#"echo "cat-files: $f: No such file or directory (os error 2)" >&2; s=1; fi
done
exit $s"#
        ),
    ),
    ("exit-code", "echo \"exiting with $1\"; echo 'this goes to stderr' >&2; exit $1"),
];

fn run_bash(root: &Path, line: &str) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let root_s = root.to_str().expect("utf-8 root");
    let shims = root.parent().expect("fixture parent").join("shims");
    std::fs::create_dir_all(&shims).expect("mkdir shims");
    for (name, body) in SHIMS {
        let p = shims.join(name);
        std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).expect("write shim");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod shim");
    }
    let shims_s = shims.to_str().expect("utf-8 shims").to_owned();
    let mut env = env_for(root_s);
    for (k, v) in &mut env {
        if k == "PATH" {
            *v = format!("{shims_s}:{v}");
        }
    }
    let out = std::process::Command::new("/bin/bash")
        .arg0("bash")
        .arg("-c")
        .arg(line)
        .current_dir(root)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run /bin/bash");
    let clean = |b: &[u8]| {
        normalize(b, root_s).replace(&format!("{shims_s}:"), "").replace(&shims_s, "/usr/bin")
    };
    Outcome {
        stdout: clean(&out.stdout),
        stderr: clean(&out.stderr),
        status: out.status.code().unwrap_or(128),
    }
}

#[test]
#[ignore = "records expected output from the host's /bin/bash; run by hand"]
fn record_corpus() {
    let mut lines = String::new();
    for case in cases() {
        let (_tmp, root) = fresh_fixture();
        let outcome = run_bash(&root, &case.script);
        let mut entry = serde_json::to_value(&outcome).expect("json");
        entry["name"] = serde_json::Value::String(case.name.clone());
        lines.push_str(&serde_json::to_string(&entry).expect("json"));
        lines.push('\n');
    }
    std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXPECTED), lines)
        .expect("write expected");
}

fn expected() -> BTreeMap<String, Outcome> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXPECTED))
        .expect("corpus.expected");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            let name = v["name"].as_str().expect("name").to_owned();
            (name, serde_json::from_value(v).expect("outcome"))
        })
        .collect()
}

/// Commands a line runs: simple-command names (literal ones), commands
/// inside `$(…)`, and the command words after `xargs`, `env`, `timeout`,
/// `command`, `exec` and `find -exec`. Function names are left out.
fn commands_in(script: &str) -> Vec<String> {
    use brush_parser::ast;
    fn word(w: &str, out: &mut Vec<String>, funcs: &mut Vec<String>) {
        let Ok(pieces) = brush_parser::word::parse(w, &Default::default()) else { return };
        let mut stack: Vec<brush_parser::word::WordPiece> =
            pieces.into_iter().map(|p| p.piece).collect();
        while let Some(p) = stack.pop() {
            match p {
                brush_parser::word::WordPiece::CommandSubstitution(s)
                | brush_parser::word::WordPiece::BackquotedCommandSubstitution(s) => {
                    program(&s, out, funcs)
                }
                brush_parser::word::WordPiece::DoubleQuotedSequence(inner) => {
                    stack.extend(inner.into_iter().map(|p| p.piece))
                }
                _ => {}
            }
        }
    }
    fn list(l: &ast::CompoundList, out: &mut Vec<String>, funcs: &mut Vec<String>) {
        for item in &l.0 {
            for (_, p) in item.0.iter() {
                for c in &p.seq {
                    command(c, out, funcs);
                }
            }
        }
    }
    fn command(c: &ast::Command, out: &mut Vec<String>, funcs: &mut Vec<String>) {
        match c {
            ast::Command::Simple(s) => {
                let mut words: Vec<String> =
                    s.word_or_name.iter().map(|w| w.value.clone()).collect();
                for item in s
                    .suffix
                    .iter()
                    .flat_map(|x| x.0.iter())
                    .chain(s.prefix.iter().flat_map(|x| x.0.iter()))
                {
                    match item {
                        ast::CommandPrefixOrSuffixItem::Word(w) => words.push(w.value.clone()),
                        ast::CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
                            word(&w.value, out, funcs)
                        }
                        _ => {}
                    }
                }
                for w in &words {
                    word(w, out, funcs);
                }
                let mut runner = true;
                let mut after_exec = false;
                for w in &words {
                    if after_exec || runner {
                        if w.starts_with('-')
                            || w.contains('=')
                            || w.parse::<f64>().is_ok()
                            || w == "{}"
                        {
                            continue;
                        }
                        if !w.contains('$') {
                            out.push(w.clone());
                        }
                        runner =
                            matches!(w.as_str(), "xargs" | "env" | "timeout" | "command" | "exec");
                        after_exec = false;
                    }
                    if w == "-exec" || w == "-execdir" {
                        after_exec = true;
                    }
                }
            }
            ast::Command::Compound(cc, _) => compound(cc, out, funcs),
            ast::Command::Function(f) => {
                funcs.push(f.fname.value.clone());
                compound(&f.body.0, out, funcs);
            }
            ast::Command::ExtendedTest(..) => {}
        }
    }
    fn compound(cc: &ast::CompoundCommand, out: &mut Vec<String>, funcs: &mut Vec<String>) {
        use ast::CompoundCommand as C;
        match cc {
            C::BraceGroup(b) => list(&b.list, out, funcs),
            C::Subshell(s) => list(&s.list, out, funcs),
            C::ForClause(f) => {
                for w in f.values.iter().flatten() {
                    word(&w.value, out, funcs);
                }
                list(&f.body.list, out, funcs);
            }
            C::ArithmeticForClause(f) => list(&f.body.list, out, funcs),
            C::CaseClause(c) => {
                c.cases.iter().filter_map(|i| i.cmd.as_ref()).for_each(|l| list(l, out, funcs))
            }
            C::IfClause(i) => {
                list(&i.condition, out, funcs);
                list(&i.then, out, funcs);
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        list(c, out, funcs);
                    }
                    list(&e.body, out, funcs);
                }
            }
            C::WhileClause(w) | C::UntilClause(w) => {
                list(&w.0, out, funcs);
                list(&w.1.list, out, funcs);
            }
            _ => {}
        }
    }
    fn program(text: &str, out: &mut Vec<String>, funcs: &mut Vec<String>) {
        let opts =
            brush_parser::ParserOptions { enable_extended_globbing: false, ..Default::default() };
        let Ok(p) = brush_parser::Parser::new(std::io::BufReader::new(text.as_bytes()), &opts)
            .parse_program()
        else {
            return;
        };
        for l in &p.complete_commands {
            list(l, out, funcs);
        }
    }
    let (mut out, mut funcs) = (Vec::new(), Vec::new());
    program(script, &mut out, &mut funcs);
    out.retain(|c| !funcs.contains(c));
    out
}

/// Commands the corpus runs on purpose although nothing provides them
/// (`command not found` cases, an alias that a non-interactive bash does
/// not expand) or that a sourced file defines.
const INTENDED_MISSING: &[&str] = &["nosuchcmd", "sourced_fn", "ll", "log", "add"];

/// Bash's builtins: a line that needs one the shell lacks (`pushd`,
/// `dirs`…) is a failure of the shell, not a missing tool, so it counts
/// among the runnable cases.
const BASH_BUILTINS: &str = "alias bg bind break builtin caller cd command compgen complete \
    compopt continue declare dirs disown echo enable eval exec exit export false fc fg getopts \
    hash help history jobs kill let local logout mapfile popd printf pushd pwd read readarray \
    readonly return set shift shopt source suspend test times trap true type typeset ulimit \
    umask unalias unset wait";

/// Whether every command of `script` is a builtin, keyword, function or tool.
fn runnable(script: &str) -> Result<(), Vec<String>> {
    let rt = common::runtime();
    let missing: Vec<String> = commands_in(script)
        .into_iter()
        .filter(|c| {
            let name = wasm_exec_server::exec::command_name(c);
            !(wasm_exec_server::shell::builtins::is_builtin(name)
                || BASH_BUILTINS.split_whitespace().any(|b| b == name)
                || matches!(
                    name,
                    "bash"
                        | "sh"
                        | "for"
                        | "case"
                        | "esac"
                        | "fi"
                        | "done"
                        | "in"
                        | "function"
                        | "[["
                        | "]]"
                        | "(("
                        | "cd"
                        | "select"
                )
                || c.contains('/')
                || wasm_exec_server::hostcmd::is_host_command(name)
                || INTENDED_MISSING.contains(&name)
                || rt.tool(name).is_some())
        })
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(missing) }
}

fn diff(a: &str, b: &str) -> String {
    format!("    expected: {a:?}\n    got:      {b:?}")
}

/// Pass counts of a group of cases: all of them, and those whose
/// commands all exist here.
#[derive(Default)]
struct Tally {
    pass: usize,
    total: usize,
    pass_avail: usize,
    avail: usize,
}

impl Tally {
    fn add(&mut self, ok: bool, available: bool) {
        self.total += 1;
        self.pass += ok as usize;
        if available {
            self.avail += 1;
            self.pass_avail += ok as usize;
        }
    }
}

fn percent(n: usize, of: usize) -> f64 {
    100.0 * n as f64 / of.max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_matches_bash() {
    let expected = expected();
    let cases = cases();
    assert!(cases.len() >= 450, "the corpus must have at least 450 cases");
    let mut names = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name.as_str()), "case {} appears twice", case.name);
        assert!(case.category != "uncategorized", "case {} has no category", case.name);
    }
    let mut all = Tally::default();
    // Categories in the order the corpus first names them.
    let mut by_category: Vec<(String, Tally)> = Vec::new();
    let mut report = String::new();
    let mut failing: Vec<String> = Vec::new();
    let mut missing_tools: BTreeMap<String, usize> = BTreeMap::new();
    let started = Instant::now();
    for case in &cases {
        let Some(want) = expected.get(&case.name) else {
            panic!("case {} has no recorded output; re-record the corpus", case.name);
        };
        let (_tmp, root) = fresh_fixture();
        let got = run_ours(&root, "", &case.script, Stdin::Closed).await;
        let available = runnable(&case.script);
        if let Err(m) = &available {
            for t in m {
                *missing_tools.entry(t.clone()).or_default() += 1;
            }
        }
        let ok = &got == want;
        all.add(ok, available.is_ok());
        let i = match by_category.iter().position(|(c, _)| *c == case.category) {
            Some(i) => i,
            None => {
                by_category.push((case.category.clone(), Tally::default()));
                by_category.len() - 1
            }
        };
        by_category[i].1.add(ok, available.is_ok());
        if !ok {
            failing.push(case.name.clone());
            let tag = match &available {
                Ok(()) => "FAIL".to_owned(),
                Err(m) => format!("fail (needs {})", m.join(" ")),
            };
            report.push_str(&format!(
                "{tag} [{}] {}: {}\n",
                case.category,
                case.name,
                case.script.replace('\n', "⏎")
            ));
            if available.is_ok() {
                if got.stdout != want.stdout {
                    report.push_str(&format!("  stdout\n{}\n", diff(&want.stdout, &got.stdout)));
                }
                if got.stderr != want.stderr {
                    report.push_str(&format!("  stderr\n{}\n", diff(&want.stderr, &got.stderr)));
                }
                if got.status != want.status {
                    report.push_str(&format!(
                        "  status: expected {} got {}\n",
                        want.status, got.status
                    ));
                }
            }
        }
    }
    println!("{report}");
    println!("tools missing (cases): {missing_tools:?}");
    println!("per category: matching/cases; with every tool available: matching/runnable");
    for (category, t) in &by_category {
        println!(
            "  {category:<14} {:>3}/{:<3} ({:5.1}%); with every tool available: {:>3}/{:<3} ({:5.1}%)",
            t.pass,
            t.total,
            percent(t.pass, t.total),
            t.pass_avail,
            t.avail,
            percent(t.pass_avail, t.avail)
        );
    }
    println!(
        "corpus: {}/{} cases match bash ({:.1}%); with every tool available: \
         {}/{} ({:.1}%); {:.1?}",
        all.pass,
        all.total,
        percent(all.pass, all.total),
        all.pass_avail,
        all.avail,
        percent(all.pass_avail, all.avail),
        started.elapsed()
    );
    // The threshold applies only to cases whose commands all exist: the
    // bundled tools (grep, sed, wc…) arrive separately.
    assert!(all.pass_avail * 100 >= all.avail * 90, "pass rate over runnable cases below 90%");
    // Every case that differs from bash is a known difference, listed with
    // its reason in tests/shell/known-differences.txt: a new one fails the
    // test (a regression, or a new case to explain), and a listed one that
    // now matches is reported, to be taken off the list.
    let known = known_differences();
    let new: Vec<&String> = failing.iter().filter(|n| !known.contains(n.as_str())).collect();
    let fixed: Vec<&str> =
        known.iter().copied().filter(|n| !failing.iter().any(|f| f == n)).collect();
    if !fixed.is_empty() {
        println!("known differences that now match bash (take them off the list): {fixed:?}");
    }
    assert!(new.is_empty(), "cases that differ from bash and are not known differences: {new:?}");
}

/// The names in tests/shell/known-differences.txt (`name  # reason` lines).
fn known_differences() -> std::collections::BTreeSet<&'static str> {
    include_str!("shell/known-differences.txt")
        .lines()
        .filter_map(|l| l.split('#').next())
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect()
}

/// Runs a line on a fresh fixture with a deadline.
async fn run_line(line: &str) -> (tempfile::TempDir, PathBuf, Outcome) {
    let (tmp, root) = fresh_fixture();
    let out = run_ours(&root, "", line, Stdin::Closed).await;
    (tmp, root, out)
}

#[tokio::test]
async fn paths_outside_the_workspace_fail_like_bash() {
    let (tmp, root) = fresh_fixture();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir outside");
    std::fs::write(outside.join("secret"), "secret\n").expect("write secret");
    std::os::unix::fs::symlink(&outside, root.join("escape")).expect("symlink out");
    let line = "echo x > ../x; echo \"a $?\"; echo x > /etc/x; echo \"b $?\"; \
                echo x > escape/new; echo \"c $?\"; cat-files < escape/secret; echo \"d $?\"; \
                cd ..; echo \"e $?\"; cd /etc; echo \"f $?\"; test -f escape/secret || echo g";
    let got = run_ours(&root, "", line, Stdin::Closed).await;
    assert_eq!(got.stdout, "a 1\nb 1\nc 1\nd 1\ne 1\nf 1\ng\n", "stderr: {}", got.stderr);
    assert!(got.stderr.contains("bash: line 1: ../x: Permission denied"), "{}", got.stderr);
    assert!(got.stderr.contains("bash: line 1: /etc/x: Permission denied"), "{}", got.stderr);
    assert!(got.stderr.contains("escape/new: Permission denied"), "{}", got.stderr);
    assert!(
        !tmp.path().join("x").exists() && !outside.join("new").exists(),
        "a file was written outside"
    );
}

#[tokio::test]
async fn a_writer_stops_when_its_reader_is_gone() {
    // The tools are compiled before the clock starts (a changed toolset
    // takes a minute on a cold module cache).
    let _ = common::runtime();
    let started = Instant::now();
    let (_t, _r, got) =
        run_line("while true; do echo y; done | { read -r l; echo \"$l\"; }; echo after").await;
    assert_eq!(got.stdout, "y\nafter\n");
    let (_t, _r, got) = run_line("flood 100000000 | { read -r l; echo done; }").await;
    assert_eq!(got.stdout, "done\n", "{}", got.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn dropping_the_future_stops_every_stage() {
    let _ = common::runtime();
    let (_tmp, root) = fresh_fixture();
    for line in [
        "while true; do :; done",
        "spin | cat-files",
        "while true; do echo x; done | cat-files > /dev/null",
        "sleep 100",
    ] {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_millis(300),
            run_ours(&root, "", line, Stdin::Closed),
        )
        .await;
        assert!(r.is_err(), "{line} finished on its own");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{line}: cancellation took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn output_streams_while_a_loop_runs() {
    let (_tmp, root) = fresh_fixture();
    let workspace =
        Workspace::open_in(&root, None, root.parent().expect("fixture dir")).expect("workspace");
    let exec = Executor { runtime: common::runtime(), workspace, limits: Limits::default() };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let spec = CommandSpec {
        argv: vec![
            "/bin/bash".into(),
            "-lc".into(),
            "for i in 1 2 3; do echo $i; sleep 0.3; done".into(),
        ],
        arg0: None,
        env: vec![],
        cwd: exec.workspace.visible_root().to_owned(),
        stdin: Stdin::Closed,
        stdout: Sink::Output { tx: tx.clone(), stream: StreamKind::Stdout },
        stderr: Sink::Output { tx, stream: StreamKind::Stderr },
        tty: false,
    };
    let started = Instant::now();
    let run = wasm_exec_server::shell::run_command(&exec, spec);
    tokio::pin!(run);
    let first = tokio::select! {
        chunk = rx.recv() => chunk,
        _ = &mut run => panic!("finished before any output"),
    };
    assert_eq!(first.map(|c| c.1), Some(bytes::Bytes::from_static(b"1\n")));
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "first line after {:?}",
        started.elapsed()
    );
    assert_eq!(run.await, 0);
}

#[tokio::test]
async fn background_jobs_run_concurrently_and_are_bounded() {
    // `&` runs its list beside the rest of the line; `wait`, `wait $!` and
    // the end of the line wait for it.
    let line = "(sleep 1; echo slow) & (echo fast) & wait; echo waited; \
                false & p=$!; wait $p; echo status=$?; (sleep 0.2; echo late) & echo first";
    let (_t, _r, got) = run_line(line).await;
    assert_eq!(got.stdout, "fast\nslow\nwaited\nstatus=1\nfirst\nlate\n", "{}", got.stderr);
    assert_eq!(got.status, 0);
    // A flood of jobs ends at a named limit, and stops the ones it started.
    let started = Instant::now();
    let (_t, _r, got) = run_line("for i in $(seq 1 100); do sleep 30 & done; echo never").await;
    assert_eq!(got.status, 137, "{}", got.stderr);
    assert!(got.stderr.contains("background job limit reached (64 running"), "{}", got.stderr);
    assert!(!got.stdout.contains("never"));
    assert!(started.elapsed() < Duration::from_secs(25), "the jobs were waited for");
}

#[tokio::test]
async fn limits_stop_runaway_lines() {
    let (_t, _r, got) = run_line("f() { f; }; f; echo unreachable").await;
    assert_eq!(got.status, 1);
    assert!(got.stderr.contains("maximum function nesting level exceeded"), "{}", got.stderr);
    let (_t, _r, got) = run_line("x=a; while true; do x=$x$x; done").await;
    assert_eq!(got.status, 1, "{}", got.stderr);
    assert!(got.stderr.contains("value too large"), "{}", got.stderr);
    let (_t, _r, got) = run_line("eval 'eval \"$s\"'; s='eval \"$s\"'; eval \"$s\"").await;
    assert_ne!(got.status, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_input_never_panics_or_hangs() {
    let (_tmp, root) = fresh_fixture();
    let inputs = [
        "",
        " ",
        "(((",
        "${",
        "$((1/0))",
        "echo ${x:?}",
        "'",
        "\\",
        "[[",
        "case",
        ";;",
        "|",
        "&&",
        "echo $(( ))",
        "echo ${#}",
        "<<",
        "cat <<EOF",
        "echo $((2**64))",
        "printf %",
        "printf '%*d' x 1",
        "x=(",
        "echo ${x/",
        "}",
        "{",
        "fi",
        "echo \u{0}",
        "for",
        "for ((;;)); do break; done",
        "[ ",
        "[ -f",
        "test -z",
        "[[ -f ]]",
        "echo $'\\x'",
        "read",
        "shift 5",
        "return",
        "break 3",
        "exec",
        "set -o nosuch",
        "echo {1..3..0}",
        "echo {a..}",
        "printf '%d' abc",
        ": $((x=))",
        "echo ${!}",
        "echo $[1+1]",
        "cd ''",
        "source",
        ". /nonexistent",
        "eval ')'",
        "time echo",
        "coproc x",
        "echo >",
        "echo <(ls)",
        "a=1 b=2",
        "!",
        "! !",
        "echo ${x:-${y:-${z:-deep}}}",
        "echo \"$(echo \"$(echo \"$(echo x)\")\")\"",
    ];
    for line in inputs {
        let r =
            tokio::time::timeout(Duration::from_secs(10), run_ours(&root, "", line, Stdin::Closed))
                .await;
        assert!(r.is_ok(), "{line:?} hung");
    }
}

/// Per-command overhead: a three-stage pipeline of guests, timed over many
/// runs (server time only, tools already compiled). Prints the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_overhead() {
    let (_tmp, root) = fresh_fixture();
    let rt = common::runtime();
    let have_tools = ["cat", "grep", "wc"].iter().all(|t| rt.tool(t).is_some());
    let lines: Vec<&str> = if have_tools {
        vec![
            "cat logs/app.log | grep ERROR | wc -l",
            "cat-files logs/app.log | cat-files | cat-files > /dev/null",
            "echo x | { read v; }",
        ]
    } else {
        vec!["cat-files logs/app.log | cat-files | cat-files > /dev/null", "echo x | { read v; }"]
    };
    for line in lines {
        run_ours(&root, "", line, Stdin::Closed).await;
        let n = 50;
        let started = Instant::now();
        for _ in 0..n {
            let got = run_ours(&root, "", line, Stdin::Closed).await;
            assert_eq!(got.status, 0, "{line}: {}", got.stderr);
        }
        println!("overhead: {line:?}: {:.2?} per line", started.elapsed() / n);
    }
}
