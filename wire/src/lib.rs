//! The vocabulary that the agent writes and the collector reads.
//!
//! Kept small on purpose: only types that cross the agent/collector boundary
//! (files in an output folder today, the ingest API later) live here.

pub mod civil;
pub mod hist;
pub mod ingest;
pub mod summary;
pub mod timeline;

pub use hist::{HistError, PhaseHistograms};
pub use summary::{NodeFacts, RunSummary, SummaryRow};
pub use timeline::{
    Action, Boundary, BoundaryName, Clock, EngineEvent, Outcome, Phase, ProbeReport, Source,
    TargetRef, TimelineRecord, UnitReport,
};
