//! bounce-agent: restarts targets on one node and times each phase.
//!
//! Map (see ARCHITECTURE.md): `scenario` reads and checks the YAML; `target`
//! is the seam every source of truth implements (`Driver` for a target
//! entry, `Restart` for one target); `sources` connects the driver of each
//! entry; `docker`, `systemd` and `ceph` are the sources of truth, each an
//! observer and an actor; `readiness` and `probes` say when a target is
//! ready; `timeline` is the one record they all fill; `runner` dispatches
//! restarts within the scenario's limits; `output` and `stream` write and
//! send the run; `plan` prints what a run would do; `intent` is the journal of steps
//! that leave a target down, `recover` undoes what a killed agent left.

pub mod abort;
pub mod ceph;
pub mod docker;
pub mod durable;
pub mod facts;
pub mod fleet;
pub mod intent;
pub mod output;
pub mod plan;
pub mod probes;
pub mod readiness;
pub mod recover;
pub mod runner;
pub mod scenario;
pub mod sources;
pub mod stream;
pub mod systemd;
pub mod target;
pub mod timeline;
pub mod watch;
