//! Progress counters, git-style, through indicatif.
//!
//! The library never decides about terminals: a binary builds a [`Progress`] saying whether
//! bars can be drawn on stderr (it is a terminal) and hands it down; layers below narrow it
//! with what the user or git asked for ([`Progress::requested`]: `option progress`, `-q`,
//! verbosity 0) and never widen it. A bar redrawn into a log file is noise, so a bar is drawn
//! only when both agree; a hidden bar costs nothing. Whether progress was *asked for* is kept
//! apart from whether it can be drawn: `git pack-objects --progress` prints its own counters
//! whenever git asked, terminal or not, as git's own push does.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The user (or git on the user's behalf) wants progress.
    requested: bool,
    /// Bars can be drawn: stderr is a terminal. Decided by the binary.
    drawable: bool,
}

impl Progress {
    /// What a binary found out about stderr: `drawable` when it is a terminal. Progress
    /// counts as asked for until [`Progress::requested`] says otherwise.
    pub fn terminal(drawable: bool) -> Self {
        Progress {
            requested: true,
            drawable,
        }
    }

    /// A progress that never draws and was never asked for.
    pub fn hidden() -> Self {
        Progress {
            requested: false,
            drawable: false,
        }
    }

    /// Narrowed by what was asked for: `false` hides it, `true` keeps it as it is.
    pub fn requested(self, asked: bool) -> Self {
        Progress {
            requested: self.requested && asked,
            drawable: self.drawable && asked,
        }
    }

    /// Whether progress was asked for (for git subprocesses, which print their own).
    pub fn is_requested(&self) -> bool {
        self.requested
    }

    /// A byte counter: `Receiving packs:  45% (12.30 MiB/27.00 MiB) | 10.20 MiB/s`.
    pub fn bytes(&self, label: &str, total: u64) -> Bar {
        if !(self.requested && self.drawable) {
            return Bar(ProgressBar::hidden());
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg}: {percent:>3}% ({bytes}/{total_bytes}) | {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(label.to_owned());
        Bar(bar)
    }
}

/// One progress line; clones share it (parallel downloads add to one counter).
#[derive(Debug, Clone)]
pub struct Bar(ProgressBar);

impl Bar {
    pub fn hidden() -> Bar {
        Bar(ProgressBar::hidden())
    }

    pub fn inc(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    /// Bytes counted so far (also on a hidden bar: the LFS agent reports them to git-lfs).
    pub fn position(&self) -> u64 {
        self.0.position()
    }

    /// Grow the total: fetch learns pack by pack what it will download.
    pub fn add_total(&self, bytes: u64) {
        self.0.inc_length(bytes);
    }

    /// Leave the final line on screen with git's ", done." suffix.
    pub fn finish(&self) {
        if self.0.is_hidden() {
            return;
        }
        if let Ok(done) =
            ProgressStyle::with_template("{msg}: 100% ({total_bytes}) | {bytes_per_sec}, done.")
        {
            self.0.set_style(done);
        }
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_requested_means_hidden() {
        let bar = Progress::terminal(true)
            .requested(false)
            .bytes("Receiving packs", 10);
        assert!(bar.0.is_hidden());
        bar.inc(5);
        bar.finish();
        assert!(Progress::hidden().bytes("x", 1).0.is_hidden());
    }

    #[test]
    fn no_terminal_means_hidden_but_still_requested() {
        let p = Progress::terminal(false).requested(true);
        assert!(p.is_requested(), "git pack-objects still gets --progress");
        assert!(p.bytes("Uploading pack", 10).0.is_hidden());
    }

    #[test]
    fn narrowing_never_widens() {
        let p = Progress::hidden().requested(true);
        assert_eq!(p, Progress::hidden());
        let p = Progress::terminal(true).requested(false).requested(true);
        assert!(!p.is_requested());
    }
}
