//! Pack files: build them with `git pack-objects`, read them with the gix indexer.
//!
//! [`build`] turns "these tips, minus what the remote has" into a self-contained pack + idx in a
//! temporary directory (DESIGN §2: git's delta search is the reference, gix computes no deltas).
//! [`index`] verifies a received pack stream and writes `.pack` + `.idx` + `.keep` into the
//! repository; [`index_pack`] does the same with `git index-pack` for packs of huge objects.
//! No network, no stdout.

pub mod build;
pub mod index;
pub mod index_pack;
pub mod limits;
#[cfg(test)]
pub(crate) mod testing;

pub use build::{build, Built};
pub use index::{index, Indexed};
