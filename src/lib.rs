//! git-remote-hypha: keep git repositories in Hypha's object storage.
//!
//! Two programs share this library:
//!
//! - `git-remote-hypha`, the remote helper git runs for `hypha::` URLs. It speaks the
//!   remote-helper protocol on stdin/stdout ([`helper`]), decides locally what to send or
//!   download ([`negotiate`], pure), builds packs with `git pack-objects` and indexes received
//!   packs with gix ([`pack`]), and moves pack bytes straight to and from storage through
//!   presigned URLs ([`client`]; verified pack downloads: [`fetch_packs`]).
//! - `git-hypha`, run by people as `git hypha ...`: `serve` runs remote API v1 ([`server`])
//!   over a store ([`storage`]); `create` makes a repository.
//!
//! The client and the server meet only in [`api`], the wire types of remote API v1. The
//! server hands out refs and presigned URLs and changes refs only by compare-and-swap; it
//! never carries pack bytes through its API routes.
//!
//! ```text
//!  helper -> negotiate, pack, fetch_packs, client  server -> api, storage, auth
//!  gc -> fetch_packs, pack, client                server::autogc -> gc
//!  fetch_packs -> client, pack, negotiate         client -> api, progress
//!  storage -> local disk (S3 later)
//! ```
// No unsafe code, with one audited exception: `pack::receive` maps a received pack and releases
// the mapped pages as it goes (memory-mapping is unsafe in Rust).
#![deny(unsafe_code)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod fetch_packs;
pub mod gc;
pub mod helper;
pub mod login;
pub mod names;
pub mod negotiate;
pub mod pack;
pub mod progress;
pub mod server;
pub mod storage;
