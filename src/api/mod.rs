//! Wire types of remote API v1 (docs/design.md §4), shared by the client and the server.
//!
//! Owns the JSON shapes and the route names. Performs no I/O: the client sends these types
//! with reqwest, the server receives them with axum, and neither learns about the other here.
//! The rules on names (pack names, object ids, ref names, repository segments) are the
//! repository's, not the wire's: they live in [`crate::names`] and are re-exported here for
//! the client.

pub mod lfs;
pub mod lfs_routes;
pub mod locks;

pub use crate::names::{is_object_id, is_valid_pack_name, is_valid_repo_segment, refname};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the remote API served under `…/remote/v1/`.
pub const API_VERSION: u32 = 1;

/// Path of a route below the server root: `{ws}/git/{alias}/remote/v1/{route}`.
pub fn route_path(workspace: &str, alias: &str, route: Route) -> String {
    format!("{workspace}/git/{alias}/remote/v1/{}", route.as_str())
}

/// The routes of remote API v1. All are `POST` with a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Info,
    Refs,
    Packs,
    Uploads,
    Update,
    Head,
    Create,
    Compact,
    Complete,
    Abort,
    Hooks,
    FixThin,
    /// Delete the LFS objects no ref reaches any more, past the grace period: the last step
    /// of `git hypha gc` ([`LfsPruneResponse`]).
    LfsPrune,
}

/// What a route asks of its caller on the repository's workspace (docs/design.md §4's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    /// Managing webhooks (their secrets): `a` on the workspace; through Hypha, `get_secret`.
    Admin,
}

impl Route {
    /// Every route, in the order of docs/design.md §4.
    pub const ALL: [Route; 13] = [
        Route::Info,
        Route::Refs,
        Route::Packs,
        Route::Uploads,
        Route::FixThin,
        Route::Update,
        Route::Complete,
        Route::Abort,
        Route::Compact,
        Route::LfsPrune,
        Route::Head,
        Route::Create,
        Route::Hooks,
    ];

    /// The route named `name`, if remote API v1 has it.
    pub fn parse(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// What the route asks of its caller: the one table the server enforces and the Hypha
    /// plugin reads (`git hypha routes`) to ask Hypha the matching question.
    pub fn access(self) -> Access {
        match self {
            Route::Info | Route::Refs | Route::Packs => Access::Read,
            Route::Uploads
            | Route::FixThin
            | Route::Update
            | Route::Complete
            | Route::Abort
            | Route::Compact
            | Route::LfsPrune
            | Route::Head
            | Route::Create => Access::Write,
            Route::Hooks => Access::Admin,
        }
    }

    /// Whether the route changes refs or retires packs: the Hypha plugin holds its lease in
    /// Hypha's Redis around it, so that the children of several Hypha workers take turns.
    pub fn leased(self) -> bool {
        matches!(self, Route::Update | Route::Compact)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Info => "info",
            Route::Refs => "refs",
            Route::Packs => "packs",
            Route::Uploads => "uploads",
            Route::Update => "update",
            Route::Head => "head",
            Route::Create => "create",
            Route::Compact => "compact",
            Route::Complete => "complete",
            Route::Abort => "abort",
            Route::Hooks => "hooks",
            Route::FixThin => "fix-thin",
            Route::LfsPrune => "lfs-prune",
        }
    }
}

/// `info` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InfoResponse {
    pub api: u32,
    /// `sha1` (the only format Hypha stores).
    pub object_format: String,
    /// Branch name (without `refs/heads/`) HEAD points at, or would point at.
    pub default_branch: String,
    /// Whether the caller's token may push.
    pub can_write: bool,
    /// Lifetime of presigned URLs handed out, in seconds.
    pub presign_expires_in: u64,
    /// Largest pack or idx accepted by one `PUT`.
    pub max_single_put: u64,
    /// Whether anonymous reads are allowed.
    #[serde(default)]
    pub public: bool,
}

/// `refs` request. Older clients send `{}`; older servers ignore the body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RefsRequest {
    /// The listing is for a push (git's `list for-push`): answer `can_write` too, so that a
    /// push with a read-only token is refused even when it has nothing to send.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub for_push: bool,
    /// A client about to fetch sends the packs it already has from this remote (as `packs`
    /// takes them): the answer then carries `packs` too, and the fetch needs no `packs` round
    /// trip. Older servers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_packs: Option<Vec<String>>,
    /// With `known_packs`: the client takes up to this many bytes of unseen packs in the
    /// answer itself (`PackInfo::inline`), so that a clone of a small repository needs no
    /// `GET` after the listing. 0 (absent) from older clients; older servers ignore it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inline_max: u64,
}

/// `refs` response: the current refs, read fresh.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RefsResponse {
    /// The symref HEAD points at, or `None` when `.git/HEAD` is missing or not a symref.
    pub head: Option<Head>,
    /// Full ref name (`refs/heads/main`) -> 40 lowercase hex.
    pub refs: BTreeMap<String, String>,
    /// Whether the caller may push, answered when the request says `for_push`; `None` from
    /// older servers (the client then learns it at the first write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_write: Option<bool>,
    /// Answered with `for_push`: the server completes thin packs (`uploads` with `thin`, then
    /// `fix-thin`). Absent from older servers, which get self-contained packs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thin_packs: bool,
    /// Answered with `for_push`: an inline thin pack may come with an empty `idx`; the server
    /// indexes the completed pack itself (it checks every stored pack with `git index-pack`
    /// anyway), so the client skips the local `index-pack --fix-thin` that only made that
    /// idx. Absent from older servers, which get the idx.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thin_without_idx: bool,
    /// Answered with `for_push`: the largest pack (its bytes plus its idx's) that `update`
    /// takes inline, so a small push needs no `uploads`, `PUT`s nor `fix-thin` round trips.
    /// 0 (absent) from older servers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inline_max: u64,
    /// Answered with `known_packs`: what `packs` would answer for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packs: Option<PacksResponse>,
    /// The repository's Git LFS endpoint, as a path below the server root, where it is not
    /// the default one ([`lfs::endpoint_path`]): the Hypha plugin's own endpoint, which offers
    /// our transfer agent beside Hypha's `.../info/lfs` (`basic` only). Absent from `git
    /// hypha serve`, an older plugin and a stock Hypha: the client then uses the default.
    /// The client checks it (`helper::lfs`) before git-lfs is told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs_endpoint: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Head {
    pub symref: String,
}

/// `packs` request: the names the client already has, which get no URLs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PacksRequest {
    #[serde(default)]
    pub known: Vec<String>,
}

/// `packs` response: every complete pack (its idx present), oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PacksResponse {
    pub packs: Vec<PackInfo>,
    /// Unix time (seconds) at which the URLs in this response expire.
    pub expires_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PackInfo {
    /// `pack-<40 hex>`, without extension.
    pub name: String,
    pub pack_size: u64,
    pub idx_size: u64,
    /// Presigned `GET` of the `.pack` (honours `Range`); absent for `known` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_url: Option<String>,
    /// Presigned `GET` of the `.idx`; absent for `known` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idx_url: Option<String>,
    /// The `.pack` itself, base64 (standard alphabet, padded): only in a `refs` answer to a
    /// request with `inline_max`, for unseen packs within it. The URLs are there too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// `uploads` request: the packs the client is about to upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadsRequest {
    pub packs: Vec<UploadSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadSpec {
    pub name: String,
    pub pack_size: u64,
    pub idx_size: u64,
    /// Asking again for fresh URLs (the first ones expired) of a multipart upload already
    /// started: its id, so that the server presigns that upload's parts instead of starting
    /// another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// A thin pack (deltas against objects the remote has) for `fix-thin`: it goes where no
    /// reader lists it, in one `PUT` each for pack and idx.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thin: bool,
    /// Continue this pack's multipart upload if one is in progress (a push cut part way):
    /// the answer then presigns only the parts not stored yet and names the others in
    /// `stored`. Older servers ignore it and start a new upload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
}

/// `fix-thin` request: complete the thin upload `name` on the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FixThinRequest {
    pub name: String,
}

/// `fix-thin` response: the self-contained pack the server made, to name in `update`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FixThinResponse {
    pub name: String,
    pub pack_size: u64,
    pub idx_size: u64,
    /// Entries (bases and their delta chains) copied from stored packs.
    pub appended: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadsResponse {
    pub uploads: Vec<Upload>,
    /// Unix time (seconds) at which the URLs in this response expire; a client asks for
    /// fresh ones instead of trying a dead URL. Absent from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// Where to `PUT` one pack's idx and pack; upload the idx first (docs/design.md §3 rule 1). The pack
/// goes up either in one `PUT` (`pack`) or, when large and the store has multipart uploads,
/// in parts (`multipart`), which the client then asks the server to `complete`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Upload {
    pub name: String,
    pub idx: PresignedRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<PresignedRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<MultipartUpload>,
}

/// A multipart upload of a pack, started by the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MultipartUpload {
    pub upload_id: String,
    /// Size of every part but the last: part `i` (from 1) is the file range starting at
    /// `(i - 1) * part_size`.
    pub part_size: u64,
    /// One presigned `PUT` per part not in `stored`, in part order, each with its signed
    /// `Content-Length`.
    pub parts: Vec<PresignedRequest>,
    /// Part numbers (from 1, ascending) already stored by an earlier attempt at this upload
    /// (only when the request asked `resume`): not sent again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stored: Vec<u32>,
    /// The server continues this upload when asked for the same pack with `resume`, so a
    /// client that keeps the pack leaves a failed upload open instead of aborting it. Absent
    /// from older servers and on stores that cannot list uploads in progress.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumable: bool,
}

impl MultipartUpload {
    /// The part numbers `parts` are for, given the number of parts of the whole split:
    /// every number from 1 not in `stored`. `None` when `stored` and `parts` do not cover
    /// exactly `total` parts (a broken answer).
    pub fn part_numbers(&self, total: u64) -> Option<Vec<u32>> {
        // S3's most parts: the list below is never longer, whatever the server said.
        if total > 10_000 {
            return None;
        }
        let mut seen = 0u32;
        for &n in &self.stored {
            if n <= seen || u64::from(n) > total {
                return None;
            }
            seen = n;
        }
        if self.stored.len() as u64 + self.parts.len() as u64 != total {
            return None;
        }
        let numbers: Vec<u32> = (1..=u32::try_from(total).ok()?)
            .filter(|n| self.stored.binary_search(n).is_err())
            .collect();
        Some(numbers)
    }
}

/// `complete` request: every part of a multipart upload is uploaded; assemble the pack. The
/// server checks each stored part against the sizes `pack_size` and `part_size` imply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompleteRequest {
    pub name: String,
    pub upload_id: String,
    pub pack_size: u64,
    pub part_size: u64,
}

/// `abort` request: give a multipart upload up and free its parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AbortRequest {
    pub name: String,
    pub upload_id: String,
}

/// Answer of `complete` and `abort`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MultipartDone {
    pub name: String,
}

/// A presigned HTTP request: send exactly `headers` (they are signed) and the body.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct PresignedRequest {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

// A presigned URL is a credential: Debug must never print it.
impl std::fmt::Debug for PresignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedRequest")
            .field("method", &self.method)
            .field("url", &"<redacted>")
            .finish()
    }
}

/// `update` request: the commit point of a push.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UpdateRequest {
    /// Packs uploaded for this push; the server checks that each is complete.
    #[serde(default)]
    pub packs: Vec<String>,
    pub updates: Vec<RefUpdate>,
    /// All refs change or none does.
    #[serde(default)]
    pub atomic: bool,
    /// Point HEAD at this ref when `.git/HEAD` is missing (first push).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_head_if_missing: Option<String>,
    /// `git push -o` strings, C-unquoted, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push_options: Vec<String>,
    /// Small packs sent in the request itself (to a server whose listing gave `inline_max`);
    /// the server stores (a thin one: completes) each as an upload, then updates as if `packs`
    /// named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<InlinePack>,
}

/// A pack carried in an `update` request: its `.pack` and `.idx` bytes, base64 (standard
/// alphabet, padded).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InlinePack {
    /// `pack-<40 hex>`, as an upload would be named.
    pub name: String,
    /// Thin: the server completes it (as `fix-thin` would) before the update.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thin: bool,
    pub pack: String,
    pub idx: String,
}

/// One compare-and-swap: `old: None` = must not exist, `new: None` = delete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefUpdate {
    #[serde(rename = "ref")]
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UpdateResponse {
    /// One result per requested update, in request order.
    pub results: Vec<RefResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefResult {
    #[serde(rename = "ref")]
    pub name: String,
    pub status: RefStatus,
    /// With `stale`: the value found (`None` = ref absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// With `rejected`: why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RefStatus {
    Ok,
    /// `old` did not match the current value; nothing was written for this ref.
    Stale,
    /// Refused for another reason (atomic batch failed, policy); see `detail`.
    Rejected,
}

/// `head` request: set the default branch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeadRequest {
    pub symref: String,
}

/// `create` request: make an empty repository.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CreateRequest {
    /// Allow anonymous reads.
    #[serde(default)]
    pub public: bool,
    /// Branch HEAD points at; `main` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
}

/// `compact` request: `pack` (already uploaded) holds every object of the `retire` packs, which
/// stop being listed now and are deleted after the server's grace period.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompactRequest {
    pub pack: String,
    pub retire: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CompactResponse {
    /// Packs retired by this request.
    pub retired: Vec<String>,
    /// Packs whose grace period had passed and that are now deleted.
    pub deleted: Vec<String>,
    /// Seconds a retired pack stays readable for clients that listed it before.
    pub grace_secs: u64,
}

/// `lfs-prune` request: no parameters yet (the server's grace period applies).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LfsPruneRequest {}

/// `lfs-prune` response: what the server found and deleted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LfsPruneResponse {
    /// LFS objects stored before the prune.
    pub objects: usize,
    /// Of those, the ones a ref reaches.
    pub reachable: usize,
    /// Unreachable objects kept until a later prune (marked now or recently, or too young).
    pub waiting: usize,
    /// Oids deleted now.
    pub deleted: Vec<String>,
    pub deleted_bytes: u64,
    /// Seconds an unreachable object is kept (since it was found unreachable, and since it
    /// was last written).
    pub grace_secs: u64,
    /// Why nothing was examined this time (uploads of a push in flight), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Body of every non-2xx answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 404: no such repository (or route).
    NotFound,
    /// 401: no or invalid token; answered with `WWW-Authenticate`.
    Unauthenticated,
    /// 403: valid token without the permission.
    Forbidden,
    /// 422: malformed request, bad name or size.
    Invalid,
    /// 409: compare-and-swap lost.
    Stale,
    /// 409: the repository already exists (`create`).
    Exists,
    /// 503: try again after `Retry-After`.
    Busy,
    /// 413: a workspace quota (pending uploads, stored bytes) would be exceeded; waiting
    /// does not help, so it is not retried. A helper from before it reads the 413 as
    /// `invalid`.
    Quota,
    /// 500: the server failed; detail says where.
    Internal,
    /// A code this helper does not know (from a newer server): the HTTP status decides
    /// what it means, and the detail is still shown. Never sent.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code a server sends (not [`ErrorCode::Unknown`]): `git hypha routes` prints
    /// their statuses for the Hypha plugin, which answers some errors itself.
    pub const SENT: [ErrorCode; 9] = [
        ErrorCode::NotFound,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::Invalid,
        ErrorCode::Stale,
        ErrorCode::Exists,
        ErrorCode::Busy,
        ErrorCode::Quota,
        ErrorCode::Internal,
    ];

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::NotFound => 404,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::Invalid => 422,
            ErrorCode::Stale | ErrorCode::Exists => 409,
            ErrorCode::Busy => 503,
            ErrorCode::Quota => 413,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SENT` (what `git hypha routes` prints for the plugin) is every code but `Unknown`: the
    /// match below stops compiling when a code is added, until it is sorted here.
    #[test]
    fn every_code_a_server_sends_is_listed_once() {
        let sent = |code: ErrorCode| match code {
            ErrorCode::Unknown => false,
            ErrorCode::NotFound
            | ErrorCode::Unauthenticated
            | ErrorCode::Forbidden
            | ErrorCode::Invalid
            | ErrorCode::Stale
            | ErrorCode::Exists
            | ErrorCode::Busy
            | ErrorCode::Quota
            | ErrorCode::Internal => true,
        };
        assert!(ErrorCode::SENT.into_iter().all(sent));
        let names: std::collections::BTreeSet<String> = ErrorCode::SENT
            .into_iter()
            .map(|c| serde_json::to_string(&c).unwrap())
            .collect();
        assert_eq!(names.len(), 9, "{names:?}");
        assert!(!sent(ErrorCode::Unknown));
    }

    /// `ALL` holds every route once, each found again by its name; what the Hypha plugin
    /// reads of the table (`git hypha routes`) is what docs/design.md §4 says.
    #[test]
    fn route_table() {
        for route in Route::ALL {
            // A new variant fails to compile here until it is given a place in `ALL`.
            match route {
                Route::Info
                | Route::Refs
                | Route::Packs
                | Route::Uploads
                | Route::Update
                | Route::Head
                | Route::Create
                | Route::Compact
                | Route::Complete
                | Route::Abort
                | Route::Hooks
                | Route::FixThin
                | Route::LfsPrune => {}
            }
            assert_eq!(Route::parse(route.as_str()), Some(route));
        }
        let names: std::collections::BTreeSet<_> = Route::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Route::ALL.len());
        assert_eq!(Route::parse("refs "), None);
        assert_eq!(
            Route::parse("gc"),
            None,
            "the plugin's child compacts by itself"
        );
        let reads: Vec<_> = Route::ALL
            .into_iter()
            .filter(|r| r.access() == Access::Read)
            .map(Route::as_str)
            .collect();
        assert_eq!(reads, ["info", "refs", "packs"]);
        assert_eq!(Route::Hooks.access(), Access::Admin);
        let leased: Vec<_> = Route::ALL.into_iter().filter(|r| r.leased()).collect();
        assert_eq!(leased, [Route::Update, Route::Compact]);
    }

    #[test]
    fn update_wire_shape() {
        let req: UpdateRequest = serde_json::from_str(
            r#"{"updates":[{"ref":"refs/heads/a","old":null,"new":"0123456789012345678901234567890123456789"}]}"#,
        )
        .expect("valid json");
        assert_eq!(req.updates[0].old, None);
        assert!(!req.atomic);
        let res = RefResult {
            name: "refs/heads/a".into(),
            status: RefStatus::Stale,
            current: None,
            detail: None,
        };
        assert_eq!(
            serde_json::to_string(&res).expect("serializes"),
            r#"{"ref":"refs/heads/a","status":"stale"}"#
        );
    }

    /// A resumed upload's parts are the numbers not stored; answers whose `stored` is out of
    /// order, out of range or does not add up with `parts` are refused.
    #[test]
    fn resumed_part_numbers_are_the_ones_not_stored() {
        let put = PresignedRequest {
            method: "PUT".into(),
            url: "u".into(),
            headers: Default::default(),
        };
        let mp = |stored: Vec<u32>, parts: usize| MultipartUpload {
            upload_id: "id".into(),
            part_size: 5,
            parts: vec![put.clone(); parts],
            stored,
            resumable: true,
        };
        assert_eq!(mp(vec![], 3).part_numbers(3), Some(vec![1, 2, 3]));
        assert_eq!(mp(vec![1, 3], 2).part_numbers(4), Some(vec![2, 4]));
        assert_eq!(mp(vec![1, 2, 3], 0).part_numbers(3), Some(vec![]));
        assert_eq!(mp(vec![3, 1], 2).part_numbers(4), None, "out of order");
        assert_eq!(mp(vec![1, 1], 2).part_numbers(4), None, "twice");
        assert_eq!(mp(vec![5], 3).part_numbers(4), None, "past the end");
        assert_eq!(mp(vec![0], 3).part_numbers(4), None, "part 0");
        assert_eq!(mp(vec![1], 1).part_numbers(4), None, "too few parts");
        assert_eq!(mp(vec![], 1).part_numbers(1 << 40), None, "too many parts");
        // An older server's answer: no `stored`, no `resumable`.
        let old: MultipartUpload =
            serde_json::from_str(r#"{"upload_id":"i","part_size":5,"parts":[]}"#).expect("json");
        assert!(old.stored.is_empty() && !old.resumable);
    }

    #[test]
    fn single_put_uploads_still_parse() {
        // What the Hypha plugin (and any server without multipart) answers.
        let up: Upload = serde_json::from_str(
            r#"{"name":"pack-x","idx":{"method":"PUT","url":"u1"},"pack":{"method":"PUT","url":"u2","headers":{"Content-Length":"9"}}}"#,
        )
        .expect("valid json");
        assert!(up.multipart.is_none());
        assert_eq!(up.pack.expect("single put").url, "u2");
        let spec = UploadSpec {
            name: "pack-x".into(),
            pack_size: 1,
            idx_size: 1,
            upload_id: None,
            thin: false,
            resume: false,
        };
        assert!(!serde_json::to_string(&spec)
            .expect("serializes")
            .contains("upload_id"));
    }
}

/// `hooks` request (admin on the workspace): list, add or remove a repository's webhooks.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum HooksRequest {
    List,
    /// Add a hook, or replace the secret of the hook with this URL.
    Add {
        url: String,
        secret: String,
    },
    Remove {
        url: String,
    },
}

// The secret must never reach a log.
impl std::fmt::Debug for HooksRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HooksRequest::List => f.write_str("List"),
            HooksRequest::Add { url, .. } => f
                .debug_struct("Add")
                .field("url", url)
                .field("secret", &"<redacted>")
                .finish(),
            HooksRequest::Remove { url } => f.debug_struct("Remove").field("url", url).finish(),
        }
    }
}

/// `hooks` answer: the hooks (never their secrets) and the last deliveries, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HooksResponse {
    pub hooks: Vec<HookInfo>,
    #[serde(default)]
    pub deliveries: Vec<DeliveryInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HookInfo {
    pub url: String,
    /// Unix seconds.
    pub added_at: u64,
}

/// One delivery of a push event, after its retries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryInfo {
    /// The `X-Hypha-Delivery` header it was sent with.
    pub id: String,
    pub url: String,
    /// Unix seconds of the last attempt.
    pub at: u64,
    pub refs: Vec<String>,
    /// HTTP status of the last attempt, when the target answered.
    pub status: Option<u16>,
    pub attempts: u32,
    pub ok: bool,
    pub error: Option<String>,
}
