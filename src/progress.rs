//! Progress lines on stderr, shown only when git asked for progress (`option progress true`,
//! which git sends for a terminal or `--progress`, never with `-q`).
//!
//! One line per transferred pack, in git's "..., done." style. Lower layers receive a
//! [`Progress`] and never decide visibility themselves. (Live byte counters through indicatif
//! are planned with the performance work.)

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress { enabled }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `Receiving pack-1234567: 1.21 MiB | 10.3 MiB/s, done.`
    pub fn pack_done(&self, verb: &str, pack: &str, bytes: u64, started: Instant) {
        if !self.enabled {
            return;
        }
        let short = pack.get(..12).unwrap_or(pack);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        eprintln!(
            "{verb} {short}: {} | {}/s, done.",
            human(bytes),
            human((bytes as f64 / secs) as u64)
        );
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_sizes() {
        assert_eq!(human(12), "12 bytes");
        assert_eq!(human(1536), "1.50 KiB");
        assert_eq!(human(5 * 1024 * 1024), "5.00 MiB");
    }
}
