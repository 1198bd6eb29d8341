//! `pidfile`: the running process's id in a file, for init scripts and
//! monitoring that find a pooler by it (PgBouncer's setting). A file naming
//! a process that still runs stops a second pgwarden from starting with
//! the same config; one left by a process that died is replaced.

use std::io;
use std::path::{Path, PathBuf};

/// The written file, removed when dropped (at a clean exit).
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id to `path`.
    ///
    /// # Errors
    /// The file names another running process, or cannot be written.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        let named =
            |e: io::Error| io::Error::new(e.kind(), format!("pidfile {}: {e}", path.display()));
        let ours = std::process::id();
        if let Some(pid) = read_pid(path) {
            if pid != ours && alive(pid) {
                return Err(named(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("process {pid} is running (another pgwarden?)"),
                )));
            }
        }
        // Written beside and renamed, so that a reader never sees half.
        let tmp = path.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{ours}\n")).map_err(named)?;
        std::fs::rename(&tmp, path).map_err(named)?;
        Ok(PidFile {
            path: path.to_owned(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: a successor may have written its id meanwhile.
        if read_pid(&self.path) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether process `pid` exists (signal 0 checks without sending).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn written_refused_while_its_process_runs_replaced_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgwarden.pid");
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(&path, format!("{}\n", other.id())).unwrap();
        let e = PidFile::create(&path).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains(&other.id().to_string()), "{e}");
        other.kill().unwrap();
        other.wait().unwrap();
        // Its process is gone: a stale file.
        let ours = PidFile::create(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id()));
        drop(ours);
        assert!(!path.exists(), "removed at exit");
    }

    #[test]
    fn a_successors_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgwarden.pid");
        let ours = PidFile::create(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(ours);
        assert_eq!(read_pid(&path), Some(1));
    }
}
