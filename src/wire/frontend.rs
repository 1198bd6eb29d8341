//! Messages a client sends: built when pgwarden logs in to a server or
//! resets one, read when a client authenticates to pgwarden.

use bytes::{BufMut, BytesMut};

use super::startup::{CANCEL_REQUEST_CODE, PROTOCOL_MAJOR};
use super::{put_cstr, put_message, take_cstr, take_i32};

pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const BIND: u8 = b'B';
pub const EXECUTE: u8 = b'E';
pub const DESCRIBE: u8 = b'D';
pub const CLOSE: u8 = b'C';
pub const SYNC: u8 = b'S';
pub const FLUSH: u8 = b'H';
pub const FUNCTION_CALL: u8 = b'F';
pub const TERMINATE: u8 = b'X';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';
/// PasswordMessage, SASLInitialResponse and SASLResponse share this tag.
pub const PASSWORD: u8 = b'p';

/// True for the message types PostgreSQL accepts from a logged-in client;
/// it answers any other with FATAL 08P01, and so does pgwarden (without
/// passing it to a server, which would close that server).
pub fn is_session_message(tag: u8) -> bool {
    matches!(
        tag,
        QUERY
            | PARSE
            | BIND
            | EXECUTE
            | DESCRIBE
            | CLOSE
            | SYNC
            | FLUSH
            | FUNCTION_CALL
            | TERMINATE
            | COPY_DATA
            | COPY_DONE
            | COPY_FAIL
    )
}

/// Builds a StartupMessage for protocol 3.0.
pub fn startup_message(buf: &mut BytesMut, params: &[(&str, &str)]) {
    let len_at = buf.len();
    buf.put_u32(0);
    buf.put_u32(u32::from(PROTOCOL_MAJOR) << 16);
    for (k, v) in params {
        put_cstr(buf, k.as_bytes());
        put_cstr(buf, v.as_bytes());
    }
    buf.put_u8(0);
    let len = (buf.len() - len_at) as u32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn cancel_request(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
    buf.put_u32(16);
    buf.put_u32(CANCEL_REQUEST_CODE);
    buf.put_i32(process_id);
    buf.put_i32(secret_key);
}

pub fn query(buf: &mut BytesMut, sql: &str) {
    put_message(buf, QUERY, |b| put_cstr(b, sql.as_bytes()));
}

pub fn terminate(buf: &mut BytesMut) {
    put_message(buf, TERMINATE, |_| {});
}

/// PasswordMessage carrying a cleartext or md5-hashed password.
pub fn password_message(buf: &mut BytesMut, password: &[u8]) {
    put_message(buf, PASSWORD, |b| put_cstr(b, password));
}

pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    put_message(buf, PASSWORD, |b| {
        put_cstr(b, mechanism.as_bytes());
        b.put_i32(data.len() as i32);
        b.put_slice(data);
    });
}

pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    put_message(buf, PASSWORD, |b| b.put_slice(data));
}

/// Reads a PasswordMessage body: the password without its NUL.
pub fn parse_password(body: &[u8]) -> Option<&[u8]> {
    take_cstr(body).map(|(pw, _)| pw)
}

/// Reads a SASLInitialResponse body into (mechanism, initial data).
pub fn parse_sasl_initial(body: &[u8]) -> Option<(&str, &[u8])> {
    let (mech, rest) = take_cstr(body)?;
    let (len, rest) = take_i32(rest)?;
    let data = if len < 0 {
        &[][..]
    } else {
        rest.get(..len as usize)?
    };
    Some((std::str::from_utf8(mech).ok()?, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::decode_whole;
    use crate::wire::startup::{decode_startup, StartupPacket};

    #[test]
    fn startup_round_trip() {
        let mut buf = BytesMut::new();
        startup_message(&mut buf, &[("user", "u"), ("database", "d")]);
        let parsed = decode_startup(&buf).ok().flatten().map(|(p, _)| p);
        assert_eq!(
            parsed,
            Some(StartupPacket::Startup {
                minor: 0,
                params: vec![("user".into(), "u".into()), ("database".into(), "d".into())]
            })
        );
    }

    #[test]
    fn sasl_initial_round_trip() {
        let mut buf = BytesMut::new();
        sasl_initial_response(&mut buf, "SCRAM-SHA-256", b"n,,n=,r=abc");
        let (tag, body, _) = decode_whole(&buf, 1000)
            .ok()
            .flatten()
            .unwrap_or((0, b"", 0));
        assert_eq!(tag, PASSWORD);
        assert_eq!(
            parse_sasl_initial(body),
            Some(("SCRAM-SHA-256", &b"n,,n=,r=abc"[..]))
        );
    }
}
