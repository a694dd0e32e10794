//! hualu's cluster mode: SFU nodes register in Redis and heartbeat their load ([`Heartbeat`]); call control
//! reads the live nodes and places each new room on one of them ([`select::choose`], [`Registry::place_room`]),
//! extending it to a second node when its node is full or its participants are in another region
//! ([`span::decide`], [`Registry::extend_room`]).
//! Redis holds the state; no node trusts another's memory, and no consensus is built here.

pub mod calls;
pub mod heartbeat;
pub mod media;
pub mod node;
pub mod registry;
pub mod select;
pub mod span;

pub use calls::{CallStore, Commit, Committed, Routed, TakenOver};
pub use heartbeat::{Heartbeat, Identity, LoadSource};
pub use media::{MediaEvent, MediaSink, RoomClose};
pub use node::{Load, NodeInfo, NodeState};
pub use registry::{ClusterError, Registry};
pub use select::{choose, NoNode};
pub use span::{decide, Decision, Reason, RoomNodes};
