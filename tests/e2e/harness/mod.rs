//! The end-to-end harness: hermetic git, a server per test, and commands that explain themselves
//! when they fail.
//!
//! Every command runs with a cleared environment (only what [`TestEnv::cmd`] sets), `HOME`
//! in the test's scratch directory, `GIT_CONFIG_NOSYSTEM=1`, a fixed identity and clock, and the
//! directory of the freshly built binaries first on `PATH`, so git finds `git-remote-hypha` and
//! `git-hypha` exactly as it would once they are installed. Nothing of the developer's own git
//! configuration, credentials or Hypha login can leak in.
//!
//! Every captured stdout and stderr is scanned for secrets (each token minted in the test, and
//! presigned-URL signatures): docs/design.md §6 says they are never printed, so a leak fails whichever
//! test happens to trigger it.
//!
//! With `HYPHA_E2E_HYPHA_ENV` set, the tests run against a running Hypha with the plugin
//! instead of a `git hypha serve` of their own ([`hypha`], tests/hypha/run.sh).

pub mod http;
pub mod hypha;
pub mod oracle;
pub mod proxy;
pub mod receiver;
pub mod server;

mod command;
mod content;
mod env;
mod hermetic;
mod namespace;
mod out;
mod packs;
mod remote;
mod repos;
mod secrets;
mod tokens;

pub use command::Cmd;
pub use content::{import_commits, noise};
pub use env::TestEnv;
pub use hermetic::bin_dir;
pub use out::{assert_line, sorted_lines, Out};
pub use server::Server;
pub use tokens::WS;
