//! Ceph as a source of truth (issue: Ceph OSD restarts). Two ways to ask:
//!
//! - [`asok`]: an OSD's admin socket, spoken natively: one JSON command per
//!   connection, ~0.2 ms, no process start; it says what the OSD itself
//!   thinks (`status`: `preboot` → `booting` → `active`).
//! - [`cli`]: the cluster's view through the `ceph` CLI (JSON output), with a
//!   configurable command prefix because on real nodes it is
//!   `docker exec ceph-mon-<host> ceph` or `cephadm shell --`. Each call
//!   costs 175-300 ms of Python start-up: fine for gates, too heavy for
//!   sub-second phase timing.

pub mod asok;
pub mod cli;
pub mod flags;
pub mod osd;
