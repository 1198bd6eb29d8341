//! PgBouncer's `logfile`: lines appended to a file kept open, reopened on
//! every reload so that a rotated file is let go of.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

static FILE: Mutex<Option<File>> = Mutex::new(None);

/// Opens `path` for appending (closing the one open); `""` closes it.
/// Returns whether a file is open.
pub(super) fn open(path: &str) -> std::io::Result<bool> {
    let next = if path.is_empty() {
        None
    } else {
        Some(OpenOptions::new().create(true).append(true).open(path)?)
    };
    let on = next.is_some();
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = next;
    Ok(on)
}

/// Writes each formatted line to the open file, if any.
pub(super) struct Writer;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Writer {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

pub(super) struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            // A full disk must not stop the proxy: the line is lost.
            let _ = f.write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
