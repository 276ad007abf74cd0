//! "Where the time went", in words, from the boundaries of one unit
//! restart: the container's or main process's exit, how the unit stopped
//! (`failed` instead of `dead` is osism/issues#973's 2-minute stall), when
//! it was active again, the container running, ready.

use crate::timeline::Timeline;
use bounce_wire::BoundaryName;

/// Where the time went, in words, from the boundaries of one restart.
pub fn attribute(tl: &Timeline) -> Option<String> {
    let t0 = tl.at(BoundaryName::Requested)?;
    let rel = |b: BoundaryName| tl.at(b).map(|at| (at - t0) as f64 / 1e9);
    let report = tl.unit.as_ref();
    let mut parts = Vec::new();
    let exit_words = |status: Option<i64>| match status {
        Some(s) => format!("exited {s}"),
        None => "exited".to_string(),
    };
    if let Some(c) = rel(BoundaryName::ContainerExited) {
        parts.push(format!(
            "container {} at +{c:.1} s",
            exit_words(tl.exit_code)
        ));
    } else if let Some(m) = rel(BoundaryName::MainExited) {
        parts.push(format!(
            "main process {} at +{m:.1} s",
            exit_words(tl.exit_code)
        ));
    }
    let stopped_as = report.and_then(|r| r.stopped_as.as_deref());
    let result = report.and_then(|r| r.stop_result.as_deref());
    if let Some(x) = rel(BoundaryName::Exited) {
        let gone = rel(BoundaryName::ContainerExited).or(rel(BoundaryName::MainExited));
        let how = match (stopped_as, result) {
            (Some("failed"), Some(r)) => {
                format!("unit left `failed` (Result={r}) instead of `dead`")
            }
            (Some("failed"), None) => "unit left `failed` instead of `dead`".to_string(),
            _ => "unit stopped".to_string(),
        };
        match gone {
            Some(g) if x - g >= 1.0 => parts.push(format!(
                "{how} and was stopped only at +{x:.1} s ({:.1} s after its process was gone)",
                x - g
            )),
            _ => parts.push(format!("{how} at +{x:.1} s")),
        }
    }
    if let Some(s) = rel(BoundaryName::Started) {
        parts.push(format!("unit active at +{s:.1} s"));
    }
    if let Some(c) = rel(BoundaryName::ContainerStarted) {
        parts.push(format!("container running at +{c:.1} s"));
    }
    if let Some(r) = rel(BoundaryName::Ready) {
        parts.push(format!("ready at +{r:.1} s"));
    }
    (parts.len() > 1).then(|| parts.join(", "))
}
