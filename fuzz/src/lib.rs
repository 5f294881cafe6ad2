//! The properties the fuzz targets check, one function per target. Each
//! takes the raw fuzz input, runs it through the same library functions the
//! server uses on client input, and panics (an assertion) when a property
//! fails. `fuzz_targets/*.rs` call these; `tests/fuzz_regressions.rs` in the
//! server crate includes this file with `#[path]` and replays the seeds and
//! every input the fuzzer ever found, so `cargo test` checks the same
//! properties on stable without cargo-fuzz.
//!
//! Nothing here may touch the network, and only `shell_eval` touches the
//! filesystem (one scratch workspace, made once): each call must be fast,
//! or the fuzzer slows to a crawl.

use serde_json::Value;
use std::path::{Component, Path};
use std::sync::{Mutex, PoisonError};
use wasm_exec_server::fs::path::{
    Mapped, PathMap, normalize_absolute, parse_file_uri, to_file_uri,
};
use wasm_exec_server::pattern;
use wasm_exec_server::protocol::{self, RequestId, code};
use wasm_exec_server::rpc::{self, Incoming, RpcError};
use wasm_exec_server::shell::{arith, expand, param, parse};

/// Runs `check` on `data` so that only a panic escaping it is a finding.
///
/// libfuzzer-sys aborts on every panic, even one the library catches on
/// purpose (the shell turns a panic inside brush-parser into a syntax
/// error). Here the hook only remembers the message, and a panic that
/// reaches this function is printed and resumed, which libfuzzer-sys then
/// reports as a crash with its input.
pub fn escaping_panics_only(check: fn(&[u8]), data: &[u8]) {
    /// The message of the last panic, caught or not, on any thread.
    static LAST_PANIC: Mutex<String> = Mutex::new(String::new());
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            *LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner) = info.to_string();
        }));
    });
    if let Err(payload) = std::panic::catch_unwind(|| check(data)) {
        eprintln!("panicked: {}", LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner));
        std::panic::resume_unwind(payload);
    }
}

/// The stack the server's shell runs on: tokio's default for worker
/// threads. The fuzzer's main thread has 8 MiB, which would hide a parser
/// that recurses too deep for the server.
pub const SERVER_STACK: usize = 2 << 20;

/// Runs `check` on a thread with [`SERVER_STACK`]; a panic is passed on.
pub fn on_server_stack(check: fn(&[u8]), data: &[u8]) {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .stack_size(SERVER_STACK)
            .spawn_scoped(scope, || check(data))
            .expect("spawn a checking thread");
        if let Err(payload) = worker.join() {
            std::panic::resume_unwind(payload);
        }
    });
}

/// The visible root used when a `path_map` input names none.
pub const DEFAULT_ROOT: &str = "/home/dev/project";

/// Words of a line we expand, and brace alternatives of each we parse as
/// words (`{1..99999}` is large; parsing every alternative would make one
/// input take seconds).
const WORDS_PER_LINE: usize = 32;
const ALTERNATIVES_PER_WORD: usize = 8;

/// One frame from a client, as `connection::serve` handles it: a binary
/// frame must be UTF-8, the text is decoded, a malformed frame is answered
/// with `id: -1`, a request's params are decoded into every params type the
/// router knows and each error becomes a reply. Every reply must be JSON
/// that says what we meant (code, message, the request's id verbatim).
pub fn jsonrpc_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        let message = "failed to parse JSON-RPC message: binary frame is not UTF-8".to_owned();
        check_parse_error_reply(&message);
        return;
    };
    match rpc::decode(text) {
        Incoming::Malformed(message) => check_parse_error_reply(&message),
        Incoming::StrayResponse => {
            let v: Value = serde_json::from_str(text).expect("a stray response was valid JSON");
            assert!(
                v.get("id").is_some_and(|id| !id.is_null()),
                "stray response without id: {text}"
            );
            assert!(
                v.get("method").is_none_or(Value::is_null),
                "stray response with a method: {text}"
            );
        }
        Incoming::Notification { method } => {
            let v: Value = serde_json::from_str(text).expect("a notification was valid JSON");
            assert_eq!(
                v["method"],
                Value::String(method),
                "notification method differs from the frame"
            );
            assert!(v.get("id").is_none_or(Value::is_null), "notification with an id: {text}");
        }
        Incoming::Request { id, method, params } => {
            let v: Value = serde_json::from_str(text).expect("a request was valid JSON");
            assert_eq!(
                v["method"],
                Value::String(method.clone()),
                "request method differs from the frame"
            );
            let wire_id = serde_json::to_value(&id).expect("ids serialize");
            assert_eq!(v["id"], wire_id, "request id is not echoed verbatim");
            let errors = [
                typed::<protocol::InitializeParams>(&params),
                typed::<protocol::ProcessStartParams>(&params),
                typed::<protocol::ProcessReadParams>(&params),
                typed::<protocol::ProcessWriteParams>(&params),
                typed::<protocol::ProcessSignalParams>(&params),
                typed::<protocol::ProcessTerminateParams>(&params),
                typed::<protocol::FsPathParams>(&params),
                typed::<protocol::FsWriteFileParams>(&params),
                typed::<protocol::FsCreateDirectoryParams>(&params),
                typed::<protocol::FsRemoveParams>(&params),
                typed::<protocol::FsCopyParams>(&params),
                Some(RpcError::method_not_found(&method)),
            ];
            for e in errors.into_iter().flatten() {
                check_error_reply(&id, &e);
            }
            // Any value as a result (not compared: serde_json's float parsing
            // does not round-trip every long literal, and no reply echoes a
            // client's number).
            let ok = rpc::response_text(id, Ok(params.unwrap_or(Value::Null)));
            let reply: Value = serde_json::from_str(&ok).expect("a result reply is JSON");
            assert_eq!(reply["id"], wire_id);
            assert!(
                reply.get("result").is_some() && reply.get("error").is_none(),
                "odd result reply {ok}"
            );
        }
    }
}

/// Decodes params as the router does; the error, if any.
fn typed<T: serde::de::DeserializeOwned>(params: &Option<Value>) -> Option<RpcError> {
    rpc::params::<T>(params.clone()).err()
}

fn check_parse_error_reply(message: &str) {
    let reply: Value = serde_json::from_str(&rpc::parse_error_text(message.to_owned()))
        .expect("a parse-error reply is JSON");
    assert_eq!(reply["id"], Value::from(-1));
    assert_eq!(reply["error"]["code"], Value::from(code::INVALID_REQUEST));
    assert_eq!(reply["error"]["message"], Value::String(message.to_owned()));
}

fn check_error_reply(id: &RequestId, e: &RpcError) {
    let reply: Value = serde_json::from_str(&rpc::response_text(id.clone(), Err(e.clone())))
        .expect("an error reply is JSON");
    assert_eq!(reply["id"], serde_json::to_value(id).expect("ids serialize"));
    assert_eq!(reply["error"]["code"], Value::from(e.code));
    assert_eq!(reply["error"]["message"], Value::String(e.message.clone()));
    assert!(reply.get("result").is_none(), "an error reply carries a result");
}

/// A `path_map` input: the URI on the first line, the visible root on the
/// second (default [`DEFAULT_ROOT`]). The URI goes through `parse_file_uri`
/// and the mapping, as `fs/*` params and `cwd` do; the raw text is also
/// mapped as a visible path, as the shell maps `cd` targets and redirections.
pub fn path_map(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (uri, root) = text.split_once('\n').unwrap_or((text, DEFAULT_ROOT));
    let map = PathMap::new(root);
    let visible_root = map.visible_root().to_owned();
    assert!(visible_root.starts_with('/'), "visible root {visible_root:?} is not absolute");
    assert_eq!(normalize_absolute(&visible_root), visible_root, "visible root is not normalized");

    match parse_file_uri(uri) {
        Ok(abs) => {
            assert!(abs.starts_with('/'), "{uri:?} parsed to a relative path {abs:?}");
            assert_eq!(normalize_absolute(&abs), abs, "{uri:?} parsed to an unnormalized path");
            assert!(!abs.contains('\0'), "{uri:?} parsed to a path with NUL");
            let again = to_file_uri(&abs);
            assert_eq!(
                parse_file_uri(&again),
                Ok(abs.clone()),
                "{abs:?} does not survive {again:?}"
            );
            check_mapping(&map, &abs);
        }
        Err(e) => {
            let wire = RpcError::from(e);
            assert!(wire.code == code::INVALID_PARAMS || wire.code == code::INVALID_REQUEST);
        }
    }
    check_mapping(&map, uri);
    check_mapping(&map, &format!("{visible_root}/{uri}"));
}

/// `Inside` is a plain relative path under the root (nothing that could
/// leave it once cap-std resolves it), and mapping it back gives the path we
/// started from; `Outside` really is outside.
fn check_mapping(map: &PathMap, path: &str) {
    let root = map.visible_root();
    let normalized = normalize_absolute(path);
    match map.map(path) {
        Mapped::Inside(rel) => {
            assert!(rel.is_relative(), "{path:?} mapped to non-relative {rel:?}");
            if rel != Path::new(".") {
                for c in rel.components() {
                    assert!(
                        matches!(c, Component::Normal(_)),
                        "{path:?} mapped to {rel:?} with component {c:?}"
                    );
                }
            }
            assert_eq!(
                map.to_visible(&rel),
                Some(normalized),
                "{path:?} ({rel:?}) does not map back"
            );
        }
        Mapped::Outside => {
            let inside =
                root == "/" || normalized == root || normalized.starts_with(&format!("{root}/"));
            assert!(!inside, "{path:?} is under {root:?} but mapped Outside");
        }
    }
}

/// A command line through the shell's parser (as `bash -c` gets it) and the
/// word-level parsers that do not touch the filesystem, each fed what the
/// shell feeds it: the line's word tokens through brace expansion and the
/// word parser; the raw text as a here-document body, as a `${!ref}`
/// target and as arithmetic (all see arbitrary text), an integer, `$'…'`
/// and a pattern.
pub fn shell_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for extglob in [false, true] {
        match parse::program(text, extglob) {
            Ok(_) => {}
            Err(e) => {
                let m = e.message("bash", "-c");
                assert!(m.starts_with("bash: -c: line "), "odd syntax error message {m:?}");
                assert!(m.ends_with('\n'), "syntax error message without newline {m:?}");
            }
        }
    }
    // brush-parser's own panics are caught by `parse::guarded`, as in the
    // shell; what must not happen is one escaping it, a hang or a blow-up.
    let words = parse::tokens(text).unwrap_or_default();
    for token in
        words.iter().filter(|t| matches!(t, brush_parser::Token::Word(..))).take(WORDS_PER_LINE)
    {
        let word = token.to_str();
        let alternatives = expand::braces(word);
        assert!(!alternatives.is_empty(), "brace expansion of {word:?} produced nothing");
        for w in alternatives.iter().take(ALTERNATIVES_PER_WORD) {
            let _ = expand::word_pieces(w, false);
        }
    }
    let _ = expand::word_pieces(text, true);
    let _ = param::indirect_target(text);
    let trimmed = text.trim();
    let _ = arith::parse(trimmed);
    let _ = arith::parse_int(text);
    let _ = expand::ansi_c(text);
    let (pat, subject) = text.split_once('\n').unwrap_or((text, text));
    let _ = pattern::has_glob(pat);
    if !pattern::has_glob(pat) {
        assert!(
            pattern::matches(pat, &pattern::unescape(pat)),
            "{pat:?} does not match its own text"
        );
    }
    let _ = pattern::matches(pat, subject);
    assert!(
        pattern::matches(&pattern::escape(subject), subject),
        "escaped {subject:?} does not match itself"
    );
    // Extended patterns (`extglob`): any text compiles and matches in
    // bounded time, and an escaped text is only itself.
    let _ = pattern::matches_extended(pat, subject);
    assert!(
        pattern::matches_extended(&pattern::escape(subject), subject),
        "escaped {subject:?} does not match itself as an extended pattern"
    );
}

/// Wall time one evaluated line may take before it is stopped (its future
/// dropped, as the server drops a command at max-wall or terminate).
pub const EVAL_BUDGET: std::time::Duration = std::time::Duration::from_millis(100);

/// How long past its budget a line may hold the thread: host work yields at
/// least every few milliseconds, so the stop lands at once unless a step of
/// host work (an expansion, a pattern match, the parser) runs long.
pub const EVAL_SLACK: std::time::Duration = std::time::Duration::from_secs(1);

/// The host memory one evaluated line may hold (the shell's max-memory).
pub const EVAL_MEMORY: usize = 64 << 20;

/// The scratch workspace of [`shell_eval`]: this, then the process id.
const EVAL_DIR: &str = "wes-fuzz-eval-";

/// Removes the scratch workspaces of [`shell_eval`] whose process has ended.
fn remove_dead_eval_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(EVAL_DIR)) else { continue };
        let dead = pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if dead {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Evaluates `data` as a `bash -c` line in a shell with no tools: only
/// builtins run (everything else is "command not found"), in a scratch
/// workspace, with stdin closed, under a memory budget of [`EVAL_MEMORY`]
/// and a wall budget of [`EVAL_BUDGET`]. The property: every line ends (by
/// itself or by its budget) within the budget plus [`EVAL_SLACK`]: no input
/// keeps host work from yielding to the stop, and none panics. (libFuzzer's
/// `-rss_limit_mb` catches memory the budget does not see.)
pub fn shell_eval(data: &[u8]) {
    use std::sync::OnceLock;
    use wasm_exec_server::config::Limits;
    use wasm_exec_server::exec::{CommandSpec, Executor, Runtime, Sink, Stdin};
    use wasm_exec_server::fs::Workspace;

    let Ok(line) = std::str::from_utf8(data) else { return };
    static EXEC: OnceLock<Executor> = OnceLock::new();
    let exec = EXEC.get_or_init(|| {
        // The workspace lives as long as this process (a static is never
        // dropped): those of processes that have ended go first.
        remove_dead_eval_dirs();
        let dir = std::env::temp_dir().join(format!("{EVAL_DIR}{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(&root).expect("scratch workspace");
        let workspace = Workspace::open_in(&root, Some("/work"), &dir).expect("workspace");
        let tuning = wasm_exec_server::config::Tuning { pooling: false, ..Default::default() };
        let runtime = Runtime::with_tuning(None, tuning).expect("engine");
        let limits = Limits { max_memory: EVAL_MEMORY, ..Limits::default() };
        Executor { runtime: std::sync::Arc::new(runtime), workspace, limits }
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let spec = CommandSpec {
        argv: vec!["bash".into(), "-c".into(), line.into()],
        arg0: None,
        env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("HOME".into(), "/work".into())],
        cwd: "/work".into(),
        stdin: Stdin::Closed,
        stdout: Sink::Null,
        stderr: Sink::Null,
        tty: false,
    };
    let started = std::time::Instant::now();
    rt.block_on(async {
        let run = wasm_exec_server::shell::run_command(exec, spec);
        let _ = tokio::time::timeout(EVAL_BUDGET, run).await;
    });
    let took = started.elapsed();
    assert!(
        took <= EVAL_BUDGET + EVAL_SLACK,
        "the line held its thread for {took:?}, past its {EVAL_BUDGET:?} budget: {line:?}"
    );
}
