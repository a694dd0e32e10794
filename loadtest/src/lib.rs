//! hualu's load harness: simulated callers that place real calls through call control, the SFU and TURN, send
//! real Opus speech over impaired networks, and score every call with the ITU-T E-model. `docs/loadtest.md`
//! explains the scenarios, the metrics and how to read a report.

pub mod audio;
pub mod capacity;
pub mod client;
pub mod collector;
pub mod impair;
pub mod plan;
pub mod quality;
pub mod record;
pub mod relay;
pub mod report;
pub mod run;
pub mod scenario;
pub mod score;
pub mod server;
pub mod setup;
pub mod video;
