//! The S3 test servers of `scripts/s3-services.sh` (test.sh and CI start them), for tests of
//! the S3 backend:
//!
//! - s3s-fs checks SigV4 signatures, presigned-URL expiry and `Range`, but its conditional
//!   writes are check-then-write: every test that needs a strict server but no race runs there.
//! - moto applies conditional writes atomically but checks no signatures: races run there.
//!
//! The script writes `HYPHA_TEST_S3_ENDPOINT`, `HYPHA_TEST_S3_BUCKET`,
//! `HYPHA_TEST_MOTO_ENDPOINT`, `HYPHA_TEST_MOTO_BUCKET` and the `AWS_*` credentials. When a
//! server's endpoint is unset, [`Server::store`] prints a note and answers `None` (the test
//! passes), so that a plain `cargo test` on a machine without the services still works; under
//! CI (`CI` set) it fails instead. Every store gets its own random key prefix, so runs share
//! the buckets.
//!
//! Test code, shared by the library's unit tests (both conformance suites)
//! and `tests/s3.rs` (which includes this file with `#[path]`): it names the S3 backend only
//! through `super::`, which is `crate::storage` in the one and the test's own imports in the
//! other.

use super::s3;
use super::S3;
use std::collections::HashMap;

/// The two servers of `scripts/s3-services.sh`.
#[derive(Clone, Copy)]
pub enum Server {
    /// Strict about signatures, expiry and ranges.
    S3sFs,
    /// Atomic conditional writes.
    Moto,
}

impl Server {
    fn vars(self) -> (&'static str, &'static str) {
        match self {
            Server::S3sFs => ("HYPHA_TEST_S3_ENDPOINT", "HYPHA_TEST_S3_BUCKET"),
            Server::Moto => ("HYPHA_TEST_MOTO_ENDPOINT", "HYPHA_TEST_MOTO_BUCKET"),
        }
    }

    /// The server's config with a fresh prefix for `test`, or `None` (and a printed note)
    /// when the server is not configured.
    pub fn config(self, test: &str) -> Option<s3::Config> {
        let (endpoint_var, bucket_var) = self.vars();
        let endpoint = std::env::var(endpoint_var).ok().filter(|v| !v.is_empty());
        let Some(endpoint) = endpoint else {
            // CI starts the services (test.sh): there, a missing endpoint is a broken setup.
            assert!(
                std::env::var("CI").map_or(true, |v| v.is_empty() || v == "false"),
                "{endpoint_var} is not set under CI: test.sh starts the S3 test services"
            );
            // Straight to stderr: libtest would swallow `eprintln!` of a passing test.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "note: {test} skipped: {endpoint_var} is not set \
                 (scripts/s3-services.sh start writes it; CI always sets it)"
            );
            return None;
        };
        let env: HashMap<String, String> = std::env::vars().collect();
        Some(s3::Config {
            endpoint: Some(endpoint),
            bucket: std::env::var(bucket_var).unwrap_or_else(|_| "hypha-test".to_owned()),
            prefix: Some(format!(
                "tests/{test}-{}",
                hex::encode(rand::random::<[u8; 6]>())
            )),
            region: s3::region_from(None, &env),
            path_style: true,
            credentials: s3::Credentials::from_env(&env)
                .expect("the S3 test services need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        })
    }

    /// A store on the server under a fresh prefix for `test`, or `None` as for
    /// [`Server::config`].
    pub fn store(self, test: &str) -> Option<S3> {
        let config = self.config(test)?;
        Some(S3::new(&config).expect("valid S3 config"))
    }
}
