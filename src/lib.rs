//! git-remote-hypha: keep git repositories in Hypha's object storage.
//!
//! Two thin binaries share this library (architecture: `docs/design.md` §2):
//!
//! - `git-remote-hypha`, the remote helper git runs for `hypha::` URLs: [`helper`] speaks the
//!   remote-helper protocol (`docs/protocol.md`), [`negotiate`] decides what to send or fetch,
//!   [`pack`] builds and indexes packs, [`client`] moves the bytes through presigned URLs.
//! - `git-hypha`, run as `git hypha ...`: `serve` ([`server`] over [`repo`] over [`storage`]), `create`,
//!   `gc` ([`gc`]), `login` ([`login`]), `token`, `url`, `hook` (webhooks, [`server::webhook`]). The Hypha plugin (`hypha-plugin/`)
//!   runs `git hypha serve --plugin` as its child, so the server's rules exist once, here.
//!
//! | module | owns | never |
//! |---|---|---|
//! | [`api`] | wire types of remote API v1 (`docs/design.md` §4); the API and LFS route tables | I/O |
//! | [`names`] | ref, pack, object and repository names both sides check | I/O |
//! | [`config`] | `hypha::` URL forms, `HYPHA_*` environment, token sources | network |
//! | [`helper`] | the session with git: protocol grammar, options; the fetch and push operations | axum, storage |
//! | [`negotiate`] | pure decisions: wants, packs to get, push plan, fast-forward and lease rules | git, network |
//! | [`pack`] | pack files: build, receive (gix / git index-pack), repack, idx parsing | network, `api` |
//! | [`fetch_packs`] | verified parallel pack downloads into a local repository, large ones resumable | gix repository walks |
//! | [`fetch_shallow`] | shallow and partial fetches: a client-side walk over stored packs, entries by range | whole-pack downloads, refs |
//! | [`client`] | HTTP to the API and to presigned URLs: GET (whole, streamed, ranges), PUT, multipart, renewal, retries | gix, logging URLs |
//! | [`compaction`] | the one compaction engine: which packs to merge, git merging them, over any [`compaction::Packs`] | network, storage |
//! | [`gc`] | `git hypha gc`: the engine over remote API v1 | `helper` |
//! | [`lfs_agent`] | `git hypha lfs-agent`: git-lfs's custom transfer, uploads and downloads of one object | `helper`, `server`, `repo` |
//! | [`server`] | HTTP surface, auth, status codes, the plugin mode, auto-gc trigger, webhooks, metrics, health, request ids | `helper`, `client`, `gc`, `fetch_packs` |
//! | [`repo`] | the repository over a store: layout, refs compare-and-swap, commit record, uploads, thin completion, compaction rules, hooks, LFS keys | `api`, HTTP |
//! | [`storage`] | object-store backends: local disk, S3, multipart, presigned URLs, metering | `repo`, git layout, `api`, HTTP |
//! | [`auth`], [`login`], [`progress`] | JWTs, stored logins, progress counters | deciding about terminals |
//! | [`lfs_chunks`] | content-defined chunks of LFS objects and the chunk index format (both sides) | I/O |
//! | [`credential_helper`] | `git hypha credential`: the helper's token for git-lfs | writing tokens anywhere |
//!
//! ```text
//!  helper -> negotiate, fetch_packs, fetch_shallow, pack, client, config
//!  fetch_shallow -> client, pack::entries, negotiate::shallow, fetch_packs
//!                                                           server -> repo, storage, api, auth
//!  gc -> compaction, fetch_packs, pack, client              server::autogc -> repo (gc), server::leases
//!  fetch_packs -> client, pack, negotiate                   repo -> storage, names, pack, compaction
//!                                                           storage -> auth (presign clock)
//!  client -> api, config, progress                          api -> names
//! ```
//!
//! Each client operation ([`helper::fetch`], [`fetch_shallow`], [`helper::push`], [`gc`],
//! [`lfs_agent::upload`], [`lfs_agent::download`]) is shaped as gitoxide's: its `Options`,
//! a `run` with the progress handle passed in, an `Outcome` saying what it did, a `thiserror`
//! `Error` naming what failed (`docs/design.md` §2).
//!
//! The library prints nothing: diagnostics are `tracing` events and progress goes through a
//! [`progress::Progress`] handle; the binaries install the subscriber and decide about
//! terminals. stdout belongs to git (the helper's replies) and to `serve`'s startup lines.
// No unsafe code, with one audited exception: `pack::receive` maps a received pack and releases
// the mapped pages as it goes (memory-mapping is unsafe in Rust).
#![deny(unsafe_code)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
// The library is not published: its docs are for the people who work on it
// (`cargo doc --document-private-items`), and a module's doc names its private parts on purpose.
#![allow(rustdoc::private_intra_doc_links)]

pub mod api;
pub mod auth;
pub mod client;
pub mod compaction;
pub mod config;
pub mod credential_helper;
pub mod fetch_packs;
pub mod fetch_shallow;
pub mod gc;
pub mod helper;
pub mod lfs_agent;
pub mod lfs_chunks;
pub mod login;
pub mod names;
pub mod negotiate;
pub mod pack;
pub mod progress;
pub mod repo;
pub mod server;
pub mod storage;
