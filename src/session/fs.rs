//! Handlers of the `fs/*` methods: decode, run on the blocking pool against
//! the workspace capability, encode. Errors map to codes in `rpc`.

use crate::fs::{FsError, Workspace};
use crate::protocol::*;
use crate::rpc::{self, RpcError};
use serde::Serialize;
use serde_json::Value;

/// Runs a filesystem operation on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<Value, RpcError>
where
    T: Serialize + Send + 'static,
    F: FnOnce() -> Result<T, FsError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => rpc::to_value(v),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => {
            tracing::error!(error = %e, "filesystem task failed");
            Err(RpcError::internal("internal error"))
        }
    }
}

/// The result as JSON text: `{"dataBase64":"…"}`, as serializing
/// `FsReadFileResponse` gives (base64 needs no escaping).
pub async fn fs_read_file(ws: Workspace, p: FsPathParams, max: u64) -> Result<String, RpcError> {
    let task = tokio::task::spawn_blocking(move || -> Result<String, FsError> {
        let data = ws.read_file(&p.path, p.follow_symlinks.unwrap_or(true), max)?;
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4 + 20);
        out.push_str(r#"{"dataBase64":""#);
        crate::b64::encode_into(&data, &mut out);
        out.push_str(r#""}"#);
        Ok(out)
    });
    match task.await {
        Ok(r) => r.map_err(RpcError::from),
        Err(e) => {
            tracing::error!(error = %e, "filesystem task failed");
            Err(RpcError::internal("internal error"))
        }
    }
}

pub async fn fs_write_file(
    ws: Workspace,
    p: FsWriteFileParams,
    max: u64,
) -> Result<Value, RpcError> {
    blocking(move || {
        let data = crate::b64::decode(p.data_base64.as_bytes()).map_err(|e| {
            FsError::Invalid(format!("fs/writeFile requires valid base64 dataBase64: {e}"))
        })?;
        if data.len() as u64 > max {
            return Err(FsError::Limit(format!(
                "data is {} bytes, over the fs/writeFile limit of {max} bytes (max-file)",
                data.len()
            )));
        }
        ws.write_file(&p.path, &data, p.follow_symlinks.unwrap_or(true))?;
        Ok(Empty {})
    })
    .await
}

pub async fn fs_create_directory(
    ws: Workspace,
    p: FsCreateDirectoryParams,
) -> Result<Value, RpcError> {
    blocking(move || ws.create_directory(&p.path, p.recursive.unwrap_or(true)).map(|()| Empty {}))
        .await
}

pub async fn fs_get_metadata(ws: Workspace, p: FsPathParams) -> Result<Value, RpcError> {
    blocking(move || {
        let md = ws.get_metadata(&p.path, p.follow_symlinks.unwrap_or(true))?;
        Ok(FsMetadataResponse {
            is_directory: md.is_directory,
            is_file: md.is_file,
            is_symlink: md.is_symlink,
            size: md.size,
            created_at_ms: md.created_at_ms,
            modified_at_ms: md.modified_at_ms,
        })
    })
    .await
}

pub async fn fs_read_directory(ws: Workspace, p: FsPathParams) -> Result<Value, RpcError> {
    blocking(move || {
        let entries = ws
            .read_directory(&p.path)?
            .into_iter()
            .map(|e| FsDirectoryEntry {
                file_name: e.file_name,
                is_directory: e.is_directory,
                is_file: e.is_file,
            })
            .collect();
        Ok(FsReadDirectoryResponse { entries })
    })
    .await
}

pub async fn fs_remove(ws: Workspace, p: FsRemoveParams) -> Result<Value, RpcError> {
    blocking(move || {
        ws.remove(&p.path, p.recursive.unwrap_or(true), p.force.unwrap_or(true)).map(|()| Empty {})
    })
    .await
}

pub async fn fs_copy(ws: Workspace, p: FsCopyParams) -> Result<Value, RpcError> {
    blocking(move || ws.copy(&p.source_path, &p.destination_path, p.recursive).map(|()| Empty {}))
        .await
}

pub async fn fs_canonicalize(ws: Workspace, p: FsPathParams) -> Result<Value, RpcError> {
    blocking(move || ws.canonicalize(&p.path).map(|path| FsCanonicalizeResponse { path })).await
}
