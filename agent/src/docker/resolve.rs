//! Resolving `docker:` selectors: the containers whose names match, each
//! checked (running, a restart policy for `kill`, a health check for the
//! probes that need one, a timeout longer than the stop timeout); and what
//! other drivers ask of the engine about a container (a unit's wrapped
//! container, an OSD's container).

use super::{
    ContainerDetail, ContainerTarget, DockerEngine, ENGINE_DEFAULT_STOP_TIMEOUT, health_of,
};
use crate::readiness;
use crate::scenario::{DockerSelector, TargetSpec};
use crate::target::{Action, PlanError, ResolvedTarget};
use bollard::models::RestartPolicyNameEnum;
use bollard::query_parameters::ListContainersOptions;
use bounce_wire::TargetRef;
use std::sync::Arc;
use std::time::Duration;

impl DockerEngine {
    /// What the engine says about one container (for units that wrap one).
    pub async fn container_detail(
        &self,
        name: &str,
    ) -> Result<ContainerDetail, bollard::errors::Error> {
        let info = self.client().inspect_container(name, None).await?;
        let config = info.config.unwrap_or_default();
        let (health_cmd, health_timeout) = health_of(&config);
        Ok(ContainerDetail {
            id: info.id.unwrap_or_default(),
            image: config.image.unwrap_or_default(),
            restart_policy: "managed by its unit".into(),
            requested_stop_timeout: None,
            effective_stop_timeout: config
                .stop_timeout
                .map(|t| t.max(0) as u32)
                .unwrap_or(ENGINE_DEFAULT_STOP_TIMEOUT),
            health_cmd,
            health_timeout,
        })
    }

    /// The names of every container, running or not.
    pub async fn container_names(&self) -> Result<Vec<String>, bollard::errors::Error> {
        let list = self
            .client()
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        Ok(list
            .iter()
            .filter_map(|c| c.names.as_ref()?.first().cloned())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    /// An OSD's container: its state (`running`...) and what a restart needs.
    pub async fn osd_container(
        &self,
        name: &str,
    ) -> Result<(String, ContainerDetail), bollard::errors::Error> {
        let info = self.client().inspect_container(name, None).await?;
        let state = info
            .state
            .as_ref()
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        let policy = info
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut detail = self.container_detail(name).await?;
        detail.restart_policy = if policy.is_empty() {
            "no".into()
        } else {
            policy
        };
        Ok((state, detail))
    }
}

/// Every container one `docker:` entry selects, in name order.
pub(super) async fn resolve_entry(
    engine: &Arc<DockerEngine>,
    index: usize,
    selector: &DockerSelector,
    spec: &TargetSpec,
) -> Result<Vec<ResolvedTarget>, PlanError> {
    let names = engine
        .container_names()
        .await
        .map_err(|e| PlanError::Engine(format!("Docker engine: {e}")))?;
    let mut matched = Vec::new();
    for pattern in &selector.names.0 {
        let hits: Vec<&String> = names.iter().filter(|n| pattern.matches(n)).collect();
        if hits.is_empty() {
            return Err(PlanError::NoMatch {
                index,
                pattern: pattern.text.clone(),
            });
        }
        matched.extend(hits.into_iter().cloned());
    }
    matched.sort();
    matched.dedup();
    let mut out = Vec::new();
    for name in matched {
        out.push(resolve_one(engine, index, spec, &name).await?);
    }
    Ok(out)
}

async fn resolve_one(
    engine: &Arc<DockerEngine>,
    index: usize,
    spec: &TargetSpec,
    name: &str,
) -> Result<ResolvedTarget, PlanError> {
    let info = engine
        .client()
        .inspect_container(name, None)
        .await
        .map_err(|e| PlanError::Engine(format!("inspecting {name}: {e}")))?;
    let id = info.id.clone().unwrap_or_default();
    let state = info.state.clone().unwrap_or_default();
    if state.running != Some(true) {
        return Err(PlanError::NotRunning {
            index,
            name: name.into(),
            state: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
        });
    }
    let config = info.config.clone().unwrap_or_default();
    let policy = info
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.as_ref())
        .and_then(|p| p.name)
        .unwrap_or(RestartPolicyNameEnum::EMPTY);
    let policy_text = match policy {
        RestartPolicyNameEnum::EMPTY | RestartPolicyNameEnum::NO => "no".to_string(),
        other => other.to_string(),
    };
    if spec.action == Action::Kill && policy_text == "no" {
        return Err(PlanError::NoRestartPolicy {
            index,
            name: name.into(),
            policy: policy_text,
        });
    }
    let (health_cmd, health_timeout) = health_of(&config);
    let ready = readiness::probes_for(spec, health_cmd.is_some(), index, name)?;
    let requested_stop_timeout = spec.stop_timeout.map(|t| t.0);
    let effective_stop_timeout = requested_stop_timeout
        .or(config.stop_timeout.map(|t| t.max(0) as u32))
        .unwrap_or(ENGINE_DEFAULT_STOP_TIMEOUT);
    if spec.action != Action::Kill
        && spec.timeout.0 <= Duration::from_secs(effective_stop_timeout as u64)
    {
        return Err(PlanError::TimeoutTooShort {
            index,
            name: name.into(),
            timeout: spec.timeout.0,
            stop_timeout: effective_stop_timeout,
        });
    }
    let image = config.image.clone().unwrap_or_default();
    let facts = format!(
        "running, image {image}, restart policy {policy_text}, stop timeout {effective_stop_timeout}s, {}",
        if health_cmd.is_some() {
            "health check"
        } else {
            "no health check"
        }
    );
    Ok(ResolvedTarget {
        spec_index: index,
        target: TargetRef::Docker {
            name: name.into(),
            id: id.clone(),
        },
        service: name.into(),
        action: spec.action,
        ready,
        timeout: spec.timeout.0,
        kind: format!("docker {}", &id[..id.len().min(12)]),
        claim: format!("docker {name}"),
        facts,
        handle: Arc::new(ContainerTarget {
            engine: engine.clone(),
            detail: ContainerDetail {
                id,
                image,
                restart_policy: policy_text,
                requested_stop_timeout,
                effective_stop_timeout,
                health_cmd,
                health_timeout,
            },
        }),
    })
}
