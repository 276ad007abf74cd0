//! The collector's decoders fuzzed (bounce-fuzz: seed corpora in
//! fuzz/corpus/, then FUZZ_SECONDS of mutations each): an ingest body
//! (depth check, `Batch` from JSON, full validation) and the sparse
//! histogram decoders. No input may panic or hang; where both histogram
//! decoders take an input, they must agree bucket for bucket.

use crate::validate;
use base64::Engine;
use bounce_fuzz::{Target, fuzz};
use bounce_wire::ingest::Batch;
use bounce_wire::sparse::SparseHistogram;
use std::time::Duration;

#[test]
fn ingest_decoder() {
    let target = Target {
        name: "ingest",
        dictionary: &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "null",
            "true",
            "-1",
            "0",
            "1e999",
            "-0.0",
            "18446744073709551616",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "\"histograms\"",
            "\"timelines\"",
            "\"phases\"",
            "\"stop\"",
            "\"start\"",
            "\"seq\"",
            "\"end\"",
            "\"agent\"",
            "\"run_id\"",
            "\"HISTFAAAAB\"",
            "NaN",
        ],
        per_input: Duration::from_secs(5),
    };
    fuzz(&target, |body| {
        if validate::json_depth(body, validate::MAX_JSON_DEPTH).is_err() {
            return;
        }
        if let Ok(batch) = serde_json::from_slice::<Batch>(body) {
            let _ = validate::batch(&batch);
        }
    });
}

#[test]
fn sparse_histogram_decoders() {
    let target = Target {
        name: "hist-v2",
        dictionary: &[
            "\u{1c}\u{84}\u{93}\u{14}",
            "\0\0\0\0",
            "\u{ff}\u{ff}\u{ff}\u{7f}",
        ],
        per_input: Duration::from_secs(5),
    };
    fuzz(&target, |bytes| {
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        let sparse = SparseHistogram::from_v2_deflate(&text);
        if let (Ok(s), Ok(dense)) = (&sparse, bounce_wire::hist::decode(&text)) {
            assert_eq!(
                s,
                &SparseHistogram::from_hdr(&dense),
                "the two decoders disagree"
            );
        }
        let _ = SparseHistogram::parse(&String::from_utf8_lossy(bytes));
    });
}
