//! Progress on stderr, git-style, through indicatif.
//!
//! Shown only when git asked for it (`option progress true`, which git sends for a terminal or
//! `--progress`, never with `-q`) and stderr is a terminal: a bar redrawn into a log file is
//! noise. Lower layers receive a [`Bar`] and never decide visibility themselves; a hidden bar
//! costs nothing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// `requested`: git sent `option progress true` (and verbosity is not 0).
    pub fn new(requested: bool) -> Self {
        Progress {
            enabled: requested && std::io::stderr().is_terminal(),
        }
    }

    /// A progress that never draws.
    pub fn hidden() -> Self {
        Progress { enabled: false }
    }

    /// A byte counter: `Receiving packs:  45% (12.30 MiB/27.00 MiB) | 10.20 MiB/s`.
    pub fn bytes(&self, label: &str, total: u64) -> Bar {
        if !self.enabled {
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
        let bar = Progress::new(false).bytes("Receiving packs", 10);
        assert!(bar.0.is_hidden());
        bar.inc(5);
        bar.finish();
        assert!(Progress::hidden().bytes("x", 1).0.is_hidden());
    }
}
