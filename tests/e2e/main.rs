//! End-to-end tests: real `git` talking to the installed `git-remote-hypha` and a real
//! `git hypha serve`, one server and one scratch directory per test.
//!
//! These tests check the acceptance contract of docs/design.md §7 and the user-visible scenarios of
//! docs/scenarios.md (sections A, B, C 15-17, E 25-29, and the auth/missing-repository failures of
//! H 42/44). They drive the product only through commands, never through the library, so a
//! passing suite means "a user with git and these two binaries on `PATH` gets this behaviour".
//!
//! Where the expected outcome is git's own behaviour (rejections, forced updates, deletes,
//! leases, atomic, dry-run) the test replays the same scenario against a `file://` bare
//! repository and compares `git push --porcelain` output and the final `git ls-remote`
//! ([`harness::oracle`]). Object ids agree between the two runs because identities and dates
//! are fixed.
//!
//! Run: `cargo nextest run --test e2e` (or `cargo test --test e2e`). Set `HYPHA_E2E_KEEP=1` to
//! keep the scratch directory of a failing test.

mod harness;

mod auth;
mod autogc;
mod concurrency;
mod corruption;
mod crash;
mod credentials;
mod fair_use;
mod faults;
mod force;
mod gc;
mod gits;
mod history;
mod hooks;
mod hostile;
mod inline;
mod lfs;
mod lfs_delta;
mod lfs_locks;
mod lfs_parts;
mod lifecycle;
mod limits;
mod metrics;
mod mirror;
mod multipart;
mod options;
mod permissions;
mod progress;
mod refs;
mod shallow;
mod thin;
mod tls;
