//! The connection to the Docker engine, and what a restart does when the
//! engine goes away (dockerd restarted, its socket gone): the restart in
//! flight ends `failed` saying so, and the next one waits, within its own
//! timeout, for the engine to answer again on a fresh client before it acts.
//! The engine also carries the journal its restarts write their intents to.

use crate::abort::{Abort, Interrupt, bounded};
use crate::intent::Journal;
use bollard::Docker;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// How often to ask an engine that went away whether it is back.
const RECONNECT_POLL: Duration = Duration::from_millis(250);
/// One ping's bound: an engine that accepts but does not answer is not back.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine ({host}): {source}")]
    Connect {
        host: String,
        source: bollard::errors::Error,
    },
}

pub struct DockerEngine {
    /// Replaced by a fresh client when the engine came back: pooled
    /// connections to the engine that went away are dead.
    docker: RwLock<Docker>,
    /// Where the actor writes its intents (none: `plan`, which restarts nothing).
    pub(super) journal: Option<Arc<Journal>>,
}

pub(crate) fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// A client for `$DOCKER_HOST` or the local socket; connects lazily.
fn new_client() -> Result<Docker, bollard::errors::Error> {
    // Restart and stop answer only when done: the client timeout must
    // outlast any stop timeout; bounce's own deadlines bound every call.
    Ok(Docker::connect_with_local_defaults()?.with_timeout(Duration::from_secs(2 * 3600)))
}

/// An error of the way to the engine (the socket refused, the connection
/// closed mid-answer), as opposed to an answer of the engine (404, 409...).
pub fn is_transport(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        e,
        E::IOError { .. }
            | E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::SocketNotFoundError(_)
    )
}

/// The innermost cause of an error, the words an operator recognizes
/// ("Connection refused (os error 111)", "connection closed before message
/// completed"), rather than the client library's wrapping.
pub fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// Why a restart in flight ended when the engine went away.
pub fn went_away(cause: &str) -> String {
    format!(
        "the Docker engine went away during the restart ({cause}); boundaries seen before are kept"
    )
}

impl DockerEngine {
    /// Connects to `$DOCKER_HOST` or the local socket, and checks that the engine answers.
    pub async fn connect() -> Result<DockerEngine, DockerError> {
        let connect_err = |source| DockerError::Connect {
            host: docker_host(),
            source,
        };
        let docker = new_client().map_err(connect_err)?;
        docker.ping().await.map_err(connect_err)?;
        Ok(DockerEngine {
            docker: RwLock::new(docker),
            journal: None,
        })
    }

    /// Restarts through this engine record their intents in `journal`.
    pub fn with_journal(self, journal: Option<Arc<Journal>>) -> DockerEngine {
        DockerEngine { journal, ..self }
    }

    /// The current client (a cheap handle on a shared connection pool).
    pub fn client(&self) -> Docker {
        self.docker.read().expect("client lock").clone()
    }

    /// `(version, api_version)` of the engine.
    pub async fn version(&self) -> Option<(String, String)> {
        let v = self.client().version().await.ok()?;
        Some((
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default(),
        ))
    }

    /// Whether the engine answers a ping now, on the current client.
    async fn answers(&self) -> Result<(), String> {
        match tokio::time::timeout(PING_TIMEOUT, self.client().ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(cause(&e)),
            Err(_) => Err(format!("no answer within {}s", PING_TIMEOUT.as_secs())),
        }
    }

    /// Waits until the engine answers again, on a fresh client from the
    /// first failed ping on, bounded by the restart's deadline and the
    /// run's abort. What the last try said when it gives up.
    pub async fn wait_answering(
        &self,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<(), (Interrupt, String)> {
        let mut last = String::new();
        let waited = bounded(
            async {
                loop {
                    match self.answers().await {
                        Ok(()) => return,
                        Err(why) => last = why,
                    }
                    if let Ok(fresh) = new_client() {
                        *self.docker.write().expect("client lock") = fresh;
                    }
                    tokio::time::sleep(RECONNECT_POLL).await;
                }
            },
            deadline,
            abort,
        )
        .await;
        waited.map_err(|i| (i, last))
    }
}
