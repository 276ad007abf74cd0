//! Ceph as a source of truth: [`osd`] is the driver of `ceph_osd` targets
//! (observer: the milestones; actor: gates and the restart), [`flags`] the
//! flags bounce sets and unsets. The cluster is asked two ways:
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
