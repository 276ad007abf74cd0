//! The collector's commands, one module each; `main.rs` only parses and
//! dispatches. `at` and `tokens` are what several commands share.

pub mod at;
pub mod fleet;
pub mod range;
pub mod report;
pub mod retained;
pub mod runs;
pub mod serve;
pub mod store;
pub mod summarize;
pub mod tokens;
