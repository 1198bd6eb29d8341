//! The untagged packets a client may send first: StartupMessage,
//! SSLRequest, GSSENCRequest and CancelRequest.
//!
//! They carry no tag byte, only a length and a 32-bit code. The length is
//! capped at PostgreSQL's own limit (`MAX_STARTUP_PACKET_LENGTH` in
//! `src/include/libpq/pqcomm.h`) before the body is looked at.

use thiserror::Error;

use super::take_cstr;

/// PostgreSQL rejects longer startup packets; so do we.
pub const MAX_STARTUP_LEN: usize = 10_000;
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Protocol 3.0, the only major version PostgreSQL speaks.
pub const PROTOCOL_MAJOR: u16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        process_id: i32,
        secret_key: i32,
    },
    Startup {
        /// Minor protocol version the client asked for; anything above 0
        /// is answered with NegotiateProtocolVersion.
        minor: u16,
        params: Vec<(String, String)>,
    },
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum StartupError {
    #[error("invalid length of startup packet: {0}")]
    BadLength(u32),
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("invalid startup packet layout")]
    Malformed,
}

/// Decodes one startup-phase packet from the front of `buf`.
///
/// Returns `Ok(None)` until the whole packet is buffered, else the packet and
/// the number of bytes it used.
///
/// # Errors
/// A length outside `8..=MAX_STARTUP_LEN`, a protocol other than 3.x, or a
/// parameter list that is not NUL-terminated UTF-8 pairs.
pub fn decode_startup(buf: &[u8]) -> Result<Option<(StartupPacket, usize)>, StartupError> {
    let Some(len_bytes) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    if !(8..=MAX_STARTUP_LEN as u32).contains(&len) {
        return Err(StartupError::BadLength(len));
    }
    let len = len as usize;
    let Some(packet) = buf.get(..len) else {
        return Ok(None);
    };
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let body = &packet[8..];
    let decoded = match code {
        SSL_REQUEST_CODE if body.is_empty() => StartupPacket::SslRequest,
        GSSENC_REQUEST_CODE if body.is_empty() => StartupPacket::GssEncRequest,
        CANCEL_REQUEST_CODE if body.len() == 8 => StartupPacket::Cancel {
            process_id: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
            secret_key: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        },
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {
            return Err(StartupError::Malformed)
        }
        _ => {
            let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
            if major != PROTOCOL_MAJOR {
                return Err(StartupError::UnsupportedProtocol { major, minor });
            }
            StartupPacket::Startup {
                minor,
                params: decode_params(body)?,
            }
        }
    };
    Ok(Some((decoded, len)))
}

fn decode_params(mut body: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params = Vec::new();
    loop {
        let (key, rest) = take_cstr(body).ok_or(StartupError::Malformed)?;
        if key.is_empty() {
            // The list ends with an empty name; nothing may follow it.
            return if rest.is_empty() {
                Ok(params)
            } else {
                Err(StartupError::Malformed)
            };
        }
        let (value, rest) = take_cstr(rest).ok_or(StartupError::Malformed)?;
        let key = std::str::from_utf8(key).map_err(|_| StartupError::Malformed)?;
        let value = std::str::from_utf8(value).map_err(|_| StartupError::Malformed)?;
        params.push((key.to_owned(), value.to_owned()));
        body = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn startup_with_params() {
        let p = packet(196_608, b"user\0alice\0database\0app\0\0");
        let (decoded, used) = decode_startup(&p)
            .ok()
            .flatten()
            .unwrap_or((StartupPacket::SslRequest, 0));
        assert_eq!(used, p.len());
        assert_eq!(
            decoded,
            StartupPacket::Startup {
                minor: 0,
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "app".into())
                ]
            }
        );
    }

    #[test]
    fn partial_packet_waits() {
        let p = packet(SSL_REQUEST_CODE, b"");
        assert_eq!(decode_startup(&p[..6]), Ok(None));
        assert_eq!(decode_startup(&p), Ok(Some((StartupPacket::SslRequest, 8))));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            decode_startup(&[0x7f, 0xff, 0xff, 0xff, 0, 0]),
            Err(StartupError::BadLength(0x7fff_ffff))
        );
        assert_eq!(
            decode_startup(b"GET / HTTP/1.1\r\n"),
            Err(StartupError::BadLength(0x4745_5420))
        );
        let p = packet(196_608, b"user\0alice");
        assert_eq!(decode_startup(&p), Err(StartupError::Malformed));
        let p = packet(2 << 16, b"\0");
        assert!(matches!(
            decode_startup(&p),
            Err(StartupError::UnsupportedProtocol { major: 2, .. })
        ));
    }

    #[test]
    fn cancel_request() {
        let mut body = 42i32.to_be_bytes().to_vec();
        body.extend_from_slice(&(-7i32).to_be_bytes());
        let p = packet(CANCEL_REQUEST_CODE, &body);
        assert_eq!(
            decode_startup(&p),
            Ok(Some((
                StartupPacket::Cancel {
                    process_id: 42,
                    secret_key: -7
                },
                16
            )))
        );
    }
}
