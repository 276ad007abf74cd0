//! The vocabulary that the agent writes and the collector reads.
//!
//! Kept small on purpose: only what crosses the agent/collector boundary
//! lives here: the run folder's files and their reader, the ingest API,
//! the export format reports are made from, a fleet run's limits and the
//! lease protocol.

pub mod civil;
pub mod export;
pub mod folder;
pub mod hist;
pub mod ingest;
pub mod lease;
pub mod limits;
pub mod run;
pub mod sparse;
pub mod summary;
pub mod tally;
pub mod timeline;

pub use export::RunData;
pub use folder::{FolderError, RunFolder};
pub use hist::{HistError, PhaseHistograms};
pub use run::{NodeFacts, RunId, RunIdError, RunIdentity};
pub use summary::{RunSummary, SummaryRow};
pub use timeline::{
    Action, Boundary, BoundaryName, Cause, Clock, EngineEvent, Origin, Outcome, Phase, ProbeReport,
    Recreated, Source, TargetRef, TimelineRecord, UnitReport,
};
