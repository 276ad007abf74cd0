//! `run`'s part in a fleet run: the flags (`--label`, `--fleet-nodes`,
//! `--fleet-wait`, `--no-fleet`), the checks that a scenario with `fleet:`
//! can be one, and the join, after which the run's restarts wait for leases.

use crate::args::parse_duration;
use anyhow::{Result, bail};
use bounce_agent::fleet::FleetClient;
use bounce_agent::scenario::{FleetSection, Scenario};
use bounce_agent::stream::Collector;
use bounce_agent::target::ResolvedTarget;
use bounce_wire::lease::{FleetTerms, Join, Restart, parse_label};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(clap::Args)]
pub struct FleetArgs {
    /// A label of this node, NAME=VALUE (repeatable): what a fleet limit's
    /// `{label.NAME}` key renders from, e.g. --label rack=r1.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// How many nodes the fleet run has (every agent of the run gives the
    /// same number): the fleet opens, and restarts start, once that many
    /// have joined. Needed when the scenario has `fleet:`.
    #[arg(long)]
    fleet_nodes: Option<u32>,
    /// How long to wait without progress in a fleet run: for the other
    /// nodes to join, or for an away collector to answer (then the run ends
    /// as after Ctrl-C; results stay in the spool).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    fleet_wait: Duration,
    /// Run a scenario that has `fleet:` alone, without leases (its fleet
    /// limits are then not held by anyone).
    #[arg(long)]
    no_fleet: bool,
}

/// A fleet run about to join: checked before anything is resolved.
pub struct FleetPlan<'a> {
    section: &'a FleetSection,
    collector: Collector,
    run_id: String,
    nodes: u32,
}

impl FleetArgs {
    /// The fleet run this is, if it is one; refused when it cannot be.
    pub fn plan<'a>(
        &self,
        scenario: &'a Scenario,
        collector: Option<&Collector>,
        run_id: Option<&str>,
    ) -> Result<Option<FleetPlan<'a>>> {
        let Some(section) = &scenario.fleet else {
            if self.fleet_nodes.is_some() {
                bail!("--fleet-nodes: the scenario has no fleet: section (nothing to lease)");
            }
            return Ok(None);
        };
        if self.no_fleet {
            eprintln!("warning: --no-fleet: the scenario's fleet limits are not held by anyone");
            return Ok(None);
        }
        let (Some(collector), Some(run_id), Some(nodes)) = (collector, run_id, self.fleet_nodes)
        else {
            bail!(
                "{}: a scenario with fleet: is a fleet run: give --collector URL, --run-id ID and --fleet-nodes N (the same on every node), or --no-fleet to run it alone",
                scenario.file.display()
            );
        };
        if nodes == 0 {
            bail!("--fleet-nodes must be at least 1");
        }
        Ok(Some(FleetPlan {
            section,
            collector: collector.clone(),
            run_id: run_id.into(),
            nodes,
        }))
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.labels.iter().cloned().collect()
    }

    pub fn wait(&self) -> Duration {
        self.fleet_wait
    }
}

impl FleetPlan<'_> {
    /// Joins as `node` and waits until every node has; the client then
    /// gates the run's restarts.
    pub async fn join(
        self,
        args: &FleetArgs,
        scenario: &Scenario,
        node: &str,
        targets: &[ResolvedTarget],
    ) -> Result<FleetClient> {
        let restarts = targets
            .iter()
            .map(|t| Restart::of(&t.target, &t.service, 1))
            .collect();
        let client = FleetClient::new(
            self.collector,
            &self.run_id,
            node.into(),
            self.section.order,
            args.wait(),
            restarts,
        );
        let join = Join {
            labels: args.labels(),
            terms: FleetTerms {
                deployment: scenario.deployment.to_string(),
                scenario: scenario.name.to_string(),
                limits: self.section.limits.clone(),
                nodes: self.nodes,
                node_concurrency: scenario.concurrency,
                lease_ttl_ms: self.section.lease_ttl.as_millis() as u64,
            },
        };
        eprintln!(
            "fleet run {}: joining as {node} ({} node(s) in all)",
            self.run_id, self.nodes
        );
        client.join(join).await.map_err(|e| {
            anyhow::anyhow!("fleet run {}: {e} (nothing was restarted)", self.run_id)
        })?;
        Ok(client)
    }
}
