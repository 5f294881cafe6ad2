//! The fuzz targets' properties on stable, without cargo-fuzz: every seed in
//! `fuzz/seeds/<target>/` (which includes every input the fuzzer ever found)
//! goes through the same checks as `./dev fuzz`, and each finding also has
//! a named test, here or next to the code it broke (`shell::parse`,
//! `shell::expand`, `shell::arith`, `shell::param`, `fs::path`).
//!
//! The checks live in `fuzz/src/lib.rs` (included below), so a property is
//! written once and holds in both places.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::Path;

/// Runs `check` on every seed of `target`, naming the file before each run
/// (the test harness shows it when a check panics).
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("seed directory entry").path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 5, "{}: only {} seeds", dir.display(), seeds.len());
    for seed in seeds {
        let data = std::fs::read(&seed).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
        eprintln!("{}", seed.display());
        check(&data);
    }
}

#[test]
fn jsonrpc_decode_seeds() {
    replay("jsonrpc_decode", checks::jsonrpc_frame);
}

#[test]
fn path_map_seeds() {
    replay("path_map", checks::path_map);
}

#[test]
fn shell_parse_seeds() {
    replay("shell_parse", checks::shell_line);
}

#[test]
fn binary_frames_that_are_not_utf8_get_a_parse_error() {
    checks::jsonrpc_frame(b"{\"id\":1,\"method\":\"\xff\"}");
}

#[test]
fn arithmetic_with_deeply_nested_subscripts_is_refused_promptly() {
    // brush-parser's arithmetic grammar was exponential in `[` nesting (our
    // fork memoizes it); this input (unclosed `c[hdfeg| (xp |`, eight times)
    // took minutes.
    let data = include_bytes!("../fuzz/seeds/shell_parse/regress-arith-nested-subscripts");
    checks::shell_line(data);
}

#[test]
fn shell_eval_seeds() {
    replay("shell_eval", checks::shell_eval);
}

#[test]
fn a_heredoc_of_mismatched_brackets_is_refused_promptly() {
    // brush-parser's word grammar backtracked for seconds on this 100-byte
    // here-document, exponentially in its nested `$((` (our fork memoizes
    // it). Found by the `shell_eval` target.
    let data = include_bytes!("../fuzz/seeds/shell_eval/regress-heredoc-mismatched-brackets");
    checks::shell_eval(data);
}

#[test]
fn a_large_brace_expansion_is_not_quadratic() {
    // `{1..100000}000`: the words were summed again against the memory
    // budget after each of the 100,000, and the line held its thread past
    // libFuzzer's 10 s. Found by the `shell_eval` target in CI.
    let data = include_bytes!("../fuzz/seeds/shell_eval/regress-brace-words-quadratic");
    checks::shell_eval(data);
}
