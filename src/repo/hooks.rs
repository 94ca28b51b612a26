//! A repository's webhooks and their delivery log, kept in the repository's own storage
//! (`.git/hypha-remote/hooks.json`, `.git/hypha-remote/hook-log.json`), so that every server
//! on the same store (the standalone server, the Hypha plugin's child) sees the same hooks.
//!
//! Owns the two files and their read-modify-write with compare-and-swap. Does not decide who
//! may manage hooks (the server does), whether a target may be called (`server::webhook`
//! checks addresses), nor deliver anything. The signing secret is stored as given: the server
//! must sign with it; only [`HookView`] leaves this module toward callers who list hooks.

use super::Repository;
use crate::storage::{Error, PutMode};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Most hooks one repository may have.
pub const MAX_HOOKS: usize = 20;

/// Deliveries kept in the log, newest last; older ones are dropped.
pub const LOG_LEN: usize = 50;

/// Attempts of one read-modify-write before a concurrent writer wins.
const CAS_ATTEMPTS: usize = 8;

/// One webhook: where to send, and the secret the body is signed with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub url: String,
    pub secret: String,
    /// Unix seconds.
    #[serde(default)]
    pub added_at: u64,
}

// The secret must never reach a log.
impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What a listing may show of a hook: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookView {
    pub url: String,
    pub added_at: u64,
}

/// The outcome of one delivery (after its retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The delivery id sent in the request headers.
    pub id: String,
    pub url: String,
    /// Unix seconds of the last attempt.
    pub at: u64,
    /// Refs the push updated.
    pub refs: Vec<String>,
    /// HTTP status of the last attempt, when there was an answer.
    pub status: Option<u16>,
    pub attempts: u32,
    pub ok: bool,
    /// Why the last attempt failed, in words (no URL query, no secret).
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct HooksFile {
    #[serde(default)]
    hooks: Vec<Hook>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LogFile {
    #[serde(default)]
    deliveries: Vec<Delivery>,
}

impl Repository {
    fn hooks_key(&self) -> String {
        self.key("hypha-remote/hooks.json")
    }

    fn hook_log_key(&self) -> String {
        self.key("hypha-remote/hook-log.json")
    }

    /// The hooks to deliver to, secrets included (for the server's delivery only).
    pub async fn hooks(&self) -> Result<Vec<Hook>, Error> {
        Ok(self
            .read_json::<HooksFile>(&self.hooks_key())
            .await?
            .0
            .hooks)
    }

    /// The hooks as a listing shows them.
    pub async fn hook_views(&self) -> Result<Vec<HookView>, Error> {
        Ok(self
            .hooks()
            .await?
            .into_iter()
            .map(|h| HookView {
                url: h.url,
                added_at: h.added_at,
            })
            .collect())
    }

    /// Add `hook`, or replace the secret of the hook with the same URL.
    pub async fn add_hook(&self, hook: Hook) -> Result<(), Error> {
        let name = self.name.clone();
        self.modify_json(&self.hooks_key(), |file: &mut HooksFile| {
            if let Some(existing) = file.hooks.iter_mut().find(|h| h.url == hook.url) {
                *existing = hook.clone();
                return Ok(());
            }
            if file.hooks.len() >= MAX_HOOKS {
                return Err(Error::Invalid {
                    detail: format!("{name}: at most {MAX_HOOKS} hooks per repository"),
                });
            }
            file.hooks.push(hook.clone());
            Ok(())
        })
        .await
    }

    /// Remove the hook with this URL; [`Error::NotFound`] when there is none.
    pub async fn remove_hook(&self, url: &str) -> Result<(), Error> {
        self.modify_json(&self.hooks_key(), |file: &mut HooksFile| {
            let before = file.hooks.len();
            file.hooks.retain(|h| h.url != url);
            if file.hooks.len() == before {
                return Err(Error::NotFound {
                    key: format!("hook {}", crate::storage::shorten(url)),
                });
            }
            Ok(())
        })
        .await
    }

    /// The last deliveries, oldest first.
    pub async fn hook_log(&self) -> Result<Vec<Delivery>, Error> {
        Ok(self
            .read_json::<LogFile>(&self.hook_log_key())
            .await?
            .0
            .deliveries)
    }

    /// Append a delivery's outcome, keeping the last [`LOG_LEN`].
    pub async fn log_delivery(&self, delivery: Delivery) -> Result<(), Error> {
        self.modify_json(&self.hook_log_key(), |file: &mut LogFile| {
            file.deliveries.push(delivery.clone());
            let excess = file.deliveries.len().saturating_sub(LOG_LEN);
            file.deliveries.drain(..excess);
            Ok(())
        })
        .await
    }

    /// The file's contents (default when missing) and its etag.
    async fn read_json<T: DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<(T, Option<String>), Error> {
        match self.backend.get(key).await {
            Ok(obj) => Ok((
                serde_json::from_slice(&obj.body).map_err(|e| Error::backend(key, e))?,
                Some(obj.etag),
            )),
            Err(Error::NotFound { .. }) => Ok((T::default(), None)),
            Err(e) => Err(e),
        }
    }

    /// Read, change, write back only if nobody wrote in between; retried when someone did.
    async fn modify_json<T: Serialize + DeserializeOwned + Default>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut T) -> Result<(), Error>,
    ) -> Result<(), Error> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut value, etag) = self.read_json::<T>(key).await?;
            change(&mut value)?;
            let body = serde_json::to_vec_pretty(&value).map_err(|e| Error::backend(key, e))?;
            let mode = match etag {
                Some(etag) => PutMode::IfMatch(etag),
                None => PutMode::IfNoneMatch,
            };
            match self.backend.put(key, body.into(), mode).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_lost_race() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Busy {
            key: key.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Store;
    use crate::storage::LocalDisk;
    use std::sync::Arc;

    fn hook(url: &str, secret: &str) -> Hook {
        Hook {
            url: url.to_owned(),
            secret: secret.to_owned(),
            added_at: 1,
        }
    }

    #[tokio::test]
    async fn hooks_and_log_survive_concurrent_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = LocalDisk::new(dir.path(), "http://localhost:1", b"k").expect("disk");
        let repo = Store::new(Arc::new(disk)).repo("ws", "repo").expect("repo");
        repo.create(false, None).await.expect("create");

        // Eight adds at once: compare-and-swap loses none of them.
        let adds = (0..8).map(|i| {
            let repo = repo.clone();
            async move {
                repo.add_hook(hook(&format!("https://h{i}.example/"), "s"))
                    .await
            }
        });
        for result in futures_util::future::join_all(adds).await {
            result.expect("add");
        }
        assert_eq!(repo.hook_views().await.expect("views").len(), 8);

        // The same URL again replaces its secret; views never carry one.
        repo.add_hook(hook("https://h0.example/", "new"))
            .await
            .expect("replace");
        let hooks = repo.hooks().await.expect("hooks");
        assert_eq!(hooks.len(), 8);
        assert!(hooks.iter().any(|h| h.secret == "new"));
        assert!(
            !format!("{hooks:?}").contains("new"),
            "Debug shows a secret"
        );

        repo.remove_hook("https://h3.example/")
            .await
            .expect("remove");
        assert!(matches!(
            repo.remove_hook("https://h3.example/").await,
            Err(Error::NotFound { .. })
        ));
        for i in 8..MAX_HOOKS + 1 {
            repo.add_hook(hook(&format!("https://h{i}.example/"), "s"))
                .await
                .expect("add up to the limit");
        }
        assert!(matches!(
            repo.add_hook(hook("https://one-too-many.example/", "s"))
                .await,
            Err(Error::Invalid { .. })
        ));

        // The log keeps the newest LOG_LEN deliveries, oldest first.
        for i in 0..LOG_LEN + 5 {
            let delivery = Delivery {
                id: format!("d{i}"),
                url: "https://h0.example/".into(),
                at: i as u64,
                refs: vec!["refs/heads/main".into()],
                status: Some(200),
                attempts: 1,
                ok: true,
                error: None,
            };
            repo.log_delivery(delivery).await.expect("log");
        }
        let log = repo.hook_log().await.expect("log");
        assert_eq!(log.len(), LOG_LEN);
        assert_eq!(log[0].id, "d5");
        // Private files, never under refs/ (Hypha lists everything there as a ref).
        let private = dir.path().join("ws/artifacts/repo/.git/hypha-remote");
        assert!(private.join("hooks.json").is_file() && private.join("hook-log.json").is_file());
    }
}
