//! The routes below a repository's LFS endpoint and what each asks of its caller: the Git LFS
//! Batch API's (batch, verify), our transfer's parts and delta routes, and the locks API.
//!
//! One table for both servers: `git hypha serve` registers its LFS routes from
//! [`LfsRoute::ALL`] and checks each caller against [`LfsRoute::access`]; the Hypha plugin
//! reads the same table from `git hypha routes`, registers the same paths below its own
//! endpoint and asks Hypha the matching question before it forwards a request. No I/O.

use super::lfs::Operation;
use super::Access;
use serde::Serialize;
use std::collections::BTreeMap;

/// One route below an LFS endpoint (`{ws}/git/{alias}[.git]/info/lfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LfsRoute {
    /// `POST /objects/batch`: the Batch API.
    Batch,
    /// `POST /objects/verify/{oid}`: an upload is done; the server hashes what it stored.
    Verify,
    /// `POST /objects/parts/{oid}`: our transfer's multipart upload, planned or resumed.
    Parts,
    /// `POST /objects/parts/{oid}/complete`.
    PartsComplete,
    /// `POST /objects/parts/{oid}/delta`: an upload of the chunks the server lacks.
    Delta,
    /// `POST /objects/parts/{oid}/delta/complete`.
    DeltaComplete,
    /// `POST /locks`: lock a path.
    Lock,
    /// `GET /locks`: list the locks.
    Locks,
    /// `POST /locks/verify`: the caller's locks and everyone else's.
    LocksVerify,
    /// `POST /locks/{id}/unlock`.
    Unlock,
}

/// What an LFS route asks of its caller: one level, or, for the batch, the level its
/// `operation` asks ([`Operation::access`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LfsAccess {
    Is(Access),
    ByOperation,
}

impl LfsAccess {
    /// The level a request asks: the route's own, or the batch's by its `operation` (a batch
    /// always names one; without, the stricter write).
    pub fn of(self, operation: Option<Operation>) -> Access {
        match self {
            LfsAccess::Is(access) => access,
            LfsAccess::ByOperation => operation.map_or(Access::Write, Operation::access),
        }
    }
}

impl Operation {
    pub const ALL: [Operation; 2] = [Operation::Download, Operation::Upload];

    /// A download reads; an upload writes (and so does its verify, which may delete garbage).
    pub fn access(self) -> Access {
        match self {
            Operation::Download => Access::Read,
            Operation::Upload => Access::Write,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Download => "download",
            Operation::Upload => "upload",
        }
    }
}

/// As `git hypha routes` prints it: `"read"`, or `{"download": "read", "upload": "write"}`.
impl Serialize for LfsAccess {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            LfsAccess::Is(access) => access.serialize(serializer),
            LfsAccess::ByOperation => Operation::ALL
                .map(|op| (op.as_str(), op.access()))
                .into_iter()
                .collect::<BTreeMap<_, _>>()
                .serialize(serializer),
        }
    }
}

impl LfsRoute {
    pub const ALL: [LfsRoute; 10] = [
        LfsRoute::Batch,
        LfsRoute::Verify,
        LfsRoute::Parts,
        LfsRoute::PartsComplete,
        LfsRoute::Delta,
        LfsRoute::DeltaComplete,
        LfsRoute::Lock,
        LfsRoute::Locks,
        LfsRoute::LocksVerify,
        LfsRoute::Unlock,
    ];

    /// The HTTP method: `GET` for the listing of locks, `POST` for everything else.
    pub fn method(self) -> &'static str {
        match self {
            LfsRoute::Locks => "GET",
            _ => "POST",
        }
    }

    /// The path below the LFS endpoint, with its parameter (`{oid}`, `{id}`) as axum and
    /// FastAPI both write one.
    pub fn path(self) -> &'static str {
        match self {
            LfsRoute::Batch => "/objects/batch",
            LfsRoute::Verify => "/objects/verify/{oid}",
            LfsRoute::Parts => "/objects/parts/{oid}",
            LfsRoute::PartsComplete => "/objects/parts/{oid}/complete",
            LfsRoute::Delta => "/objects/parts/{oid}/delta",
            LfsRoute::DeltaComplete => "/objects/parts/{oid}/delta/complete",
            LfsRoute::Lock | LfsRoute::Locks => "/locks",
            LfsRoute::LocksVerify => "/locks/verify",
            LfsRoute::Unlock => "/locks/{id}/unlock",
        }
    }

    /// What the route asks of its caller on the repository's workspace. Storing, verifying
    /// (a verify deletes what does not hash to its oid), locking and unlocking write; listing
    /// and verifying locks read. The lock routes also need a caller with a name
    /// ([`LfsRoute::needs_name`]), which the server checks: Hypha's question is the same.
    pub fn access(self) -> LfsAccess {
        match self {
            LfsRoute::Batch => LfsAccess::ByOperation,
            LfsRoute::Verify
            | LfsRoute::Parts
            | LfsRoute::PartsComplete
            | LfsRoute::Delta
            | LfsRoute::DeltaComplete
            | LfsRoute::Lock
            | LfsRoute::Unlock => LfsAccess::Is(Access::Write),
            LfsRoute::Locks | LfsRoute::LocksVerify => LfsAccess::Is(Access::Read),
        }
    }

    /// Whether the route needs a caller with a name, whatever the access granted (a public
    /// repository, or Hypha's `"*": "rw"`, grants anonymous callers read or even write): a
    /// lock is owned by who takes it, only its owner unlocks it without `force`, and verifying
    /// splits locks into the caller's and everyone else's. An anonymous caller gets 401.
    pub fn needs_name(self) -> bool {
        matches!(
            self,
            LfsRoute::Lock | LfsRoute::Unlock | LfsRoute::LocksVerify
        )
    }

    /// The route at `method` and `path` (a path as [`LfsRoute::path`] writes it).
    pub fn parse(method: &str, path: &str) -> Option<LfsRoute> {
        LfsRoute::ALL
            .into_iter()
            .find(|r| r.method() == method && r.path() == path)
    }

    /// `"POST /objects/batch"`: the key `git hypha routes` prints the route under.
    pub fn key(self) -> String {
        format!("{} {}", self.method(), self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_one_key_and_parses_back() {
        let keys: std::collections::BTreeSet<String> =
            LfsRoute::ALL.into_iter().map(LfsRoute::key).collect();
        assert_eq!(keys.len(), LfsRoute::ALL.len());
        for route in LfsRoute::ALL {
            assert_eq!(LfsRoute::parse(route.method(), route.path()), Some(route));
        }
        assert_eq!(LfsRoute::parse("GET", "/objects/batch"), None);
    }

    #[test]
    fn downloads_and_lock_listings_read_everything_else_writes() {
        let reads: Vec<LfsRoute> = LfsRoute::ALL
            .into_iter()
            .filter(|r| r.access() == LfsAccess::Is(Access::Read))
            .collect();
        assert_eq!(reads, [LfsRoute::Locks, LfsRoute::LocksVerify]);
        assert_eq!(LfsRoute::Batch.access(), LfsAccess::ByOperation);
        assert_eq!(Operation::Download.access(), Access::Read);
        assert_eq!(Operation::Upload.access(), Access::Write);
        let printed = serde_json::to_value(LfsAccess::ByOperation).unwrap();
        assert_eq!(
            printed,
            serde_json::json!({"download": "read", "upload": "write"})
        );
        let named: Vec<LfsRoute> = LfsRoute::ALL
            .into_iter()
            .filter(|r| r.needs_name())
            .collect();
        assert_eq!(
            named,
            [LfsRoute::Lock, LfsRoute::LocksVerify, LfsRoute::Unlock]
        );
        let printed = serde_json::to_value(LfsRoute::Verify.access()).unwrap();
        assert_eq!(printed, serde_json::json!("write"));
    }
}
