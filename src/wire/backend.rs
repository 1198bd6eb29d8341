//! Messages a server sends: built when pgwarden answers a client itself,
//! read when pgwarden logs in to a server.

use bytes::{BufMut, BytesMut};

use super::{put_cstr, put_message, take_cstr, take_i32};

pub const AUTHENTICATION: u8 = b'R';
pub const PARAMETER_STATUS: u8 = b'S';
pub const BACKEND_KEY_DATA: u8 = b'K';
pub const READY_FOR_QUERY: u8 = b'Z';
pub const ERROR_RESPONSE: u8 = b'E';
pub const NOTICE_RESPONSE: u8 = b'N';
pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
pub const DATA_ROW: u8 = b'D';

/// Transaction status carried by ReadyForQuery.
pub const TX_IDLE: u8 = b'I';
pub const TX_IN_BLOCK: u8 = b'T';
pub const TX_FAILED: u8 = b'E';

/// Authentication request codes (`AuthenticationXxx` messages).
pub mod auth_code {
    pub const OK: i32 = 0;
    pub const CLEARTEXT: i32 = 3;
    pub const MD5: i32 = 5;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

pub fn authentication_ok(buf: &mut BytesMut) {
    put_message(buf, AUTHENTICATION, |b| b.put_i32(auth_code::OK));
}

pub fn authentication_cleartext(buf: &mut BytesMut) {
    put_message(buf, AUTHENTICATION, |b| b.put_i32(auth_code::CLEARTEXT));
}

pub fn authentication_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put_message(buf, AUTHENTICATION, |b| {
        b.put_i32(auth_code::MD5);
        b.put_slice(&salt);
    });
}

pub fn authentication_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    put_message(buf, AUTHENTICATION, |b| {
        b.put_i32(auth_code::SASL);
        for m in mechanisms {
            put_cstr(b, m.as_bytes());
        }
        b.put_u8(0);
    });
}

pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put_message(buf, AUTHENTICATION, |b| {
        b.put_i32(auth_code::SASL_CONTINUE);
        b.put_slice(data);
    });
}

pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put_message(buf, AUTHENTICATION, |b| {
        b.put_i32(auth_code::SASL_FINAL);
        b.put_slice(data);
    });
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put_message(buf, PARAMETER_STATUS, |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, value.as_bytes());
    });
}

pub fn backend_key_data(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
    put_message(buf, BACKEND_KEY_DATA, |b| {
        b.put_i32(process_id);
        b.put_i32(secret_key);
    });
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    put_message(buf, READY_FOR_QUERY, |b| b.put_u8(status));
}

/// CommandComplete with its tag (`SET`, `SELECT 1`...).
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    put_message(buf, b'C', |b| crate::wire::put_cstr(b, tag.as_bytes()));
}

/// NegotiateProtocolVersion: the newest minor version we speak and the
/// `_pq_.` options we did not recognise.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: u16, unknown: &[&str]) {
    put_message(buf, NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_i32(i32::from(minor));
        b.put_i32(unknown.len() as i32);
        for opt in unknown {
            put_cstr(b, opt.as_bytes());
        }
    });
}

/// Severity of an error pgwarden raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the connection goes on.
    Error,
    /// The connection is closed after this message.
    Fatal,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// Builds an ErrorResponse with severity, SQLSTATE, message and optional detail.
pub fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    let severity = severity.as_str();
    put_fields(
        buf,
        ERROR_RESPONSE,
        [(b'S', severity), (b'V', severity)],
        code,
        message,
        [(b'D', detail)],
    );
}

/// Builds a NoticeResponse of pgwarden's own: severity NOTICE, SQLSTATE
/// 00000 (PostgreSQL's code for a plain notice), with an optional hint.
pub fn notice_response(buf: &mut BytesMut, message: &str, hint: Option<&str>) {
    let severity = "NOTICE";
    put_fields(
        buf,
        NOTICE_RESPONSE,
        [(b'S', severity), (b'V', severity)],
        "00000",
        message,
        [(b'H', hint)],
    );
}

fn put_fields(
    buf: &mut BytesMut,
    tag: u8,
    severity: [(u8, &str); 2],
    code: &str,
    message: &str,
    extra: [(u8, Option<&str>); 1],
) {
    put_message(buf, tag, |b| {
        for (kind, value) in severity
            .into_iter()
            .chain([(b'C', code), (b'M', message)])
            .chain(extra.into_iter().filter_map(|(k, v)| Some((k, v?))))
        {
            b.put_u8(kind);
            put_cstr(b, value.as_bytes());
        }
        b.put_u8(0);
    });
}

/// The fields of an ErrorResponse or NoticeResponse that pgwarden looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

/// Reads an ErrorResponse/NoticeResponse body; unknown fields are skipped.
pub fn parse_error_fields(mut body: &[u8]) -> Option<ErrorFields> {
    let mut fields = ErrorFields::default();
    while let Some((&kind, rest)) = body.split_first() {
        if kind == 0 {
            return Some(fields);
        }
        let (value, rest) = take_cstr(rest)?;
        let value = String::from_utf8_lossy(value).into_owned();
        match kind {
            b'V' => fields.severity = value,
            b'S' if fields.severity.is_empty() => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
        body = rest;
    }
    None
}

/// True for the severities after which PostgreSQL closes the connection.
pub fn is_fatal(severity: &str) -> bool {
    severity == "FATAL" || severity == "PANIC"
}

/// True when an ErrorResponse body is FATAL or PANIC (or unreadable).
pub fn ends_session(body: &[u8]) -> bool {
    parse_error_fields(body).is_none_or(|f| is_fatal(&f.severity))
}

/// Reads a ParameterStatus body into (name, value).
/// The first column of a DataRow body as text; `None` for NULL, no
/// column, or a malformed row.
pub fn first_column(body: &[u8]) -> Option<String> {
    let count = i16::from_be_bytes([*body.first()?, *body.get(1)?]);
    if count < 1 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let value = body.get(6..6 + len)?;
    Some(String::from_utf8_lossy(value).into_owned())
}

pub fn parse_parameter_status(body: &[u8]) -> Option<(String, String)> {
    let (name, rest) = take_cstr(body)?;
    let (value, _) = take_cstr(rest)?;
    Some((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// Reads BackendKeyData into (process id, secret key).
pub fn parse_backend_key_data(body: &[u8]) -> Option<(i32, i32)> {
    let (pid, rest) = take_i32(body)?;
    let (key, _) = take_i32(rest)?;
    Some((pid, key))
}

/// An authentication request from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    Ok,
    Cleartext,
    Md5 { salt: [u8; 4] },
    Sasl { mechanisms: Vec<&'a str> },
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    Other(i32),
}

/// Reads the body of an Authentication message.
pub fn parse_auth_request(body: &[u8]) -> Option<AuthRequest<'_>> {
    let (code, rest) = take_i32(body)?;
    Some(match code {
        auth_code::OK => AuthRequest::Ok,
        auth_code::CLEARTEXT => AuthRequest::Cleartext,
        auth_code::MD5 => AuthRequest::Md5 {
            salt: rest.get(..4)?.try_into().ok()?,
        },
        auth_code::SASL => {
            let mut mechanisms = Vec::new();
            let mut rest = rest;
            while let Some((m, r)) = take_cstr(rest) {
                if m.is_empty() {
                    break;
                }
                mechanisms.push(std::str::from_utf8(m).ok()?);
                rest = r;
            }
            AuthRequest::Sasl { mechanisms }
        }
        auth_code::SASL_CONTINUE => AuthRequest::SaslContinue(rest),
        auth_code::SASL_FINAL => AuthRequest::SaslFinal(rest),
        other => AuthRequest::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::decode_whole;

    #[test]
    fn error_round_trip() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            "28P01",
            "bad password",
            Some("x"),
        );
        let (tag, body, _) = decode_whole(&buf, 1000)
            .ok()
            .flatten()
            .unwrap_or((0, b"", 0));
        assert_eq!(tag, ERROR_RESPONSE);
        let f = parse_error_fields(body).unwrap_or_default();
        assert_eq!(
            (f.severity.as_str(), f.code.as_str(), f.message.as_str()),
            ("FATAL", "28P01", "bad password")
        );
    }

    fn body_of(buf: &[u8]) -> &[u8] {
        decode_whole(buf, 1000)
            .ok()
            .flatten()
            .map_or(&[][..], |(_, body, _)| body)
    }

    #[test]
    fn auth_requests() {
        let mut buf = BytesMut::new();
        authentication_sasl(&mut buf, &["SCRAM-SHA-256"]);
        let body = body_of(&buf);
        assert_eq!(
            parse_auth_request(body),
            Some(AuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256"]
            })
        );
        buf.clear();
        authentication_md5(&mut buf, [1, 2, 3, 4]);
        let body = body_of(&buf);
        assert_eq!(
            parse_auth_request(body),
            Some(AuthRequest::Md5 { salt: [1, 2, 3, 4] })
        );
    }
}
