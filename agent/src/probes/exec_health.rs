//! `exec_health`: the container's own configured health command, run through
//! `docker exec`, so readiness is seen at the probe's interval instead of
//! Docker's health interval (kolla: 30 s).

use super::{Probe, TryFuture};
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;

pub struct ExecHealth {
    docker: Docker,
    container_id: String,
    cmd: Vec<String>,
}

impl ExecHealth {
    pub fn new(docker: Docker, container_id: String, cmd: Vec<String>) -> ExecHealth {
        ExecHealth {
            docker,
            container_id,
            cmd,
        }
    }
}

/// Docker's `Healthcheck.Test` to an argv: `["CMD", a, b]` → `[a, b]`,
/// `["CMD-SHELL", s]` → `["/bin/sh", "-c", s]`; `NONE` or empty → none.
pub fn health_command(test: &[String]) -> Option<Vec<String>> {
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        _ => None,
    }
}

impl Probe for ExecHealth {
    fn label(&self) -> String {
        "exec_health".into()
    }

    fn try_once(&self) -> TryFuture<'_> {
        Box::pin(async move {
            let exec = self
                .docker
                .create_exec(
                    &self.container_id,
                    CreateExecOptions {
                        cmd: Some(self.cmd.clone()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| format!("docker exec: {e}"))?;
            let mut tail = Vec::new();
            if let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(|e| format!("docker exec start: {e}"))?
            {
                // The stream ends when the command exits.
                while let Some(chunk) = output.next().await {
                    if let Ok(c) = chunk {
                        tail.extend_from_slice(&c.into_bytes());
                        if tail.len() > 512 {
                            tail.drain(..tail.len() - 512);
                        }
                    }
                }
            }
            let inspect = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .map_err(|e| format!("docker exec inspect: {e}"))?;
            match inspect.exit_code {
                Some(0) => Ok(()),
                code => Err(format!(
                    "health command exited {}: {}",
                    code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                    String::from_utf8_lossy(&tail).trim()
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn docker_health_tests_become_argv() {
        assert_eq!(
            health_command(&v(&["CMD", "healthcheck_curl", "http://x"])),
            Some(v(&["healthcheck_curl", "http://x"]))
        );
        assert_eq!(
            health_command(&v(&["CMD-SHELL", "nc -z 127.0.0.1 5672"])),
            Some(v(&["/bin/sh", "-c", "nc -z 127.0.0.1 5672"]))
        );
        assert_eq!(health_command(&v(&["NONE"])), None);
        assert_eq!(health_command(&[]), None);
    }
}
