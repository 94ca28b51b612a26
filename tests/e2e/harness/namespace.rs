//! Hypha mode: [`Namespace`], one test's users, workspaces and tokens on a shared Hypha server.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{hypha, server};

/// One test's names on a shared Hypha server: test workspace `W` is the user workspace
/// `ws-user-e2e<unique>-W`, owned by user `e2e<unique>-W`.
pub(super) struct Namespace {
    target: &'static hypha::Hypha,
    unique: String,
    /// Workspaces already made to exist on Hypha.
    made: RefCell<BTreeSet<String>>,
}

/// 8 hex digits from [`server::unique_id`], distinct within a run in all likelihood (a
/// hundred tests collide with odds of about one in a million). Short, because Hypha's keys
/// start with the workspace, and s3s-fs fails a write (after storing the bytes) whose key,
/// in base64, does not fit its side files' names (255 bytes): an LFS object's key
/// (`{ws}/artifacts/{uuid}/git/lfs/objects/aa/bb/<oid>`, 134 bytes without the workspace)
/// fits with a workspace of at most 26 bytes, which `ws-user-e2e<8 hex>-ws` is.
fn short_unique() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write(server::unique_id().as_bytes());
    format!("{:08x}", hasher.finish() as u32)
}

impl Namespace {
    pub(super) fn new(target: &'static hypha::Hypha) -> Namespace {
        Namespace {
            target,
            unique: short_unique(),
            made: RefCell::new(BTreeSet::new()),
        }
    }

    fn owner(&self, workspace: &str) -> String {
        let w: String = workspace
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("e2e{}-{w}", self.unique)
    }

    pub(super) fn workspace(&self, workspace: &str) -> String {
        if workspace == "*" {
            return "*".into();
        }
        format!("ws-user-{}", self.owner(workspace))
    }

    /// `a` is the owner (Hypha makes a user admin of `ws-user-<id>`); `rw` and `r` are
    /// other users with just that grant, so Hypha's workspace permission check decides.
    pub(super) fn mint(
        &self,
        workspace: &str,
        permission: &str,
        expires_in: Option<i64>,
        secret: Option<&str>,
    ) -> String {
        let lifetime = expires_in.unwrap_or_else(hypha::Hypha::default_lifetime);
        let owner = self.owner(workspace);
        if workspace == "*" {
            return self
                .target
                .token(&format!("{owner}-any"), "*", permission, lifetime, secret);
        }
        let ws = self.workspace(workspace);
        if permission == "a" {
            return self.target.token(&owner, &ws, "a", lifetime, secret);
        }
        // Granted users act in a workspace that exists: its owner's first call creates it.
        self.make(workspace);
        self.target.token(
            &format!("{owner}-{permission}"),
            &ws,
            permission,
            lifetime,
            secret,
        )
    }

    fn owner_token(&self, workspace: &str) -> String {
        self.target.token(
            &self.owner(workspace),
            &self.workspace(workspace),
            "a",
            hypha::Hypha::default_lifetime(),
            None,
        )
    }

    /// Hypha creates a user's workspace on that user's first RPC call.
    fn make(&self, workspace: &str) {
        if self.made.borrow().contains(workspace) {
            return;
        }
        let (status, body) = self
            .target
            .artifact_rpc(&self.owner_token(workspace), "list", "{}");
        assert_eq!(
            status,
            200,
            "Hypha: artifact-manager.list as the owner of {} (creates the workspace): {body}",
            self.workspace(workspace)
        );
        self.made.borrow_mut().insert(workspace.to_string());
    }

    /// Hypha's artifact manager knows the UUID under which the repository is stored. (`list`
    /// filtered by alias, not `read`: `read` computes the git versions and takes a second.)
    pub(super) fn stored_repo(&self, workspace: &str, alias: &str) -> PathBuf {
        let ws = self.workspace(workspace);
        let query = serde_json::json!({ "filters": { "alias": alias } }).to_string();
        let (status, body) = self
            .target
            .artifact_rpc(&self.owner_token(workspace), "list", &query);
        assert_eq!(status, 200, "Hypha: list {ws} (alias {alias}): {body}");
        let listing: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("Hypha: list {ws} (alias {alias}): {e}: {body}"));
        let id = format!("{ws}/{alias}");
        let uuid = listing
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["id"].as_str() == Some(id.as_str()))
            .map(|a| {
                a["_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("Hypha: {id} is listed without _id: {body}"))
                    .to_string()
            });
        let dir = self.target.store().join(&ws).join("artifacts");
        match uuid {
            Some(uuid) => dir.join(uuid).join(".git"),
            None => dir.join(format!("no-artifact-{alias}")).join(".git"),
        }
    }
}
