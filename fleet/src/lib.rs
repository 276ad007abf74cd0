//! A fleet run's cluster-wide limits and the lease book that holds them, in
//! the collector, across every agent of the run. Pure: no I/O, no clock
//! (time is passed in as [`Millis`]), every change an [`Event`].
//!
//! **Limits** (a scenario's `fleet:`): `max_in_flight`, restarts in flight
//! over the fleet (a count, or a % of the run's nodes: rounded down, at
//! least 1); keyed limits, at most `max` restarts in flight per key, the key
//! a template over the restart: `{node}`, `{kind}` (docker, systemd,
//! ceph_osd), `{service}`, `{target}`, `{label.NAME}` (the node's labels),
//! e.g. `service:{service}` max 1, `{label.rack}` max 2, or `ceph-osd` (one
//! key) max 1 with `kinds: [ceph_osd]`; `max_failures`, after that many
//! restarts not `ok` since the last resume the fleet pauses (default 1).
//! A template needing a label some node lacks refuses the fleet at open:
//! leaving the key out would silently lift a failure-domain limit.
//!
//! **Leases**: an agent asks for one restart (node, kind, service, target,
//! iteration); the book renders its keys and queues it, numbered in the
//! order asked. A waiting request is granted when its node has a free slot
//! (the scenario's `concurrency`), `max_in_flight` has one, and on each of
//! its keys a unit is left after one unit is kept for every earlier waiting
//! request of an available node (grants go lowest number first). So on a
//! key, first asked is first served and a later request never delays an
//! earlier one; a request whose keys are busy does not stop requests on
//! other keys (no head-of-line blocking). The one shared limit, in-flight,
//! is not kept for key-blocked requests: the lease they wait for returns its
//! in-flight slot with its key, and a request that waits only for in-flight
//! is served before any later one. A node that is busy (at its concurrency)
//! keeps nothing, so its queued requests cannot idle a key. No starvation:
//! a request's keys drain to it in finitely many returns.
//!
//! **Lost**: a lease not renewed within the TTL expires, its node is lost,
//! its slots stay taken (the service may be down) and the fleet pauses;
//! `resolve` frees them and takes the node out of the run, `resume`
//! (refused while a node is lost) grants again. A new agent of a resolved
//! node may `join` again: the node is back under its next epoch (the
//! resolved-out agent's calls, at the old epoch, are refused), and asks
//! anew; an agent of a lost node that is not resolved yet is refused. Pause stops grants (in-flight restarts go on); abort answers
//! every waiting request "abort" and grants nothing more.
//!
//! **Replay**: live calls decide and record ([`Step::events`], appended in
//! the answer's transaction); [`LeaseBook::replay`] applies them through the
//! same transition, re-deciding nothing, so a collector killed at any point
//! comes back with the exact state and never grants twice; `recovered`
//! then gives leases in flight a fresh TTL.

mod book;
mod event;
mod status;
#[cfg(test)]
mod tests;
mod words;

pub use book::{LeaseBook, LeaseRequest, OpenError, Refusal, ReplayError, Step, Ticket};
pub use bounce_wire::lease::{LeaseId, Restart};
pub use bounce_wire::limits::{
    FIELDS, Facts, InFlight, KeyLimit, Kind, LimitError, Limits, Max, MissingLabel, Template,
};
pub use event::{Event, FleetSpec, Key, Millis, NodeSpec, PauseReason, Withdrawal};
pub use status::{
    Failures, FleetState, FleetStatus, Held, LimitUse, NodeState, NodeStatus, Queued, Resolution,
};
pub use words::pause_words;
