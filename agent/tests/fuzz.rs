//! The scenario parser fuzzed (bounce-fuzz: the shipped scenarios and a
//! few hostile ones in fuzz/corpus/scenario, then FUZZ_SECONDS of
//! mutations): YAML text in, a `Scenario` or an error out; no input may
//! panic or hang.

use bounce_agent::scenario::Scenario;
use bounce_fuzz::{Target, fuzz};
use std::path::Path;
use std::time::Duration;

#[test]
fn scenario_parser() {
    let target = Target {
        name: "scenario",
        dictionary: &[
            "\n",
            ": ",
            "- ",
            "  ",
            "{",
            "}",
            "[",
            "]",
            ",",
            "&a ",
            "*a",
            "<<: *a\n",
            "!!str ",
            "!!map ",
            "'",
            "\"",
            "~",
            "null",
            "true",
            "200ms",
            "2m",
            "0s",
            "-1",
            "1e999",
            "18446744073709551616",
            "\u{0}",
            "\t",
            "#",
            "---\n",
            "...\n",
            "? ",
            "|\n",
            ">\n",
            "concurrency",
            "targets",
            "docker",
            "systemd",
            "ceph",
            "probes",
            "name",
            "pause",
            "timeout",
            "on_failure",
            "iterations",
            "action",
            "restart",
            "kill",
            "\u{feff}",
        ],
        per_input: Duration::from_secs(5),
    };
    fuzz(&target, |bytes| {
        if let Ok(text) = std::str::from_utf8(bytes) {
            let _ = Scenario::parse(Path::new("fuzz.yaml"), text);
        }
    });
}
