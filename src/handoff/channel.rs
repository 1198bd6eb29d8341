//! The hand-over socket's framing: a message is a 4-byte length and a JSON
//! body, sent in one `sendmsg` with its descriptors (`SCM_RIGHTS`).
//!
//! The receiver reads the length alone first: on a stream socket the
//! descriptors arrive with the first byte of the `sendmsg` that carried
//! them, so reading exactly one message at a time keeps each message's
//! descriptors with it. Blocking, on a thread of its own at each end: the
//! exchange happens once per restart and must not hold a runtime worker.

use std::io::{IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// More descriptors than one message ever carries (the listeners).
const MAX_FDS: usize = 8;
/// A message larger than this is refused: no client's state comes near.
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("hand-over socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("hand-over socket: {0}")]
    Sys(#[from] nix::Error),
    #[error("hand-over message of {0} bytes refused")]
    TooLarge(usize),
    #[error("hand-over message unreadable: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the other process closed the hand-over socket")]
    Closed,
    #[error("unexpected hand-over message: {0}")]
    Unexpected(String),
}

/// Sends one message with `fds` attached.
pub fn send<T: serde::Serialize>(
    sock: &UnixStream,
    msg: &T,
    fds: &[RawFd],
) -> Result<(), ChannelError> {
    let body = serde_json::to_vec(msg)?;
    let len = (body.len() as u32).to_be_bytes();
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len);
    frame.extend_from_slice(&body);
    let mut sent = 0;
    while sent < frame.len() {
        let iov = [IoSlice::new(&frame[sent..])];
        // The descriptors go with the first chunk only.
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if sent == 0 && !fds.is_empty() {
            &rights
        } else {
            &[]
        };
        let n = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
        sent += n;
    }
    Ok(())
}

/// Receives one message and the descriptors that came with it.
pub fn recv<T: serde::de::DeserializeOwned>(
    sock: &mut UnixStream,
) -> Result<(T, Vec<OwnedFd>), ChannelError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < len.len() {
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut len[got..])];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        if msg.bytes == 0 {
            return Err(ChannelError::Closed);
        }
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel has just installed these descriptors
                // in this process for us; nothing else owns them.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        got += msg.bytes;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_BODY {
        return Err(ChannelError::TooLarge(len));
    }
    let mut body = vec![0; len];
    sock.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ChannelError::Closed,
        _ => ChannelError::Io(e),
    })?;
    Ok((serde_json::from_slice(&body)?, fds))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_keep_their_descriptors() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (x, _y) = UnixStream::pair().unwrap();
        let (p, _q) = UnixStream::pair().unwrap();
        send(&a, &"first", &[x.as_raw_fd(), p.as_raw_fd()]).unwrap();
        send(&a, &"second", &[]).unwrap();
        send(&a, &vec![7u8; 100_000], &[x.as_raw_fd()]).unwrap();
        let (m, fds) = recv::<String>(&mut b).unwrap();
        assert_eq!((m.as_str(), fds.len()), ("first", 2));
        let (m, fds) = recv::<String>(&mut b).unwrap();
        assert_eq!((m.as_str(), fds.len()), ("second", 0));
        let (m, fds) = recv::<Vec<u8>>(&mut b).unwrap();
        assert_eq!((m.len(), fds.len()), (100_000, 1));
        drop(a);
        assert!(matches!(recv::<String>(&mut b), Err(ChannelError::Closed)));
    }

    #[test]
    fn an_oversized_length_is_refused() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut a, &u32::MAX.to_be_bytes()).unwrap();
        assert!(matches!(
            recv::<String>(&mut b),
            Err(ChannelError::TooLarge(_))
        ));
    }
}
