//! The engine's side of undoing an intent (`intent.rs`): what a container
//! is now (running since when, restarting, down, gone) and starting it, on
//! the engine the intent names, whatever `DOCKER_HOST` says today.

use crate::intent::{Seen, UndoTarget};
use crate::target::BoxFuture;
use crate::timeline::parse_rfc3339_nanos;
use bollard::Docker;
use bollard::query_parameters::StartContainerOptions;

/// One container on one engine.
pub struct ContainerUndo {
    docker: Docker,
    id: String,
}

impl ContainerUndo {
    /// Connects to the engine at `docker_host` (`unix:///...`) and checks it answers.
    pub async fn connect(docker_host: &str, id: &str) -> Result<ContainerUndo, String> {
        let docker = Docker::connect_with_socket(docker_host, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| format!("cannot reach the Docker engine at {docker_host}: {e}"))?;
        docker
            .ping()
            .await
            .map_err(|e| format!("cannot reach the Docker engine at {docker_host}: {e}"))?;
        Ok(ContainerUndo {
            docker,
            id: id.to_string(),
        })
    }
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl UndoTarget for ContainerUndo {
    fn seen(&self) -> BoxFuture<'_, Result<Seen, String>> {
        Box::pin(async move {
            let info = match self.docker.inspect_container(&self.id, None).await {
                Ok(i) => i,
                Err(e) if is_404(&e) => return Ok(Seen::Gone),
                Err(e) => return Err(format!("inspect: {e}")),
            };
            let state = info.state.unwrap_or_default();
            if state.restarting == Some(true) {
                return Ok(Seen::ComingBack);
            }
            if state.running == Some(true) {
                let since = state.started_at.as_deref().and_then(parse_rfc3339_nanos);
                return Ok(Seen::Up {
                    since_unix_nanos: since.unwrap_or(0),
                });
            }
            Ok(Seen::Down(
                state.status.map(|s| s.to_string()).unwrap_or_default(),
            ))
        })
    }

    fn start(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let started = self
                .docker
                .start_container(&self.id, None::<StartContainerOptions>);
            match tokio::time::timeout_at(deadline, started).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("start: {e}")),
                Err(_) => Err("start: the engine did not answer in time".into()),
            }
        })
    }
}
