//! Bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz, nightly via
//! `RUSTC_BOOTSTRAP=1`) and `tests/fuzz_regressions.rs` (plain `cargo test` on stable), so
//! that CI replays every input in `fuzz/regressions/<target>/` through exactly the code the
//! fuzzer ran. Each target module has `pub fn run(data: &[u8])`, which panics on a finding.
//!
//! Only dependencies of the main crate are used here (no `arbitrary`): the structured targets
//! decode their input by hand with [`input::Input`].

#![allow(dead_code)]

pub mod api_json;
pub mod delta;
pub mod delta_compose;
pub mod idx;
pub mod input;
pub mod lfs_delta;
pub mod names;
pub mod pack_entries;
pub mod packgen;
pub mod protocol;
pub mod thin;
pub mod upload_pack;

/// Every target, by the name of its directory under `fuzz/regressions/`.
/// The body of a target.
pub type Target = fn(&[u8]);

pub const TARGETS: &[(&str, Target)] = &[
    ("delta", delta::run),
    ("pack_entries", pack_entries::run),
    ("thin", thin::run),
    ("idx", idx::run),
    ("protocol", protocol::run),
    ("api_json", api_json::run),
    ("names", names::run),
    ("upload_pack", upload_pack::run),
    ("lfs_delta", lfs_delta::run),
    ("delta_compose", delta_compose::run),
];
