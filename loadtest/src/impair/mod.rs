//! Network impairment in user space, sans-IO: the kernel here has no netem, so each simulated client decides every
//! datagram's fate itself, on its send path (uplink) and on its receive path (downlink).
//!
//! - [`Profile`]: a named pair of [`LinkParams`], uplink (client → server) and downlink (server → client), from a
//!   preset ([`PRESETS`], after the call-quality guide's network-profile table) or from TOML.
//! - [`Link`]: one direction. [`Link::send`] takes `now` and a datagram's length and gives its [`Fate`]: dropped, with
//!   a [`DropCause`], or delivered at a time. Per packet, in this order: outage windows, loss (random or bursty, by
//!   [`GilbertElliott`]), the bandwidth cap's serialization queue (tail drop past `queue_ms`), then propagation
//!   delay, jitter, FIFO order and reordering. [`LinkStats`] counts it all.
//! - [`DelayLine`]: holds delivered datagrams until their time, in time order, ties in insertion order.
//!
//! Time is `f64` milliseconds on the caller's monotonic clock, and `now_ms` must never decrease from one call to
//! the next on the same [`Link`]. Nothing here reads a clock, touches a socket or allocates per packet (the
//! delay line's storage aside). Every random draw comes from a [`rand::rngs::StdRng`] seeded by the caller, so a
//! seed and a sequence of `send` calls always give the same fates.
//!
//! # Run loop
//!
//! Push what the link delivers into a delay line; whenever the loop wakes (a datagram to send, or the time
//! [`DelayLine::next_due`] gave), drain [`DelayLine::pop_due`] until it gives `None`, then sleep until the next due
//! time.
//!
//! ```
//! use hualu_loadtest::impair::{DelayLine, Fate, Link, Profile};
//!
//! let profile = Profile::from_name("3g").expect("a preset");
//! let mut uplink = Link::new(&profile.up, 42);
//! let mut line: DelayLine<Vec<u8>> = DelayLine::new();
//! let mut sent_on_wire = 0;
//! for i in 0..500u32 {
//!     let now_ms = f64::from(i) * 20.0;
//!     let datagram = vec![0u8; 120];
//!     if let Fate::Deliver { at_ms } = uplink.send(now_ms, datagram.len()) {
//!         line.push(at_ms, datagram);
//!     }
//!     while let Some(_datagram) = line.pop_due(now_ms) {
//!         sent_on_wire += 1; // the driver would hand it to the socket here
//!     }
//! }
//! assert!(sent_on_wire > 400);
//! assert_eq!(uplink.stats().sent, 500);
//! ```

mod delay_line;
mod gilbert;
mod link;
mod presets;
mod profile;

#[cfg(test)]
mod tests;

pub use delay_line::DelayLine;
pub use gilbert::GilbertElliott;
pub use link::{DropCause, Fate, Link, LinkStats};
pub use presets::PRESETS;
pub use profile::{Direction, InvalidParam, LinkParams, Profile, ProfileError, DEFAULT_QUEUE_MS};
