//! The core driven directly, in virtual time: a scripted client speaking real STUN/TURN messages built with
//! `stun-types`, and an in-memory set of relay sockets.

mod allocate;
mod auth;
mod harness;
mod props;
mod relay;
mod tcp;
mod vectors;
