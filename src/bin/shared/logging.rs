//! How both binaries show the library's diagnostics: every `tracing` event becomes one line on
//! stderr holding its message alone, no time, level or target. The library words its lines as
//! git and the server always have (`warning: ...`, the access log's `POST /ws/git/... 200
//! 3ms`), so what a user or a log scraper sees does not change with the subscriber.
//!
//! Owns only the subscriber; what is worth a line, and at which level, is the library's call.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, reload, Registry};

/// Changes the level after start: git sends `option verbosity N` inside the helper session.
pub type LevelHandle = reload::Handle<LevelFilter, Registry>;

/// Install the process-wide subscriber at `level`. A second call (tests) keeps the first.
pub fn install(level: LevelFilter) -> LevelHandle {
    let (filter, handle) = reload::Layer::new(level);
    let lines = fmt::layer()
        // The message alone: fields an event carries for `serve --log-format json` (the
        // access log's request id, route, status...) are in its message already.
        .fmt_fields(fmt::format::debug_fn(|w, field, value| {
            if field.name() == "message" {
                write!(w, "{value:?}")
            } else {
                Ok(())
            }
        }))
        .with_writer(std::io::stderr)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init();
    handle
}
