//! Wire types of the Codex exec-server protocol (JSON-RPC over WebSocket),
//! and nothing else: no behaviour, no wasmtime, no filesystem.
//!
//! Names follow `codex-rs/exec-server/src/protocol.rs`: `<resource>/<verb>`
//! methods, `*Params` / `*Response` / `*Notification` types, camelCase
//! fields, base64 byte chunks. Unknown fields in params are ignored (the
//! client sends several we do not model), so no type here denies them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Method names, in one place so the router and the tests agree.
pub mod method {
    pub const INITIALIZE: &str = "initialize";
    pub const INITIALIZED: &str = "initialized";
    pub const ENVIRONMENT_INFO: &str = "environment/info";
    pub const ENVIRONMENT_STATUS: &str = "environment/status";
    pub const PROCESS_START: &str = "process/start";
    pub const PROCESS_READ: &str = "process/read";
    pub const PROCESS_WRITE: &str = "process/write";
    pub const PROCESS_SIGNAL: &str = "process/signal";
    pub const PROCESS_TERMINATE: &str = "process/terminate";
    pub const PROCESS_OUTPUT: &str = "process/output";
    pub const PROCESS_EXITED: &str = "process/exited";
    pub const PROCESS_CLOSED: &str = "process/closed";
    pub const FS_READ_FILE: &str = "fs/readFile";
    pub const FS_WRITE_FILE: &str = "fs/writeFile";
    pub const FS_CREATE_DIRECTORY: &str = "fs/createDirectory";
    pub const FS_GET_METADATA: &str = "fs/getMetadata";
    pub const FS_READ_DIRECTORY: &str = "fs/readDirectory";
    pub const FS_REMOVE: &str = "fs/remove";
    pub const FS_COPY: &str = "fs/copy";
    pub const FS_CANONICALIZE: &str = "fs/canonicalize";
}

/// JSON-RPC error codes the client relies on (PROTOCOL.md §11).
pub mod code {
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    pub const NOT_FOUND: i64 = -32004;
    pub const SESSION_ATTACHED: i64 = -32010;
}

/// A request id, echoed verbatim: integers of any i64 size, or strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Int(i64),
    Str(String),
}

/// One incoming frame, before we know whether it is a request, a
/// notification or a (stray) response.
#[derive(Debug, Deserialize)]
pub struct IncomingMessage {
    #[serde(default)]
    pub id: Option<RequestId>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
}

/// The error object of an error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub code: i64,
    pub message: String,
    /// Machine-readable detail (`{"kind": "spawnNotFound"}` for a start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// A response we send: exactly one of `result` or `error`.
#[derive(Debug, Serialize)]
pub struct Response {
    pub id: RequestId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
}

/// The response to an unparseable frame: like a response, but `id` is -1.
#[derive(Debug, Serialize)]
pub struct ParseErrorResponse {
    pub error: ErrorObject,
    pub id: i64,
}

/// A notification we send.
#[derive(Debug, Serialize)]
pub struct Notification<'a, P: Serialize> {
    pub method: &'a str,
    pub params: P,
}

// ---------------------------------------------------------------- handshake

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    pub client_name: String,
    #[serde(default)]
    pub resume_session_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResponse {
    pub session_id: String,
    pub environment_info: EnvironmentInfo,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentInfo {
    pub shell: ShellInfo,
    pub executor_version: String,
    pub cwd: Option<String>,
    pub user_home_dir: String,
    pub platform_os: String,
    pub capabilities: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShellInfo {
    pub name: String,
    pub path: String,
}

#[derive(Debug, Serialize)]
pub struct EnvironmentStatusResponse {
    pub status: &'static str,
}

// ---------------------------------------------------------------- processes

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStartParams {
    pub process_id: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub env: BTreeMap<String, String>,
    pub tty: bool,
    #[serde(default)]
    pub pipe_stdin: bool,
    #[serde(default)]
    pub arg0: Option<String>,
    #[serde(default)]
    pub env_policy: Option<EnvPolicy>,
}

/// Server-side environment construction (PROTOCOL.md §6.8).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvPolicy {
    pub inherit: EnvInherit,
    pub ignore_default_excludes: bool,
    pub exclude: Vec<String>,
    pub set: BTreeMap<String, String>,
    pub include_only: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvInherit {
    All,
    None,
    Core,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStartResponse {
    pub process_id: String,
    pub sandbox_type: &'static str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessReadParams {
    pub process_id: String,
    #[serde(default)]
    pub after_seq: Option<u64>,
    #[serde(default)]
    pub max_bytes: Option<usize>,
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputChunkWire {
    pub seq: u64,
    pub stream: StreamName,
    pub chunk: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessReadResponse {
    pub chunks: Vec<OutputChunkWire>,
    pub next_seq: u64,
    pub exited: bool,
    pub exit_code: Option<i32>,
    pub closed: bool,
    pub failure: Option<String>,
    pub sandbox_denied: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessWriteParams {
    pub process_id: String,
    pub chunk: String,
    pub write_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WriteStatus {
    Accepted,
    UnknownProcess,
    StdinClosed,
    Starting,
}

#[derive(Debug, Serialize)]
pub struct ProcessWriteResponse {
    pub status: WriteStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSignalParams {
    pub process_id: String,
    pub signal: SignalName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalName {
    Interrupt,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessTerminateParams {
    pub process_id: String,
}

#[derive(Debug, Serialize)]
pub struct ProcessTerminateResponse {
    pub running: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamName {
    Stdout,
    Stderr,
    Pty,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessOutputNotification<'a> {
    pub process_id: &'a str,
    pub seq: u64,
    pub stream: StreamName,
    pub chunk: String,
}

impl StreamName {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamName::Stdout => "stdout",
            StreamName::Stderr => "stderr",
            StreamName::Pty => "pty",
        }
    }
}

/// The `process/output` notification as JSON text, byte for byte what
/// serializing [`ProcessOutputNotification`] in a [`Notification`] gives,
/// built without the intermediate base64 `String` and without serde's scan
/// of it for characters to escape (base64 has none): this is the one
/// message that carries bulk data.
pub fn process_output_json(process_id: &str, seq: u64, stream: StreamName, data: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(96 + process_id.len() + data.len().div_ceil(3) * 4);
    out.push_str(r#"{"method":"process/output","params":{"processId":"#);
    // Ids are client-chosen strings: escaped as serde would.
    match serde_json::to_string(process_id) {
        Ok(id) => out.push_str(&id),
        Err(_) => out.push_str("\"\""),
    }
    let _ = write!(out, r#","seq":{seq},"stream":"{}","chunk":""#, stream.as_str());
    crate::b64::encode_into(data, &mut out);
    out.push_str("\"}}");
    out
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessExitedNotification<'a> {
    pub process_id: &'a str,
    pub seq: u64,
    pub exit_code: i32,
    pub sandbox_denied: bool,
    /// Our extension: what the command used. Clients that do not know the
    /// field ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ProcessUsage>,
}

/// Resource use of one finished command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessUsage {
    /// From `process/start` to exit.
    pub wall_ms: u64,
    /// CPU time of its wasm instances, counted in epoch ticks.
    pub cpu_ms: u64,
    /// The largest linear memory one instance grew to.
    pub peak_memory_bytes: u64,
    /// Bytes written to stdout, stderr or the terminal.
    pub output_bytes: u64,
    /// Wasm instances the command started.
    pub instances: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessClosedNotification<'a> {
    pub process_id: &'a str,
    pub seq: u64,
}

// ---------------------------------------------------------------- filesystem

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsPathParams {
    pub path: String,
    #[serde(default)]
    pub follow_symlinks: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsWriteFileParams {
    pub path: String,
    pub data_base64: String,
    #[serde(default)]
    pub follow_symlinks: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsCreateDirectoryParams {
    pub path: String,
    #[serde(default)]
    pub recursive: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsRemoveParams {
    pub path: String,
    #[serde(default)]
    pub recursive: Option<bool>,
    #[serde(default)]
    pub force: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsCopyParams {
    pub source_path: String,
    pub destination_path: String,
    pub recursive: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsReadFileResponse {
    pub data_base64: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsMetadataResponse {
    pub is_directory: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    pub size: u64,
    pub created_at_ms: i64,
    pub modified_at_ms: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsDirectoryEntry {
    pub file_name: String,
    pub is_directory: bool,
    pub is_file: bool,
}

#[derive(Debug, Serialize)]
pub struct FsReadDirectoryResponse {
    pub entries: Vec<FsDirectoryEntry>,
}

#[derive(Debug, Serialize)]
pub struct FsCanonicalizeResponse {
    pub path: String,
}

/// `{}`: the result of methods that return nothing.
#[derive(Debug, Serialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_round_trip_verbatim() {
        let big: RequestId = serde_json::from_str("9223372036854775807").expect("i64 id");
        assert_eq!(big, RequestId::Int(i64::MAX));
        let s: RequestId = serde_json::from_str("\"abc\"").expect("string id");
        assert_eq!(serde_json::to_string(&s).expect("serialize"), "\"abc\"");
    }

    #[test]
    fn start_params_ignore_unknown_fields() {
        let p: ProcessStartParams = serde_json::from_str(
            r#"{"processId":"1","argv":["a"],"cwd":"file:///w","env":{},"tty":false,
                "metadata":{"threadId":"x"},"sandbox":null,"enforceManagedNetwork":false}"#,
        )
        .expect("decodes");
        assert_eq!(p.argv, vec!["a"]);
        assert!(!p.pipe_stdin);
    }

    #[test]
    fn unknown_signal_is_rejected_with_serde_text() {
        let e = serde_json::from_str::<ProcessSignalParams>(r#"{"processId":"1","signal":"kill"}"#)
            .expect_err("kill is not a signal we accept");
        assert!(e.to_string().contains("unknown variant `kill`, expected `interrupt`"), "{e}");
    }
}

#[cfg(test)]
mod output_json_tests {
    use super::*;

    #[test]
    fn hand_built_output_notification_matches_serde() {
        use base64::Engine as _;
        for (id, data) in [
            ("p1", &b"hello\n"[..]),
            ("we\"ird\\id\u{1}é", &[0u8, 255, 10, 13][..]),
            ("", &b""[..]),
        ] {
            for stream in [StreamName::Stdout, StreamName::Stderr, StreamName::Pty] {
                let chunk = base64::engine::general_purpose::STANDARD.encode(data);
                let params = ProcessOutputNotification { process_id: id, seq: 42, stream, chunk };
                let expected =
                    serde_json::to_string(&Notification { method: "process/output", params })
                        .expect("json");
                assert_eq!(process_output_json(id, 42, stream, data), expected);
            }
        }
    }
}
