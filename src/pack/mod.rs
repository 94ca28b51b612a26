//! Pack files, and nothing but: build them, receive them, merge them, read their idx. No
//! network, no stdout.
//!
//! - [`build`](mod@build) turns "these tips, minus what the remote has" into a self-contained pack + idx
//!   in a temporary directory (docs/design.md §2: git's delta search is the reference, gix computes no
//!   deltas), within the memory bounds of [`limits`].
//! - [`receive`] verifies a received pack stream with the gix indexer and writes `.pack` +
//!   `.idx` + `.keep` into the repository; [`receive_git`] does the same with
//!   `git index-pack` for packs of huge objects. [`receive_stream`] picks one of the two.
//! - [`repack`] merges the packs of a repository into one (`git hypha gc`).
//! - [`idx_file`] parses idx files (the remote's, and the ones just written).
//! - [`thin`] completes a thin pack from stored packs; [`delta_compose`] turns a stored delta
//!   chain into one delta for it.

pub mod build;
pub mod delta_compose;
pub mod entries;
pub mod idx_file;
pub mod limits;
pub mod receive;
pub mod receive_git;
pub mod repack;
#[cfg(test)]
pub(crate) mod testing;
pub mod thin;

pub use build::{build, build_thin, Built, ThinBuilt};
pub use receive::Indexed;

use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Whether a pack whose largest entry is `largest_entry` bytes goes to `git index-pack`.
pub fn uses_git_index_pack(largest_entry: u64) -> bool {
    largest_entry > receive_git::BIG_ENTRY
}

/// Which indexer [`receive_stream`] uses for such a pack, for messages.
pub fn indexer_name(largest_entry: u64) -> &'static str {
    if uses_git_index_pack(largest_entry) {
        "git index-pack"
    } else {
        "gix"
    }
}

/// Verify the pack `name` read from `input` and write it into `pack_dir`: with gix, or with
/// `git index-pack` when its largest entry (from the server's idx, a hint) is over
/// [`receive_git::BIG_ENTRY`].
pub fn receive_stream(
    input: &mut dyn std::io::BufRead,
    pack_dir: &Path,
    name: &str,
    largest_entry: u64,
    interrupt: &AtomicBool,
) -> Result<Indexed, receive::Error> {
    if uses_git_index_pack(largest_entry) {
        receive_git::index(input, pack_dir, name)
    } else {
        receive::index(input, pack_dir, name, interrupt)
    }
}
