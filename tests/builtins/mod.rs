//! Host builtins through the server: read-only `git`, `stat`, `du`,
//! `chmod`, `apply_patch` and `which`. None of them needs the bundled
//! toolset. The git fixtures are made with the host's `git` by the test
//! itself; the server never runs a process.

use crate::common::{TestServer, expect, sh};
use pretty_assertions::assert_eq;
use std::path::Path;
use wasm_exec_server::config::Limits;

/// Runs `line` and checks the status and that stderr contains `needle`.
async fn expect_err(s: &TestServer, line: &str, needle: &str, status: i32) {
    let f = sh(s, line).await;
    assert_eq!(
        f.exit_code,
        status,
        "{line}\nstdout: {}\nstderr: {}",
        f.stdout_str(),
        f.stderr_str()
    );
    assert!(f.stderr_str().contains(needle), "{line}\nstderr: {}", f.stderr_str());
}

/// Runs the host's git in `dir` with a fixed identity and clock (fixtures only).
fn host_git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "core.autocrlf=false",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", "2024-03-01T12:00:00+01:00")
        .env("GIT_COMMITTER_DATE", "2024-03-01T12:00:00+01:00")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("host git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with two commits, then a staged, an unstaged and an
/// untracked change.
async fn repo() -> TestServer {
    let s = TestServer::start().await;
    let root = s.root();
    s.write("README.md", "# demo\n");
    s.write("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n");
    host_git(&root, &["init", "-q"]);
    host_git(&root, &["add", "."]);
    host_git(&root, &["commit", "-q", "-m", "Initial commit"]);
    s.write("src/lib.rs", "pub fn one() -> i32 {\n    1\n}\n");
    host_git(&root, &["add", "."]);
    host_git(&root, &["commit", "-q", "-m", "Add lib\n\nWith a body line."]);
    s.write("src/lib.rs", "pub fn one() -> i32 {\n    1\n}\n\npub fn two() -> i32 {\n    2\n}\n");
    host_git(&root, &["add", "src/lib.rs"]);
    s.write("src/main.rs", "fn main() {\n    println!(\"hello\");\n}\n");
    s.write("notes/todo.txt", "later\n");
    s
}

/// What the host's git prints for the same command (to compare formats).
fn reference(s: &TestServer, args: &[&str]) -> String {
    host_git(&s.root(), args)
}

#[tokio::test]
async fn git_status_in_all_formats() {
    let s = repo().await;
    expect(&s, "git status --short", "M  src/lib.rs\n M src/main.rs\n?? notes/\n", 0).await;
    expect(&s, "git status --porcelain", &reference(&s, &["status", "--porcelain"]), 0).await;
    expect(&s, "git status", &reference(&s, &["status"]), 0).await;
    expect(&s, "cd src && git status -s", "M  lib.rs\n M main.rs\n?? ../notes/\n", 0).await;
    expect(&s, "git status -sb -uno", "## main\nM  src/lib.rs\n M src/main.rs\n", 0).await;
    expect_err(&s, "git status --bogus", "unknown option", 129).await;
}

/// `git grep` and the function-name context of hunk headers, as the host's
/// git prints them.
#[tokio::test]
async fn git_grep_and_hunk_context_match_git() {
    let s = repo().await;
    let root = s.root();
    let calc = "use std::io;\n\nfn total() -> i32 {\n    let a = 1;\n    let b = 2;\n    let c = 3;\n    let d = 4;\n    a + b + c + d\n}\n\nstruct P {\n    x: i32,\n}\n";
    s.write("src/calc.rs", calc);
    host_git(&root, &["add", "src/calc.rs"]);
    host_git(&root, &["commit", "-q", "-m", "calc"]);
    s.write("src/calc.rs", &calc.replace("let c = 3;", "let c = 30;").replace("x: i32", "x: i64"));
    let diff = reference(&s, &["diff", "--", "src/calc.rs"]);
    assert!(diff.contains(" @@ use std::io;\n"), "the reference has a context: {diff}");
    expect(&s, "git diff -- src/calc.rs", &diff, 0).await;
    for args in [
        &["grep", "-n", "fn"][..],
        &["grep", "-c", "let"],
        &["grep", "-l", "fn\\|struct"],
        &["grep", "-E", "-w", "x|total"],
        &["grep", "-in", "HELLO", "--", "src"],
        &["grep", "-e", "one", "-e", "two"],
    ] {
        let line =
            format!("git {}", args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" "));
        expect(&s, &line, &reference(&s, args), 0).await;
    }
    expect(
        &s,
        "cd src && git grep -n println",
        &host_git(&root.join("src"), &["grep", "-n", "println"]),
        0,
    )
    .await;
    expect(&s, "git grep no-such-text; echo $?", "1\n", 0).await;
}

/// `git blame` in git's own format: the root commit as a boundary (`^`),
/// the author column as wide as the widest name, options, ranges, and the
/// work tree's uncommitted lines.
#[tokio::test]
async fn git_blame_matches_git() {
    let s = repo().await;
    let root = s.root();
    host_git(&root, &["commit", "-q", "--author=Grace Hopper <grace@example.com>", "-m", "two"]);
    for args in [
        &["blame", "src/lib.rs"][..],
        &["blame", "README.md"],
        &["blame", "-L", "2,5", "src/lib.rs"],
        &["blame", "-L5", "src/lib.rs"],
        &["blame", "-s", "src/lib.rs"],
        &["blame", "-e", "src/lib.rs"],
        &["blame", "-l", "src/lib.rs"],
        &["blame", "HEAD~1", "--", "src/lib.rs"],
        &["blame", "HEAD~1", "src/main.rs"],
    ] {
        let line =
            format!("git {}", args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" "));
        expect(&s, &line, &reference(&s, args), 0).await;
    }
    expect(&s, "cd src && git blame lib.rs", &reference(&s, &["blame", "src/lib.rs"]), 0).await;
    // src/main.rs has an uncommitted change on line 2: git's own output,
    // but for the time of that line, which is now.
    let f = sh(&s, "git blame src/main.rs").await;
    let want = reference(&s, &["blame", "src/main.rs"]);
    let out = f.stdout_str();
    let (got, want): (Vec<&str>, Vec<&str>) = (out.lines().collect(), want.lines().collect());
    assert_eq!(got.len(), 3, "{}", f.stdout_str());
    assert_eq!((got[0], got[2]), (want[0], want[2]));
    assert!(got[1].starts_with("00000000 (Not Committed Yet "), "{}", got[1]);
    assert!(got[1].ends_with(" 2)     println!(\"hello\");"), "{}", got[1]);
    expect_err(&s, "git blame nosuch.txt", "no such path 'nosuch.txt' in HEAD", 128).await;
    expect_err(&s, "git blame -L 9,2 src/lib.rs", "invalid -L argument", 128).await;
}

/// Blame does its work in whole-file diffs between few object reads; on a
/// long file rewritten commit after commit it still stops at max-cpu,
/// with the limit named, and the server goes on serving.
#[tokio::test]
async fn git_blame_of_a_long_history_stops_at_max_cpu() {
    let limits = Limits { max_cpu: std::time::Duration::from_millis(200), ..Limits::default() };
    let s = TestServer::start_with(limits, None).await;
    let root = s.root();
    host_git(&root, &["init", "-q"]);
    for round in 0..8 {
        let text: String = (0..100_000).map(|i| format!("{}\n", i * 7 + round * (i % 3))).collect();
        s.write("big.txt", &text);
        host_git(&root, &["add", "."]);
        host_git(&root, &["commit", "-q", "-m", &format!("round {round}")]);
    }
    let f = sh(&s, "git blame big.txt | tail -1").await;
    assert_eq!(f.exit_code, 137, "{}", f.stderr_str());
    assert!(f.stderr_str().contains("CPU time limit exceeded (max-cpu"), "{}", f.stderr_str());
    expect(&s, "echo still here", "still here\n", 0).await;
}

#[tokio::test]
async fn git_diff_cached_stat_and_paths() {
    let s = repo().await;
    expect(&s, "git diff", &reference(&s, &["diff"]), 0).await;
    expect(&s, "git diff --cached", &reference(&s, &["diff", "--cached"]), 0).await;
    expect(&s, "git diff --stat", &reference(&s, &["diff", "--stat"]), 0).await;
    expect(&s, "git diff HEAD --name-only", "src/lib.rs\nsrc/main.rs\n", 0).await;
    expect(&s, "git diff HEAD~1 HEAD --name-status", "A\tsrc/lib.rs\n", 0).await;
    expect(&s, "git diff -- README.md", "", 0).await;
    expect(&s, "git diff --quiet; echo $?", "1\n", 0).await;
    expect_err(&s, "git diff nosuchthing", "ambiguous argument 'nosuchthing'", 128).await;
}

#[tokio::test]
async fn git_log_show_and_refs() {
    let s = repo().await;
    expect(&s, "git log", &reference(&s, &["log"]), 0).await;
    expect(&s, "git log --oneline", &reference(&s, &["log", "--oneline"]), 0).await;
    expect(&s, "git log -1 --format='%an <%ae> %s'", "Ada Lovelace <ada@example.com> Add lib\n", 0)
        .await;
    expect(&s, "git log -n 1 --stat", &reference(&s, &["log", "-n", "1", "--stat"]), 0).await;
    expect(&s, "git log --format=%s -- README.md", "Initial commit\n", 0).await;
    expect(&s, "git show", &reference(&s, &["show"]), 0).await;
    expect(&s, "git show HEAD~1:src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n", 0).await;
    expect(
        &s,
        "git rev-parse --abbrev-ref HEAD; git branch --show-current; git branch",
        "main\nmain\n* main\n",
        0,
    )
    .await;
    let top = format!("{}\n", s.root().display());
    expect(&s, "cd src && git rev-parse --show-toplevel", &top, 0).await;
    expect(&s, "git rev-parse HEAD", &reference(&s, &["rev-parse", "HEAD"]), 0).await;
    expect(&s, "git rev-list --count HEAD; cd src && git ls-files", "2\nlib.rs\nmain.rs\n", 0)
        .await;
}

#[tokio::test]
async fn git_refuses_writes_and_non_repositories() {
    let s = repo().await;
    expect_err(
        &s,
        "git commit -m x",
        "git: 'commit' is not supported in this sandbox (read-only git)",
        1,
    )
    .await;
    expect_err(&s, "git add .", "git: 'add' is not supported in this sandbox (read-only git)", 1)
        .await;
    expect_err(&s, "git -C src checkout -- main.rs", "'checkout' is not supported", 1).await;
    expect_err(&s, "git branch feature", "'branch feature' is not supported", 1).await;
    // Nothing was changed: the host's git sees the same state.
    assert_eq!(
        reference(&s, &["status", "--porcelain"]),
        "M  src/lib.rs\n M src/main.rs\n?? notes/\n"
    );
    let plain = TestServer::start().await;
    plain.write("a.txt", "x\n");
    let f = sh(&plain, "git status").await;
    assert_eq!(
        (f.exit_code, f.stderr_str().as_str()),
        (128, "fatal: not a git repository (or any of the parent directories): .git\n")
    );
    expect(&plain, "git log 2>/dev/null || echo none", "none\n", 0).await;
}

#[tokio::test]
async fn git_unborn_repository() {
    let s = TestServer::start().await;
    s.write("a.txt", "x\n");
    host_git(&s.root(), &["init", "-q"]);
    expect(&s, "git status", &reference(&s, &["status"]), 0).await;
    expect(&s, "git status --porcelain", "?? a.txt\n", 0).await;
    expect_err(&s, "git log", "does not have any commits yet", 128).await;
}

#[tokio::test]
async fn stat_builtin() {
    let s = TestServer::start().await;
    s.write("dir/a.txt", "hello\n");
    s.write("empty", "");
    let dir_size = std::fs::metadata(s.root().join("dir")).expect("meta").len();
    expect(
        &s,
        "stat -c '%n %s %F' dir/a.txt empty dir",
        &format!(
            "dir/a.txt 6 regular file\nempty 0 regular empty file\ndir {dir_size} directory\n"
        ),
        0,
    )
    .await;
    let modified =
        std::fs::metadata(s.root().join("dir/a.txt")).expect("meta").modified().expect("mtime");
    let mtime = modified.duration_since(std::time::UNIX_EPOCH).expect("epoch").as_secs();
    expect(&s, "cd dir && stat -c %Y a.txt", &format!("{mtime}\n"), 0).await;
    let f = sh(&s, "stat dir/a.txt").await;
    assert_eq!(f.exit_code, 0, "{}", f.stderr_str());
    let out = f.stdout_str();
    assert!(out.starts_with("  File: dir/a.txt\n  Size: 6 "), "{out}");
    assert!(
        out.contains("regular file") && out.contains("Modify: ") && out.contains("Access: (0"),
        "{out}"
    );
    expect_err(&s, "stat nope", "stat: cannot stat 'nope': No such file or directory", 1).await;
    expect_err(&s, "stat /etc/passwd", "No such file or directory", 1).await;
    expect_err(&s, "stat", "stat: missing operand", 1).await;
}

/// `stat`, `du` and `chmod` see the command's private `/tmp` too (`cd
/// "$(mktemp -d)"` is how agents make scratch space), and `stat -c %N`
/// quotes as GNU does.
#[tokio::test]
async fn stat_du_and_chmod_in_the_private_tmp() {
    let s = TestServer::start().await;
    expect(
        &s,
        "d=$(mktemp -d); cd \"$d\"; printf hello > f; stat -c '%s %F %a' f; du -b f; \
         chmod 700 f; stat -c %A \"$d/f\"; ln -s f l; stat -c %N l; mkdir sub; touch sub/x; \
         chmod -R u+x sub; stat -c '%a %n' sub/x; du -sb . | wc -l; ls",
        "5 regular file 644\n5\tf\n-rwx------\n'l' -> 'f'\n744 sub/x\n1\nf\nl\nsub\n",
        0,
    )
    .await;
    expect_err(&s, "stat /tmp/nope", "stat: cannot stat '/tmp/nope': No such file or directory", 1)
        .await;
    // Still nothing outside the workspace and /tmp.
    expect_err(&s, "du /etc", "du: cannot access '/etc': No such file or directory", 1).await;
    expect_err(&s, "chmod +x /etc/passwd", "chmod: cannot access '/etc/passwd'", 1).await;
}

#[tokio::test]
async fn du_builtin() {
    let s = TestServer::start().await;
    s.write("d/one.txt", &"x".repeat(5000));
    s.write("d/sub/two.txt", &"y".repeat(100));
    let dir_len = |rel: &str| std::fs::metadata(s.root().join(rel)).expect("meta").len();
    let (d, sub) = (dir_len("d"), dir_len("d/sub"));
    expect(&s, "du -sb d", &format!("{}\td\n", 5100 + d + sub), 0).await;
    expect(&s, "du -ab d/sub", &format!("100\td/sub/two.txt\n{}\td/sub\n", 100 + sub), 0).await;
    expect(&s, "cd d && du -b --max-depth=0", &format!("{}\t.\n", 5100 + d + sub), 0).await;
    let f = sh(&s, "du -sh d; du d").await;
    assert_eq!(f.exit_code, 0, "{}", f.stderr_str());
    let out = f.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with("K\td"), "{out}");
    assert!(lines[1].ends_with("\td/sub") && lines[2].ends_with("\td"), "{out}");
    expect_err(&s, "du missing", "du: cannot access 'missing': No such file or directory", 1).await;
    expect_err(&s, "du -q d", "du: invalid option -- 'q'", 1).await;
}

#[tokio::test]
async fn chmod_changes_permission_bits_within_bounds() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start().await;
    s.write("run.sh", "echo hi from run.sh\n");
    s.write("d/f.txt", "f\n");
    s.write(".git/config", "[core]\n");
    let mode =
        |p: &str| std::fs::metadata(s.root().join(p)).expect("meta").permissions().mode() & 0o7777;
    std::fs::set_permissions(s.root().join("run.sh"), std::fs::Permissions::from_mode(0o644))
        .expect("644");
    let git_before = mode(".git/config");
    // Not executable: refused as on Linux; then executable, and it runs.
    expect_err(&s, "./run.sh", "./run.sh: Permission denied", 126).await;
    expect(&s, "chmod +x run.sh && ./run.sh", "hi from run.sh\n", 0).await;
    assert_eq!(mode("run.sh"), 0o755);
    expect(&s, "chmod 640 run.sh", "", 0).await;
    assert_eq!(mode("run.sh"), 0o640);
    expect(&s, "chmod go+r,u-w run.sh", "", 0).await;
    assert_eq!(mode("run.sh"), 0o644, "the owner keeps write");
    // Only the nine permission bits: no setuid, and never locked out.
    expect(&s, "chmod 4755 run.sh", "", 0).await;
    assert_eq!(mode("run.sh"), 0o755);
    expect(&s, "chmod 000 run.sh d", "", 0).await;
    assert_eq!((mode("run.sh"), mode("d")), (0o600, 0o700));
    expect(&s, "chmod -R a+rX d && cat d/f.txt", "f\n", 0).await;
    assert_eq!((mode("d"), mode("d/f.txt")), (0o755, 0o644));
    expect_err(
        &s,
        "chmod +x missing.sh",
        "chmod: cannot access 'missing.sh': No such file or directory",
        1,
    )
    .await;
    expect_err(&s, "chmod 999 run.sh", "chmod: invalid mode: '999'", 1).await;
    expect_err(&s, "chmod +x .git/config", "Operation not permitted", 1).await;
    expect(&s, "chmod -R 777 . ; echo $?", "0\n", 0).await;
    assert_eq!(mode("run.sh"), 0o755, "group and others never get write");
    assert_eq!(mode(".git/config"), git_before, "a read-only area keeps its modes under -R");
    expect_err(&s, "chmod", "chmod: missing operand", 1).await;
}

/// `ls -l` shows the real modes, link counts, sizes and block totals, with
/// the sandbox's owner (the bundled ls invented `-r-xr-xr-x somebody`).
#[tokio::test]
async fn ls_long_shows_real_modes() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start().await;
    s.write("run.sh", "echo hi\n");
    s.write("d/a.txt", "12345\n");
    std::fs::set_permissions(s.root().join("run.sh"), std::fs::Permissions::from_mode(0o644))
        .expect("644");
    let f = sh(&s, "chmod +x run.sh && ls -l run.sh d && ls -ld d && ls -lh d/a.txt").await;
    let out = f.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(f.exit_code, 0, "{out}{}", f.stderr_str());
    // Mode, links, owner, group, size … name (the columns are aligned as
    // GNU ls aligns them: the file's size is padded to the width of the
    // directory operand's).
    let fields = |l: &str| -> Vec<String> {
        let f: Vec<&str> = l.split_whitespace().collect();
        let mut v: Vec<String> = f[..5].iter().map(|s| s.to_string()).collect();
        v.push(f[f.len() - 1].to_string());
        v
    };
    assert_eq!(fields(lines[0]), ["-rwxr-xr-x", "1", "sandbox", "sandbox", "8", "run.sh"]);
    assert!(lines[0].starts_with("-rwxr-xr-x 1 sandbox sandbox    8 "), "{out}");
    assert_eq!(lines[1..4], ["", "d:", "total 4"], "{out}");
    assert_eq!(fields(lines[4]), ["-rw-r--r--", "1", "sandbox", "sandbox", "6", "a.txt"]);
    assert_eq!(fields(lines[5])[0], "drwxr-xr-x", "{out}");
    assert_eq!(fields(lines[5])[5], "d", "{out}");
    assert_eq!(fields(lines[6]), ["-rw-r--r--", "1", "sandbox", "sandbox", "6", "d/a.txt"]);
    expect_err(&s, "ls -l nope", "ls: cannot access 'nope': No such file or directory", 2).await;
    // Short listings stay with the bundled ls.
    expect(&s, "ls d", "a.txt\n", 0).await;
}

#[tokio::test]
async fn one_sandbox_identity() {
    let s = TestServer::start().await;
    expect(
        &s,
        "whoami; id -un; id -u; hostname; uname; uname -m",
        "sandbox\nsandbox\n1000\nsandbox\nLinux\nwasm32\n",
        0,
    )
    .await;
    expect(
        &s,
        "id; uname -a",
        "uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)\nLinux sandbox 6.0.0-wasm #1 SMP wasm32 GNU/Linux\n",
        0,
    )
    .await;
    expect_err(&s, "uname -z", "uname: invalid option -- 'z'", 1).await;
    expect_err(&s, "id nobody", "id: 'nobody': no such user", 1).await;
}

#[tokio::test]
async fn apply_patch_builtin() {
    let s = TestServer::start().await;
    s.write("src/app.py", "def greet():\n    print(\"hi\")\n\ndef main():\n    greet()\n");
    s.write("old.txt", "remove me\n");
    let line = "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: docs/notes.md\n+# Notes\n\
                +first\n*** Update File: src/app.py\n@@ def greet():\n-    print(\"hi\")\n\
                +    print(\"hello\")\n*** Delete File: old.txt\n*** End Patch\nEOF";
    expect(
        &s,
        line,
        "Success. Updated the following files:\nA docs/notes.md\nM src/app.py\nD old.txt\n",
        0,
    )
    .await;
    let root = s.root();
    assert_eq!(
        std::fs::read_to_string(root.join("docs/notes.md")).expect("added"),
        "# Notes\nfirst\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("src/app.py")).expect("updated"),
        "def greet():\n    print(\"hello\")\n\ndef main():\n    greet()\n"
    );
    assert!(!root.join("old.txt").exists());
    // The patch as an argument, with a move, from a subdirectory.
    let arg = "'*** Begin Patch\n*** Update File: app.py\n*** Move to: main.py\n@@\n def main():\n\
               -    greet()\n+    greet()\n+    return 0\n*** End Patch'";
    expect(
        &s,
        &format!("cd src && apply_patch {arg}"),
        "Success. Updated the following files:\nM main.py\n",
        0,
    )
    .await;
    assert!(!root.join("src/app.py").exists());
    assert!(
        std::fs::read_to_string(root.join("src/main.py"))
            .expect("moved")
            .ends_with("    greet()\n    return 0\n")
    );
    // A failing hunk changes nothing, not even the hunks before it.
    let bad = "printf '%s\\n' '*** Begin Patch' '*** Add File: new.txt' '+x' \
               '*** Update File: src/main.py' '@@' '-nope' '+yes' '*** End Patch' | apply_patch";
    expect_err(&s, bad, "Failed to find expected lines in src/main.py", 1).await;
    assert!(!root.join("new.txt").exists());
    expect_err(
        &s,
        "apply_patch 'not a patch'",
        "The first line of the patch must be '*** Begin Patch'",
        1,
    )
    .await;
    expect_err(
        &s,
        "apply_patch '*** Begin Patch\n*** Add File: .git/x\n+y\n*** End Patch'",
        "Permission denied",
        1,
    )
    .await;
    expect_err(
        &s,
        "apply_patch '*** Begin Patch\n*** Add File: ../escape.txt\n+y\n*** End Patch'",
        "outside the workspace",
        1,
    )
    .await;
    expect_err(
        &s,
        "apply_patch '*** Begin Patch\n*** Delete File: ghost.txt\n*** End Patch'",
        "Failed to delete file ghost.txt",
        1,
    )
    .await;
}

#[tokio::test]
async fn which_and_type_report_host_commands() {
    let s = TestServer::start().await;
    expect(
        &s,
        "which git stat du chmod apply_patch",
        "/usr/bin/git\n/usr/bin/stat\n/usr/bin/du\n/usr/bin/chmod\n/usr/bin/apply_patch\n",
        0,
    )
    .await;
    expect(&s, "command -v git; type du", "/usr/bin/git\ndu is /usr/bin/du\n", 0).await;
    expect(&s, "which no-such-tool; echo $?", "1\n", 0).await;
}
