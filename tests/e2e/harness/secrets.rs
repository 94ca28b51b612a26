//! The secret scan: every captured stdout and stderr is checked for the tokens the test minted
//! and for presigned-URL signatures (docs/design.md §6); the failure report redacts the tokens.

use super::{Out, TestEnv};

/// Substrings that only a presigned URL would contain; none may ever reach a terminal.
const PRESIGNED_MARKERS: &[&str] = &["sig=", "x-amz-signature", "x-amz-credential"];

impl TestEnv {
    pub(super) fn check_secrets(&self, out: &Out) {
        let secrets = self.secrets.borrow();
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            for (i, secret) in secrets.iter().enumerate() {
                if !secret.is_empty() && text.contains(secret.as_str()) {
                    panic!(
                        "token #{i} minted by this test appears in {stream} (tokens are never \
                         printed, docs/design.md §6)\n{}",
                        out.redacted(&secrets)
                    );
                }
            }
            let lower = text.to_lowercase();
            for marker in PRESIGNED_MARKERS {
                if lower.contains(marker) {
                    panic!(
                        "{stream} contains {marker:?}: a presigned URL was printed (docs/design.md §6)\n{}",
                        out.redacted(&secrets)
                    );
                }
            }
        }
    }
}

impl Out {
    fn redacted(&self, secrets: &[String]) -> String {
        let mut text = self.to_string();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret.as_str(), "<TOKEN>");
        }
        text
    }
}
