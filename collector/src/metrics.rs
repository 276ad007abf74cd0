//! `/metrics`: rendered from the store on every scrape, so every counter
//! survives a collector restart. Names follow Prometheus conventions
//! (base unit seconds, `_total` counters). Labels: deployment, scenario,
//! service, origin (`run`: bounce restarted it, `watch`: observed), for
//! observed restarts their cause (a closed set of four), phase (and
//! outcome); per-node labels only on the optional
//! `bounce_node_restarts_total` (a 1,000-node cloud would multiply every
//! series by 1,000; per-node detail is in the read API).

use crate::series::{BUCKETS, QUANTILES, SeriesStats};
use crate::store::Store;
use bounce_wire::Outcome;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The only counters kept in memory: ingest requests that were not
/// stored (a resent batch, a refused one). Restarts are counted in the store.
#[derive(Default)]
pub struct IngestCounters {
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
}

/// What /metrics shows besides the store's numbers.
pub struct Exposition<'a> {
    pub counters: &'a IngestCounters,
    /// Also export restart counts per node (off by default: cardinality).
    pub per_node: bool,
}

/// Label pairs; an empty `cause` is no label (bounce's own restarts have none).
fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .filter(|(k, v)| !(*k == "cause" && v.is_empty()))
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn gauge(value: f64, l: Vec<LabelPair>) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_label(l);
    m.set_gauge(g);
    m
}

fn counter(value: f64, l: Vec<LabelPair>) -> Metric {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::from_label(l);
    m.set_counter(c);
    m
}

/// The exposition text. The store is locked only while it is read.
pub fn render(store: &Mutex<Store>, what: &Exposition<'_>) -> Result<String, String> {
    let store = store.lock().unwrap();
    let series = store.series_stats().map_err(|e| e.to_string())?;
    let outcomes = store.outcome_counts().map_err(|e| e.to_string())?;
    let (batches, agents, runs) = store.totals().map_err(|e| e.to_string())?;
    let per_node = if what.per_node {
        store.node_outcome_counts().map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    let store_bytes = store.size_on_disk();
    let dropped = store.dropped().map_err(|e| e.to_string())?;
    drop(store);

    // Every outcome of every service, zeros included: a failure panel then
    // shows 0 instead of "no data", and rate() sees the first failure.
    let mut by_series: std::collections::BTreeMap<
        (&str, &str, &str, &str, &str),
        [u64; Outcome::ALL.len()],
    > = Default::default();
    for o in &outcomes {
        let counts = by_series
            .entry((&o.deployment, &o.scenario, &o.service, &o.origin, &o.cause))
            .or_default();
        if let Some(i) = Outcome::ALL.iter().position(|x| x.as_str() == o.outcome) {
            counts[i] = o.count;
        }
    }
    let outcome_metrics = by_series
        .iter()
        .flat_map(|((deployment, scenario, service, origin, cause), counts)| {
            Outcome::ALL.iter().zip(counts).map(|(outcome, count)| {
                counter(
                    *count as f64,
                    labels(&[
                        ("deployment", deployment),
                        ("scenario", scenario),
                        ("service", service),
                        ("origin", origin),
                        ("cause", cause),
                        ("outcome", outcome.as_str()),
                    ]),
                )
            })
        })
        .collect();
    let node_metrics = per_node
        .iter()
        .map(|(o, node)| {
            counter(
                o.count as f64,
                labels(&[
                    ("deployment", &o.deployment),
                    ("scenario", &o.scenario),
                    ("service", &o.service),
                    ("origin", &o.origin),
                    ("node", node),
                    ("outcome", &o.outcome),
                ]),
            )
        })
        .collect();
    let families = vec![
        family(
            "bounce_restarts_total",
            "Restarts measured, by origin (run: bounce's own, watch: observed), cause (observed ones) and outcome (ok, timeout, failed, aborted, incomplete).",
            MetricType::COUNTER,
            outcome_metrics,
        ),
        family(
            "bounce_node_restarts_total",
            "Restarts measured per node, by origin and outcome (only with --per-node-metrics).",
            MetricType::COUNTER,
            node_metrics,
        ),
        family(
            "bounce_collector_batches_total",
            "Ingest requests, by result: stored (new), duplicate (resent, not counted again), rejected (4xx/5xx).",
            MetricType::COUNTER,
            vec![
                counter(batches as f64, labels(&[("result", "stored")])),
                counter(
                    what.counters.duplicates.load(Ordering::Relaxed) as f64,
                    labels(&[("result", "duplicate")]),
                ),
                counter(
                    what.counters.rejected.load(Ordering::Relaxed) as f64,
                    labels(&[("result", "rejected")]),
                ),
            ],
        ),
        family(
            "bounce_collector_store_bytes",
            "Size of the collector's store on disk (database and write-ahead log).",
            MetricType::GAUGE,
            vec![gauge(store_bytes as f64, vec![])],
        ),
        family(
            "bounce_collector_retention_dropped_total",
            "What the collector's retention dropped: timelines (kept merged per deployment and hour), rolled_up (hourly rows merged into days), hour_rows and day_rows (merged rows expired), runs (expired with their batch keys), fleet_log_rows, set_aside (rows it could not read, kept aside).",
            MetricType::COUNTER,
            [
                ("timelines", dropped.timelines),
                ("rolled_up", dropped.rolled_up),
                ("hour_rows", dropped.hour_rows),
                ("day_rows", dropped.day_rows),
                ("runs", dropped.runs),
                ("fleet_log_rows", dropped.fleet_log_rows),
                ("set_aside", dropped.set_aside),
            ]
            .into_iter()
            .map(|(what, n)| counter(n as f64, labels(&[("what", what)])))
            .collect(),
        ),
        family(
            "bounce_collector_agents",
            "Agents that have sent at least one batch.",
            MetricType::GAUGE,
            vec![gauge(agents as f64, vec![])],
        ),
        family(
            "bounce_collector_runs",
            "Runs in the store.",
            MetricType::GAUGE,
            vec![gauge(runs as f64, vec![])],
        ),
    ];
    let families: Vec<MetricFamily> = families
        .into_iter()
        .filter(|f| !f.get_metric().is_empty())
        .collect();
    let mut text = String::with_capacity(series.len() * 2600 + 4096);
    write_series(&mut text, &series);
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| e.to_string())?;
    text.push_str(&String::from_utf8(out).map_err(|e| e.to_string())?);
    Ok(text)
}

const DURATION: &str = "bounce_restart_duration_seconds";
const HDR: &str = "bounce_restart_duration_hdr_seconds";
const MAX: &str = "bounce_restart_duration_max_seconds";

/// A label value as the text format wants it (`\`, `\n`, `\"` escaped).
fn escaped(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '\n', '"']) {
        v.replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('"', "\\\"")
            .into()
    } else {
        v.into()
    }
}

/// The three per-series families, written straight as text in the
/// exposition format the `prometheus` encoder uses: at 10,000 series,
/// building and encoding its protobuf structures was most of a scrape.
fn write_series(out: &mut String, series: &[SeriesStats]) {
    use std::fmt::Write;
    if series.is_empty() {
        return;
    }
    let labels: Vec<String> = series
        .iter()
        .map(|s| {
            let cause = if s.cause.is_empty() {
                String::new()
            } else {
                format!("cause=\"{}\",", escaped(&s.cause))
            };
            format!(
                "deployment=\"{}\",scenario=\"{}\",service=\"{}\",origin=\"{}\",{cause}phase=\"{}\"",
                escaped(&s.deployment),
                escaped(&s.scenario),
                escaped(&s.service),
                escaped(&s.origin),
                escaped(&s.phase)
            )
        })
        .collect();
    let les: Vec<String> = BUCKETS.iter().map(|b| b.to_string()).collect();
    let qs: Vec<String> = QUANTILES.iter().map(|q| q.to_string()).collect();
    let _ = writeln!(
        out,
        "# HELP {DURATION} Duration of each phase of a restart, from the engine's and systemd's own records.\n# TYPE {DURATION} histogram"
    );
    for (s, l) in series.iter().zip(&labels) {
        let n = &s.numbers;
        for (le, c) in les.iter().zip(&n.buckets) {
            let _ = writeln!(out, "{DURATION}_bucket{{{l},le=\"{le}\"}} {c}");
        }
        let _ = writeln!(out, "{DURATION}_bucket{{{l},le=\"+Inf\"}} {}", n.count);
        let _ = writeln!(out, "{DURATION}_sum{{{l}}} {}", n.sum_seconds);
        let _ = writeln!(out, "{DURATION}_count{{{l}}} {}", n.count);
    }
    let _ = writeln!(
        out,
        "# HELP {HDR} Quantiles of each phase of a restart, from the exactly merged HDR histograms (3 significant digits).\n# TYPE {HDR} summary"
    );
    for (s, l) in series.iter().zip(&labels) {
        let n = &s.numbers;
        for (q, v) in qs.iter().zip(&n.quantiles) {
            let _ = writeln!(out, "{HDR}{{{l},quantile=\"{q}\"}} {v}");
        }
        let _ = writeln!(out, "{HDR}_sum{{{l}}} {}", n.sum_seconds);
        let _ = writeln!(out, "{HDR}_count{{{l}}} {}", n.count);
    }
    let _ = writeln!(
        out,
        "# HELP {MAX} Longest observed duration of each phase of a restart.\n# TYPE {MAX} gauge"
    );
    for (s, l) in series.iter().zip(&labels) {
        let _ = writeln!(out, "{MAX}{{{l}}} {}", s.numbers.max_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::SeriesNumbers;
    use prometheus::proto::{Bucket, Histogram, Quantile, Summary};

    /// The same families through the `prometheus` crate's encoder.
    fn reference(series: &[SeriesStats]) -> String {
        let (mut hs, mut ss, mut ms) = (Vec::new(), Vec::new(), Vec::new());
        for s in series {
            let n = &s.numbers;
            let l = labels(&[
                ("deployment", &s.deployment),
                ("scenario", &s.scenario),
                ("service", &s.service),
                ("origin", &s.origin),
                ("cause", &s.cause),
                ("phase", &s.phase),
            ]);
            let mut h = Histogram::default();
            h.set_sample_count(n.count);
            h.set_sample_sum(n.sum_seconds);
            h.set_bucket(
                BUCKETS
                    .iter()
                    .zip(&n.buckets)
                    .map(|(le, c)| {
                        let mut b = Bucket::default();
                        b.set_upper_bound(*le);
                        b.set_cumulative_count(*c);
                        b
                    })
                    .collect(),
            );
            let mut m = Metric::from_label(l.clone());
            m.set_histogram(h);
            hs.push(m);
            let mut sm = Summary::default();
            sm.set_sample_count(n.count);
            sm.set_sample_sum(n.sum_seconds);
            sm.set_quantile(
                QUANTILES
                    .iter()
                    .zip(&n.quantiles)
                    .map(|(q, v)| {
                        let mut qq = Quantile::default();
                        qq.set_quantile(*q);
                        qq.set_value(*v);
                        qq
                    })
                    .collect(),
            );
            let mut m = Metric::from_label(l.clone());
            m.set_summary(sm);
            ss.push(m);
            ms.push(gauge(n.max_seconds, l));
        }
        let families = vec![
            family(
                DURATION,
                "Duration of each phase of a restart, from the engine's and systemd's own records.",
                MetricType::HISTOGRAM,
                hs,
            ),
            family(
                HDR,
                "Quantiles of each phase of a restart, from the exactly merged HDR histograms (3 significant digits).",
                MetricType::SUMMARY,
                ss,
            ),
            family(
                MAX,
                "Longest observed duration of each phase of a restart.",
                MetricType::GAUGE,
                ms,
            ),
        ];
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hand_written_series_text_equals_the_prometheus_encoder() {
        let stats = |service: &str, count: u64| SeriesStats {
            deployment: "lab".into(),
            scenario: "s1".into(),
            service: service.into(),
            origin: "run".into(),
            cause: String::new(),
            phase: "stop".into(),
            numbers: SeriesNumbers {
                count,
                sum_seconds: 12.345678,
                buckets: (0..BUCKETS.len() as u64).map(|i| i.min(count)).collect(),
                quantiles: vec![0.25, 1.5, 61.0, 3600.0],
                max_seconds: 3600.0001,
            },
        };
        let watched = SeriesStats {
            origin: "watch".into(),
            cause: "stop-start".into(),
            ..stats("nova_api", 3)
        };
        let series = vec![
            stats("nova_api", 7),
            watched,
            stats("odd\"name\\with\nbreaks", 1_000_000),
        ];
        let mut mine = String::new();
        write_series(&mut mine, &series);
        assert_eq!(mine, reference(&series));
        let mut empty = String::new();
        write_series(&mut empty, &[]);
        assert!(empty.is_empty());
    }
}
