//! What to transfer, decided without touching git or the network.
//!
//! [`fetch`]: which wants are still missing and which listed packs are worth downloading;
//! [`push`]: what each push line becomes (the compare-and-swap base, or git's refusal), what
//! the pack leaves out, and what the server's answer means to git. [`haves`] and
//! [`upload_pack`]: the one request a fetch makes to a stock Hypha's upload-pack, and how its
//! answer reads.
//!
//! Functions over object ids, ref maps and small traits or closures for "do we have object
//! X" and "is A an ancestor of B": the helper answers those with gix, the tests with fakes.
//! No I/O, no `api` types, no printing.

pub mod fetch;
pub mod haves;
pub mod push;
pub mod shallow;
pub mod upload_pack;

/// The id named by `hex` (40 hex digits); `None` for anything else.
pub fn parse_id(hex: &str) -> Option<gix::ObjectId> {
    gix::ObjectId::from_hex(hex.as_bytes()).ok()
}
