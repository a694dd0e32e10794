//! hualu's call control: users, devices, presence and the life of a call (invite, ring, accept, decline, busy,
//! cancel, timeout, glare, answered elsewhere, hang-up, reconnect), decided on the server.
//!
//! - [`core`]: the sans-IO switchboard. Every decision about a call is taken there, with time passed in.
//! - [`server`]: `GET /ws`, the hub that owns the switchboard, and room placement.
//! - [`webhook`]: signed, retried deliveries of call events to the app's backend.

pub mod core;
pub mod server;
pub mod webhook;
