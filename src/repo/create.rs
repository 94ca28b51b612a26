//! Making a repository (`create`, as Hypha's `init_bare` lays it out), telling whether one
//! exists, and its private settings at `.git/hypha-remote/config.json`.
//!
//! Does not decide who may create (the server does) and writes no ref: `HEAD` points at a
//! branch that does not exist yet, as in `git init --bare`.

use super::Repository;
use crate::storage::{Error, PutMode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Branch HEAD points at when nobody said otherwise.
pub const DEFAULT_BRANCH: &str = "main";

/// Private settings of a repository, at `.git/hypha-remote/config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    #[serde(default)]
    pub public: bool,
    #[serde(default = "default_branch")]
    pub default_branch: String,
}

fn default_branch() -> String {
    DEFAULT_BRANCH.to_owned()
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            public: false,
            default_branch: default_branch(),
        }
    }
}

impl Repository {
    /// A repository exists when any of the objects `create` writes exists. (An artifact
    /// that Hypha switched to git storage through `edit()` has no HEAD, but `.gitkeep`.)
    pub async fn exists(&self) -> Result<bool, Error> {
        for rel in ["HEAD", "hypha-remote/config.json", "objects/pack/.gitkeep"] {
            match self.backend.head(&self.key(rel)).await {
                Ok(_) => return Ok(true),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Make an empty repository: config, `HEAD` -> `refs/heads/<default_branch>`, and
    /// `objects/pack/.gitkeep`, as Hypha's `init_bare` does. [`Error::AlreadyExists`] (naming
    /// the repository) when it exists.
    pub async fn create(&self, public: bool, default_branch: Option<&str>) -> Result<(), Error> {
        let head = crate::names::default_branch_ref(default_branch.unwrap_or(DEFAULT_BRANCH))
            .map_err(|detail| Error::Invalid { detail })?;
        let branch = head.strip_prefix("refs/heads/").unwrap_or(&head);
        let exists = || Error::AlreadyExists {
            key: self.name.clone(),
        };
        if self.exists().await? {
            return Err(exists());
        }
        let config = RepoConfig {
            public,
            default_branch: branch.to_owned(),
        };
        let body = serde_json::to_vec_pretty(&config).map_err(|e| Error::backend(&self.name, e))?;
        // The config is written first and conditionally: of two racing creators, one wins.
        match self
            .backend
            .put(&self.config_key(), body.into(), PutMode::IfNoneMatch)
            .await
        {
            Err(Error::AlreadyExists { .. }) => return Err(exists()),
            other => other?,
        };
        match self
            .backend
            .put(
                &self.key("HEAD"),
                Bytes::from(format!("ref: {head}\n")),
                PutMode::IfNoneMatch,
            )
            .await
        {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        self.backend
            .put(
                &self.key("objects/pack/.gitkeep"),
                Bytes::new(),
                PutMode::Overwrite,
            )
            .await?;
        Ok(())
    }

    /// The private settings; defaults when the file is missing (a repository Hypha made).
    pub async fn config(&self) -> Result<RepoConfig, Error> {
        let key = self.config_key();
        match self.backend.get(&key).await {
            Ok(obj) => serde_json::from_slice(&obj.body).map_err(|e| Error::backend(&key, e)),
            Err(Error::NotFound { .. }) => Ok(RepoConfig::default()),
            Err(e) => Err(e),
        }
    }
}
