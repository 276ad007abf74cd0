//! Ceph as a source of truth (issue: Ceph OSD restarts). Two ways to ask:
//!
//! - [`asok`]: an OSD's admin socket, spoken natively: one JSON command per
//!   connection, ~0.2 ms, no process start; it says what the OSD itself
//!   thinks (`status`: `preboot` → `booting` → `active`).
//! - [`mon`]: the cluster's view (osdmap, PGs, health, flags) from the
//!   monitors, through the `ceph` CLI behind a configurable command prefix
//!   (on real nodes `docker exec ceph-mon-<host> ceph` or `cephadm shell --`;
//!   175-300 ms of Python start-up per call: fine for gates, heavy for
//!   sub-second phase timing) or through [`rados`], a librados session in
//!   the agent (~1 ms per call).

pub mod asok;
pub mod flags;
pub mod mon;
pub mod osd;
pub mod rados;
