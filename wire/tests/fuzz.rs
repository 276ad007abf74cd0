//! The V2 histogram decoder fuzzed (bounce-fuzz: the seed corpus in
//! fuzz/corpus/hist-v2, then FUZZ_SECONDS of mutations): no input may
//! panic or hang. Inputs are the raw encoding; the decoder reads base64.

use base64::Engine;
use bounce_fuzz::{Target, fuzz};
use std::time::Duration;

#[test]
fn v2_histogram_decoder() {
    let target = Target {
        name: "hist-v2",
        dictionary: &[
            "\u{1c}\u{84}\u{93}\u{14}",
            "\u{1c}\u{84}\u{93}\u{13}",
            "\0\0\0\0",
            "\u{ff}\u{ff}\u{ff}\u{7f}",
        ],
        per_input: Duration::from_secs(5),
    };
    fuzz(&target, |bytes| {
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        let _ = bounce_wire::hist::decode(&text);
        let _ = bounce_wire::hist::decode(&String::from_utf8_lossy(bytes));
    });
}
