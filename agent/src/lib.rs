//! bounce-agent: restarts targets on one node and times each phase.
//!
//! Map (see ARCHITECTURE.md): `scenario` reads and checks the YAML; `target`
//! is the trait every source of truth implements; `docker` is the Docker
//! engine's; `probes` are the agent's own readiness checks; `timeline` is the
//! one record they all fill; `runner` dispatches restarts within the
//! scenario's limits; `output` writes the run's folder; `plan` prints what a
//! run would do.

pub mod abort;
pub mod ceph;
pub mod docker;
pub mod facts;
pub mod output;
pub mod plan;
pub mod probes;
pub mod readiness;
pub mod runner;
pub mod scenario;
pub mod sources;
pub mod stream;
pub mod systemd;
pub mod target;
pub mod timeline;
