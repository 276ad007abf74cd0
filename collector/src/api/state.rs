//! What every request handler shares: the store (its single writer and a
//! reading connection), the tokens, the failure limit and audit log, the flags `serve` was given, the
//! in-memory ingest counters and the fleet runs.

use crate::api::audit::Audit;
use crate::api::auth::Tokens;
use crate::api::limit::FailureLimit;
use crate::fleet::Fleets;
use crate::metrics::IngestCounters;
use crate::store::Store;
use crate::writer::Writer;
use std::sync::{Arc, Mutex};

pub struct AppState {
    /// The only writer: a thread that commits batches in groups.
    pub writer: Writer,
    /// A second connection for reads (WAL lets them run beside the writer).
    pub reader: Mutex<Store>,
    pub tokens: Tokens,
    /// /metrics needs a metrics or admin token too.
    pub protect_metrics: bool,
    /// Also export restart counts per node (off by default: cardinality).
    pub per_node_metrics: bool,
    pub counters: IngestCounters,
    /// Refused requests per client address and per credential.
    pub failures: FailureLimit,
    /// Where admin requests are recorded.
    pub audit: Arc<Audit>,
    /// Fleet runs and their lease books.
    pub fleets: Arc<Fleets>,
}

pub type Shared = Arc<AppState>;
