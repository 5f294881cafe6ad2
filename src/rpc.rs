//! The JSON-RPC envelope: decoding one frame into a request, a notification
//! or garbage, typed params, and the one place where domain errors become
//! wire errors (codes and messages the Codex client relies on).

use crate::fs::{FsError, UriError};
use crate::protocol::{
    ErrorObject, IncomingMessage, ParseErrorResponse, RequestId, Response, code,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io;

/// What a connection's writer is handed: one serialized message, or several
/// that go out together (one flush, so one write for a command's answer,
/// output, exit and close).
#[derive(Debug)]
pub enum Queued {
    One(String),
    Batch(Vec<String>),
}

impl From<String> for Queued {
    fn from(text: String) -> Self {
        Queued::One(text)
    }
}

/// An error answer: a stable code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    /// Machine-readable detail the client matches on, if any.
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }
    /// A `process/start` whose program does not exist, as the reference
    /// answers it (Codex's `ProcessStartErrorData`).
    pub fn spawn_not_found() -> Self {
        Self {
            data: Some(serde_json::json!({"kind": "spawnNotFound"})),
            ..Self::internal(io::Error::from_raw_os_error(2).to_string())
        }
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_REQUEST, message)
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(code::NOT_FOUND, message)
    }
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            code::METHOD_NOT_FOUND,
            format!("exec-server stub does not implement `{method}` yet"),
        )
    }
}

/// io errors as the reference reports them: the kind picks the code, the
/// message is Rust's `io::Error` text (`No such file or directory (os error 2)`).
pub fn io_error(e: &io::Error) -> RpcError {
    let message = io_message(e);
    match e.kind() {
        io::ErrorKind::NotFound => RpcError::not_found(message),
        io::ErrorKind::PermissionDenied => RpcError::invalid_request(message),
        _ => RpcError::internal(message),
    }
}

/// `io::Error`'s display, but with an OS-style message for errors built from
/// a bare kind (`No such file or directory (os error 2)`), so clients always
/// see the familiar text.
fn io_message(e: &io::Error) -> String {
    if e.raw_os_error().is_some() || e.get_ref().is_some() {
        return e.to_string();
    }
    let errno = match e.kind() {
        io::ErrorKind::NotFound => 2,
        io::ErrorKind::PermissionDenied => 13,
        io::ErrorKind::AlreadyExists => 17,
        io::ErrorKind::NotADirectory => 20,
        io::ErrorKind::IsADirectory => 21,
        io::ErrorKind::DirectoryNotEmpty => 39,
        _ => return e.to_string(),
    };
    io::Error::from_raw_os_error(errno).to_string()
}

impl From<FsError> for RpcError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Uri(u) => u.into(),
            FsError::Io(io) => io_error(&io),
            FsError::Invalid(m) => RpcError::invalid_request(m),
            FsError::PermissionDenied => {
                RpcError::invalid_request("Permission denied (os error 13)")
            }
            FsError::Limit(m) => RpcError::invalid_request(m),
        }
    }
}

impl From<UriError> for RpcError {
    fn from(e: UriError) -> Self {
        match e {
            UriError::NotLocal(_) => RpcError::invalid_request(e.to_string()),
            _ => RpcError::invalid_params(e.to_string()),
        }
    }
}

/// What one frame turned out to be.
#[derive(Debug)]
pub enum Incoming {
    Request {
        id: RequestId,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
    },
    /// A response or error frame from the client: we never send requests,
    /// so it cannot match anything.
    StrayResponse,
    /// Not JSON, or not an object: answered with `id: -1`.
    Malformed(String),
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Incoming {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Incoming::Malformed(format!("failed to parse JSON-RPC message: {e}")),
    };
    if !value.is_object() {
        return Incoming::Malformed(
            "failed to parse JSON-RPC message: expected a JSON-RPC object".into(),
        );
    }
    let msg: IncomingMessage = match serde_json::from_value(value) {
        Ok(m) => m,
        Err(e) => return Incoming::Malformed(format!("failed to parse JSON-RPC message: {e}")),
    };
    match (msg.id, msg.method) {
        (Some(id), Some(method)) => Incoming::Request { id, method, params: msg.params },
        (None, Some(method)) => Incoming::Notification { method },
        (Some(_), None) if msg.result.is_some() || msg.error.is_some() => Incoming::StrayResponse,
        _ => Incoming::Malformed(
            "failed to parse JSON-RPC message: expected a JSON-RPC object".into(),
        ),
    }
}

/// Decodes params into `T`; a missing `params` decodes as `null`, as serde
/// in the reference does (so `initialize` without params gets its message).
pub fn params<T: DeserializeOwned>(params: Option<Value>) -> Result<T, RpcError> {
    let value = params.unwrap_or(Value::Null);
    if value.is_array() {
        return Err(RpcError::invalid_params("invalid type: sequence, expected a params object"));
    }
    serde_json::from_value(value).map_err(|e| RpcError::invalid_params(e.to_string()))
}

/// Serializes a success or error response to frame text.
pub fn response_text(id: RequestId, result: Result<Value, RpcError>) -> String {
    let resp = match result {
        Ok(v) => Response { id, result: Some(v), error: None },
        Err(e) => Response {
            id,
            result: None,
            error: Some(ErrorObject { code: e.code, message: e.message, data: e.data }),
        },
    };
    serde_json::to_string(&resp).unwrap_or_else(|_| String::from("{}"))
}

/// A response whose result is already JSON text.
pub fn raw_response_text(id: RequestId, result: Result<String, RpcError>) -> String {
    match result {
        Ok(raw) => {
            let id = serde_json::to_string(&id).unwrap_or_else(|_| String::from("null"));
            let mut out = String::with_capacity(raw.len() + id.len() + 20);
            out.push_str(r#"{"id":"#);
            out.push_str(&id);
            out.push_str(r#","result":"#);
            out.push_str(&raw);
            out.push('}');
            out
        }
        Err(e) => response_text(id, Err(e)),
    }
}

/// The answer to a malformed frame.
pub fn parse_error_text(message: String) -> String {
    let resp = ParseErrorResponse {
        error: ErrorObject { code: code::INVALID_REQUEST, message, data: None },
        id: -1,
    };
    serde_json::to_string(&resp).unwrap_or_else(|_| String::from("{}"))
}

/// Any serializable result as a JSON value.
pub fn to_value<T: Serialize>(v: T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_classified() {
        assert!(matches!(decode("nope"), Incoming::Malformed(_)));
        assert!(matches!(
            decode("[1,2]"),
            Incoming::Malformed(m) if m.contains("expected a JSON-RPC object")
        ));
        assert!(matches!(decode("3"), Incoming::Malformed(_)));
        assert!(matches!(decode(r#"{"id":1,"result":{}}"#), Incoming::StrayResponse));
        assert!(matches!(decode(r#"{"method":"initialized"}"#), Incoming::Notification { .. }));
        assert!(matches!(
            decode(r#"{"id":"x","method":"m","params":{},"jsonrpc":"2.0","trace":{}}"#),
            Incoming::Request { id: RequestId::Str(_), .. }
        ));
    }

    #[test]
    fn raw_responses_match_serialized_ones() {
        let raw = r#"{"dataBase64":"aGk="}"#.to_owned();
        let value: Value = serde_json::from_str(&raw).expect("json");
        for id in [RequestId::Int(7), RequestId::Str("a\"b".into())] {
            assert_eq!(
                raw_response_text(id.clone(), Ok(raw.clone())),
                response_text(id.clone(), Ok(value.clone()))
            );
            let e = RpcError::not_found("gone");
            assert_eq!(raw_response_text(id.clone(), Err(e.clone())), response_text(id, Err(e)));
        }
    }

    #[test]
    fn fs_errors_map_to_client_codes() {
        let nf: RpcError = FsError::Io(io::Error::from(io::ErrorKind::NotFound)).into();
        assert_eq!(nf, RpcError::not_found("No such file or directory (os error 2)"));
        let pd: RpcError = FsError::PermissionDenied.into();
        assert_eq!(pd.code, code::INVALID_REQUEST);
        let exists: RpcError = FsError::Io(io::Error::from_raw_os_error(17)).into();
        assert_eq!(exists, RpcError::internal("File exists (os error 17)"));
        let uri: RpcError = FsError::Uri(UriError::RelativeWithoutBase).into();
        assert_eq!(uri, RpcError::invalid_params("invalid URI: relative URL without a base"));
    }

    #[test]
    fn missing_params_decode_as_null() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct InitializeParams {
            #[serde(rename = "clientName")]
            client_name: String,
        }
        let e = params::<InitializeParams>(None).expect_err("null params");
        assert!(
            e.message.contains("invalid type: null, expected struct InitializeParams"),
            "{}",
            e.message
        );
    }
}
