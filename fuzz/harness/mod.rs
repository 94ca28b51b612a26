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
pub mod idx;
pub mod input;
pub mod names;
pub mod pack_entries;
pub mod packgen;
pub mod protocol;
pub mod thin;

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
];

/// Open findings (reported, not fixed yet) are tolerated so that the fuzzers keep looking for
/// new ones, unless `HYPHA_FUZZ_STRICT=1` or [`STRICT`] is set: `cargo fuzz tmin` and the
/// ignored test `open_findings` (tests/fuzz_regressions.rs, over `fuzz/open/<target>/`) run
/// strict. Once a finding is fixed, drop its `tolerated(...)` guard and move its inputs from
/// `fuzz/open/` to `fuzz/regressions/`.
pub static STRICT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the open finding `_name` (see fuzz/README.md) is to be let through.
pub fn tolerated(_name: &str) -> bool {
    static ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let strict =
        *ENV.get_or_init(|| std::env::var_os("HYPHA_FUZZ_STRICT").is_some_and(|v| v == "1"));
    !(strict || STRICT.load(std::sync::atomic::Ordering::Relaxed))
}
