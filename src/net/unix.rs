//! The Unix-domain listener (`unix_socket_dir`): `<dir>/.s.PGSQL.<port>`,
//! the name PostgreSQL and PgBouncer give it, so that `psql -h <dir>` and
//! libpq's default socket directory find pgwarden. A sidecar's cheapest
//! transport: no TCP stack, no port to allocate, file permissions as the
//! access check, and `local` lines of the hba file apply to it.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// The socket's path in `dir` for TCP port `port`.
pub fn socket_path(dir: &str, port: u16) -> PathBuf {
    Path::new(dir).join(format!(".s.PGSQL.{port}"))
}

/// A bound socket file, removed when the listener goes away (as
/// PostgreSQL and PgBouncer remove theirs at exit).
pub struct UnixSocket {
    pub listener: UnixListener,
    path: PathBuf,
}

impl UnixSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` with file mode `mode` and, when given, group `group`.
///
/// A file left at `path` by a process that died is replaced; one that a
/// live process still accepts on is an error, as two poolers answering on
/// one socket would split its clients between them.
///
/// # Errors
/// The socket cannot be bound, another process listens on it, or the mode
/// or group cannot be set.
pub fn bind(path: &Path, mode: u32, group: &str) -> io::Result<UnixSocket> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(named(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process accepts connections on this socket",
            )));
        }
        std::fs::remove_file(path).map_err(named)?;
    }
    let listener = UnixListener::bind(path).map_err(named)?;
    // From here on the file is ours: dropped on any error below.
    let socket = UnixSocket {
        listener,
        path: path.to_owned(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(named)?;
    if !group.is_empty() {
        set_group(path, group).map_err(named)?;
    }
    Ok(socket)
}

/// Gives the socket file to group `group` (a name or a numeric id).
fn set_group(path: &Path, group: &str) -> io::Result<()> {
    let gid = match group.parse::<u32>() {
        Ok(id) => id,
        Err(_) => group_id(group)?,
    };
    std::os::unix::fs::chown(path, None, Some(gid))
}

/// The id of group `name`, from the system's group database.
fn group_id(name: &str) -> io::Result<u32> {
    let unknown = || io::Error::new(io::ErrorKind::NotFound, format!("no group named {name:?}"));
    let c_name = std::ffi::CString::new(name).map_err(|_| unknown())?;
    let mut group = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut found: *mut libc::group = std::ptr::null_mut();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: every pointer is valid for the call: the name is a C string,
    // `group` and `found` are ours, and `buf` is as long as we say; getgrnam_r
    // is the thread-safe lookup and writes only into them.
    let rc = unsafe {
        libc::getgrnam_r(
            c_name.as_ptr(),
            group.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if found.is_null() {
        return Err(unknown());
    }
    // SAFETY: getgrnam_r returned a result, so `group` is initialised.
    Ok(unsafe { group.assume_init() }.gr_gid)
}

/// Parses `unix_socket_mode` as PgBouncer writes it: octal digits
/// (`0777`, `777`, `0o700`).
pub fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    let mode = u32::from_str_radix(digits, 8).ok()?;
    (mode <= 0o7777).then_some(mode)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_octal() {
        assert_eq!(parse_mode("0777"), Some(0o777));
        assert_eq!(parse_mode("700"), Some(0o700));
        assert_eq!(parse_mode("0o770"), Some(0o770));
        assert_eq!(parse_mode("0778"), None);
        assert_eq!(parse_mode("99999"), None);
        assert_eq!(parse_mode(""), None);
    }

    #[test]
    fn the_path_is_postgresqls() {
        assert_eq!(
            socket_path("/run/pg", 6432),
            PathBuf::from("/run/pg/.s.PGSQL.6432")
        );
    }

    #[tokio::test]
    async fn a_stale_file_is_replaced_a_live_socket_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path().to_str().unwrap(), 5999);
        std::fs::write(&path, b"left by a crash").unwrap();
        let first = bind(&path, 0o700, "").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        let e = bind(&path, 0o777, "").err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(path.exists(), "the live socket is left alone");
        drop(first);
        assert!(!path.exists(), "removed with its listener");
        assert!(bind(&path, 0o777, "no-such-group-pgwarden").is_err());
        assert!(!path.exists(), "a failed bind leaves no file");
    }
}
