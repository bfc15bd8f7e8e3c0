//! Logging with rdma-core's knobs: `VERBS_LOG_LEVEL` (0 none, 1 error, 2 warn,
//! 3 info, 4 debug; unset means none) and `VERBS_LOG_FILE` (appended to).
//! Unlike libibverbs' release builds, which drop messages when no file is
//! named, a level without a file writes to stderr: asking for messages should
//! show them. Every line starts with `rxe_rs: ` so it can be told apart from
//! libibverbs' own and other providers' lines.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

struct VerbsLogger {
    level: LevelFilter,
    sink: Mutex<Option<File>>,
}

impl Log for VerbsLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("rxe_rs")
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("rxe_rs: {}\n", record.args());
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        // A failed log write must never fail the verb that logged it.
        let _ = match sink.as_mut() {
            Some(file) => file.write_all(line.as_bytes()),
            None => std::io::stderr().write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

/// Maps `VERBS_LOG_LEVEL`'s numbers onto `log`'s levels.
pub fn level_from_env(value: Option<&str>) -> LevelFilter {
    let n = value.and_then(parse_c_integer).unwrap_or(0);
    match n {
        i64::MIN..=0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    }
}

/// Parses like C's `strtol(s, NULL, 0)`: decimal, 0x hex or leading-0 octal.
fn parse_c_integer(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse().ok()?
    };
    Some(if neg { -value } else { value })
}

static LOGGER: OnceLock<VerbsLogger> = OnceLock::new();

/// Installs the logger once per process (the first device match or context
/// open calls it).
pub fn init() {
    let logger = LOGGER.get_or_init(|| {
        let level = level_from_env(std::env::var("VERBS_LOG_LEVEL").ok().as_deref());
        let file = match (level, std::env::var_os("VERBS_LOG_FILE")) {
            (LevelFilter::Off, _) | (_, None) => None,
            (_, Some(path)) => OpenOptions::new().create(true).append(true).open(path).ok(),
        };
        VerbsLogger { level, sink: Mutex::new(file) }
    });
    // Our copy of the `log` crate is private to this library, so this only
    // fails when already done.
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.level);
    }
}

/// True when messages of `level` would be written: lets callers skip costly
/// diagnosis nobody will read.
pub fn enabled(level: Level) -> bool {
    level <= log::max_level()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_rdma_core_numbers() {
        assert_eq!(level_from_env(None), LevelFilter::Off);
        assert_eq!(level_from_env(Some("0")), LevelFilter::Off);
        assert_eq!(level_from_env(Some("1")), LevelFilter::Error);
        assert_eq!(level_from_env(Some("2")), LevelFilter::Warn);
        assert_eq!(level_from_env(Some("3")), LevelFilter::Info);
        assert_eq!(level_from_env(Some("4")), LevelFilter::Debug);
        assert_eq!(level_from_env(Some("0x3")), LevelFilter::Info);
        assert_eq!(level_from_env(Some("junk")), LevelFilter::Off);
    }
}
