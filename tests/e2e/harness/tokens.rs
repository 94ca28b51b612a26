//! Tokens and workspace names: [`WS`], the default token, minting (valid, foreign-signed,
//! expired) against `git hypha serve` or Hypha, and the server's name of a test workspace.

use super::{Out, TestEnv};

/// Workspace every test uses unless it needs a second one.
pub const WS: &str = "ws";

const FOREIGN_SECRET: &str = "not-the-server-secret-0123456789abcdef";

impl TestEnv {
    /// The default `rw` token for [`WS`].
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Mints a token signed with the server's secret and remembers it as a secret to scan for.
    pub fn mint(&self, workspace: &str, permission: &str) -> String {
        if let Some(ns) = &self.hypha {
            return self.remember(ns.mint(workspace, permission, None, None));
        }
        let secret = self.server.secret().to_string();
        self.mint_with_secret(&secret, workspace, permission)
    }

    /// Mints a token for another user (subject) than the default token's (`git hypha serve`
    /// only: a Hypha namespace has its own users).
    pub fn mint_as(&self, subject: &str, workspace: &str, permission: &str) -> String {
        assert!(self.hypha.is_none(), "mint_as needs `git hypha serve`");
        let secret = self.server.secret().to_string();
        let out = self.git_hypha_token(&secret, workspace, permission, &["--subject", subject]);
        self.remember(out.stdout.trim().to_string())
    }

    /// Mints a well-formed token signed with a secret the server does not know.
    pub fn mint_foreign(&self, workspace: &str, permission: &str) -> String {
        if let Some(ns) = &self.hypha {
            return self.remember(ns.mint(workspace, permission, None, Some(FOREIGN_SECRET)));
        }
        self.mint_with_secret(FOREIGN_SECRET, workspace, permission)
    }

    /// Mints a token, signed with the server's secret, that expired a minute ago.
    pub fn mint_expired(&self, workspace: &str, permission: &str) -> String {
        if let Some(ns) = &self.hypha {
            return self.remember(ns.mint(workspace, permission, Some(-60), None));
        }
        let out = self.git_hypha_token(
            self.server.secret(),
            workspace,
            permission,
            &["--expires-in", "0"],
        );
        self.remember(out.stdout.trim().to_string())
    }

    fn remember(&self, token: String) -> String {
        self.secrets.borrow_mut().push(token.clone());
        token
    }

    /// The server's name of test workspace `workspace`: the same against `git hypha serve`,
    /// this test's own Hypha workspace in Hypha mode (whose name ends in `-{workspace}`).
    pub fn workspace(&self, workspace: &str) -> String {
        match &self.hypha {
            Some(ns) => ns.workspace(workspace),
            None => workspace.to_string(),
        }
    }

    /// `git hypha token --workspace WS --permission P` with `HYPHA_JWT_SECRET=secret`.
    fn mint_with_secret(&self, secret: &str, workspace: &str, permission: &str) -> String {
        let out = self.git_hypha_token(secret, workspace, permission, &[]);
        let token = out.stdout.trim().to_string();
        assert!(
            !token.is_empty() && !token.contains('\n'),
            "`git hypha token` must print the token as one line\n{out}"
        );
        self.remember(token)
    }

    /// `git hypha token --workspace WS --permission P EXTRA...` with `HYPHA_JWT_SECRET=secret`:
    /// anonymous, unscanned (its job is to print the token), and required to succeed.
    fn git_hypha_token(
        &self,
        secret: &str,
        workspace: &str,
        permission: &str,
        extra: &[&str],
    ) -> Out {
        let mut args = vec![
            "token",
            "--workspace",
            workspace,
            "--permission",
            permission,
        ];
        args.extend_from_slice(extra);
        self.git_hypha(&args)
            .env("HYPHA_JWT_SECRET", secret)
            .no_token()
            .unscanned()
            .ok()
    }
}
