//! A Ceph daemon's admin socket: connect (AF_UNIX), send the JSON command
//! followed by a NUL byte, read a 4-byte big-endian length, then that many
//! bytes. One command per connection. Errors come back as text starting
//! `ERROR:`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum AsokError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no answer within {secs:.1} s")]
    Timeout { path: PathBuf, secs: f64 },
    #[error("{path}: the daemon said {message}")]
    Daemon { path: PathBuf, message: String },
    #[error("{path}: the answer is not JSON: {reason}")]
    NotJson { path: PathBuf, reason: String },
}

/// The biggest answer accepted (a `status` is ~200 bytes; perf dumps are larger).
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// Sends one command (`{"prefix": ..., ...}`) and returns the JSON answer.
pub async fn command(socket: &Path, cmd: &Value, timeout: Duration) -> Result<Value, AsokError> {
    let io = |source| AsokError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await.map_err(io)?;
        let mut request = serde_json::to_vec(cmd).expect("commands serialize");
        request.push(0);
        stream.write_all(&request).await.map_err(io)?;
        let len = stream.read_u32().await.map_err(io)? as usize;
        if len > MAX_REPLY {
            return Err(io(std::io::Error::other(format!(
                "a {len}-byte answer is too large"
            ))));
        }
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await.map_err(io)?;
        Ok(body)
    };
    let body = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| AsokError::Timeout {
            path: socket.to_path_buf(),
            secs: timeout.as_secs_f64(),
        })??;
    let text = String::from_utf8_lossy(&body);
    if let Some(message) = text.strip_prefix("ERROR:") {
        return Err(AsokError::Daemon {
            path: socket.to_path_buf(),
            message: message.trim().to_string(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| AsokError::NotJson {
        path: socket.to_path_buf(),
        reason: format!("{e}: {}", text.chars().take(200).collect::<String>()),
    })
}

/// What an OSD says about itself (`status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct OsdStatus {
    pub whoami: u32,
    /// `preboot`, `booting`, `active`, `stopping`...
    pub state: String,
    pub oldest_map: u64,
    pub newest_map: u64,
    pub num_pgs: u64,
}

pub async fn osd_status(socket: &Path, timeout: Duration) -> Result<OsdStatus, AsokError> {
    let v = command(
        socket,
        &serde_json::json!({"prefix": "status", "format": "json"}),
        timeout,
    )
    .await?;
    serde_json::from_value(v).map_err(|e| AsokError::NotJson {
        path: socket.to_path_buf(),
        reason: e.to_string(),
    })
}
