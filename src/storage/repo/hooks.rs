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
