//! Where acknowledged positions are kept between runs of the consumer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::position::Positions;

/// Stores the acknowledged positions. `load` is called once when a stream
/// starts; `save` after each acknowledgement, with every channel's
/// acknowledged position.
pub trait CursorStore: Send + Sync + 'static {
    /// The positions saved last; empty when there are none.
    fn load(&self) -> std::io::Result<Positions>;
    /// Replaces the saved positions; returns once they are durable.
    fn save(&self, positions: &Positions) -> std::io::Result<()>;
}

/// Positions kept in memory: a stream resumes across reconnects, but a new
/// process starts afresh.
#[derive(Debug, Default)]
pub struct MemoryCursor(Mutex<Positions>);

impl CursorStore for MemoryCursor {
    fn load(&self) -> std::io::Result<Positions> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn save(&self, positions: &Positions) -> std::io::Result<()> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = positions.clone();
        Ok(())
    }
}

/// Positions in a file, as one id vector: written to a temporary file
/// beside it, flushed to disk, then renamed over it (and the directory
/// flushed), so a crash leaves the old positions or the new, never a torn
/// file.
#[derive(Debug)]
pub struct FileCursor {
    path: PathBuf,
}

impl FileCursor {
    /// A cursor in `path` (created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> FileCursor {
        FileCursor { path: path.into() }
    }

    fn directory(&self) -> &Path {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    }
}

impl CursorStore for FileCursor {
    fn load(&self) -> std::io::Result<Positions> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim().is_empty() => Ok(Positions::new()),
            Ok(text) => Positions::parse(text.trim()).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} does not hold an id vector", self.path.display()),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Positions::new()),
            Err(error) => Err(error),
        }
    }

    fn save(&self, positions: &Positions) -> std::io::Result<()> {
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(positions.to_string().as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        std::fs::File::open(self.directory())?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_cursor_keeps_what_was_saved() {
        let dir = tempfile::tempdir().expect("a directory");
        let cursor = FileCursor::new(dir.path().join("cursor"));
        assert_eq!(cursor.load().expect("no file yet"), Positions::new());
        let mut positions = Positions::new();
        positions.set("a b", 3);
        positions.set("c", 9);
        cursor.save(&positions).expect("saved");
        assert_eq!(
            FileCursor::new(dir.path().join("cursor"))
                .load()
                .expect("loads"),
            positions
        );
        std::fs::write(dir.path().join("cursor"), "garbage").expect("write");
        assert!(
            cursor.load().is_err(),
            "a damaged cursor is an error, not a fresh start"
        );
    }
}
