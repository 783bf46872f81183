//! Captures what is logged at warn and error level (the library reports a
//! launch-aborting setting as `eventstream: <key>: <reason>`), so a test can
//! check which setting a failed launch named.
//!
//! Tests run concurrently and share one logger: read the lines logged since
//! a [`LogMark`] taken just before the attempt, and look for the line you
//! expect rather than counting lines.

use std::sync::{Mutex, PoisonError};

use log::{Level, LevelFilter, Log, Metadata, Record};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Warn
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} [{}] {}", record.level(), record.target(), record.args());
            // To watch a test's warnings as they happen.
            if std::env::var_os("EVENTSTREAM_TEST_LOG").is_some() {
                eprintln!("{line}");
            }
            LINES
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    }

    fn flush(&self) {}
}

/// Installs the capturing logger. `main` calls it before any Rocket starts:
/// Rocket then keeps its own logger out (tests run with `log_level = off`
/// anyway) and leaves the maximum level at `Warn`.
pub fn capture_logs() {
    static CAPTURE: Capture = Capture;
    log::set_logger(&CAPTURE).expect("no logger is installed before main's");
    log::set_max_level(LevelFilter::Warn);
}

/// A position in the captured lines.
#[derive(Debug, Clone, Copy)]
pub struct LogMark(usize);

impl LogMark {
    /// The position after every line captured so far.
    pub fn now() -> LogMark {
        LogMark(LINES.lock().unwrap_or_else(PoisonError::into_inner).len())
    }

    /// The lines captured since this mark (by any test).
    pub fn lines_since(self) -> Vec<String> {
        let lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
        lines.get(self.0..).unwrap_or_default().to_vec()
    }
}
