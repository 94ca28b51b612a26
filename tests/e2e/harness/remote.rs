//! Repositories on the server: their `hypha::` URLs, `git hypha create` (private, public, in
//! another workspace), and where the server stores them.

use std::path::PathBuf;

use super::{TestEnv, WS};

impl TestEnv {
    /// `hypha::http://127.0.0.1:PORT/ws/alias`.
    pub fn url(&self, alias: &str) -> String {
        self.url_in(WS, alias)
    }

    pub fn url_in(&self, workspace: &str, alias: &str) -> String {
        format!(
            "hypha::{}/{}/{alias}",
            self.server.url(),
            self.workspace(workspace)
        )
    }

    /// `git hypha create` of a private repository in [`WS`]; returns its URL.
    pub fn create(&self, alias: &str) -> String {
        let url = self.url(alias);
        self.git_hypha(&["create", &url]).ok();
        url
    }

    /// `git hypha create --public`; returns its URL.
    pub fn create_public(&self, alias: &str) -> String {
        let url = self.url(alias);
        self.git_hypha(&["create", &url, "--public"]).ok();
        url
    }

    /// Creates a repository in another workspace with a token for that workspace.
    pub fn create_in(&self, workspace: &str, alias: &str) -> String {
        let url = self.url_in(workspace, alias);
        let token = self.mint(workspace, "rw");
        self.git_hypha(&["create", &url]).token(&token).ok();
        url
    }

    /// The `.git` directory of a repository in the server's storage (docs/design.md §3). In Hypha
    /// mode: Hypha's `{ws}/artifacts/{uuid}/.git` in s3s-fs's directory, or a path that does
    /// not exist when Hypha has no such artifact.
    pub fn stored_repo(&self, alias: &str) -> PathBuf {
        if let Some(ns) = &self.hypha {
            return ns.stored_repo(WS, alias);
        }
        self.server
            .root()
            .join(WS)
            .join("artifacts")
            .join(alias)
            .join(".git")
    }
}
