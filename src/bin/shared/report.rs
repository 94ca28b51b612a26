//! How both binaries print the error that ends them: `<prefix>: <error>`, one `caused by: ...`
//! line per source, then `hint: ...` lines for a cause that knows its fix (an
//! [`AuthProblem`]: which command gets a token). git shows a helper's stderr as it is.
//!
//! Owns the layout only; the words are the library's.

use hypha_git::client::AuthProblem;
use std::error::Error;

/// Print `error` and its causes to stderr, git style (`fatal` for the helper, `error` for
/// `git hypha`).
pub fn print(prefix: &str, error: &(dyn Error + 'static)) {
    eprintln!("{prefix}: {error}");
    let mut hints = hints_of(error);
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("caused by: {cause}");
        hints.extend(hints_of(cause));
        source = cause.source();
    }
    for hint in hints {
        eprintln!("hint: {hint}");
    }
}

fn hints_of(error: &(dyn Error + 'static)) -> Vec<String> {
    error
        .downcast_ref::<AuthProblem>()
        .map(AuthProblem::hints)
        .unwrap_or_default()
}
