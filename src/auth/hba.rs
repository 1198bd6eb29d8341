//! `auth_hba_file`: PostgreSQL's (and PgBouncer's) `pg_hba.conf` format,
//! for the lines that make sense for a pooler, used when `auth_type =
//! "hba"`. The first line that matches a connection decides its method; a
//! connection no line matches is refused.
//!
//! Owns: parsing the file (every line it cannot honour is an error, never
//! silently skipped: a skipped `reject` line would let clients in) and
//! matching a connection against it. Must not: do I/O or authenticate.

use std::net::IpAddr;

/// How a matching line authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HbaMethod {
    Trust,
    Reject,
    Md5,
    ScramSha256,
    Password,
    /// The client certificate's CN must be the user name.
    Cert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnType {
    /// A Unix socket.
    Local,
    /// TCP, with or without TLS.
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Names {
    All,
    /// `sameuser` (databases only): the database named as the user.
    SameUser,
    List(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Address {
    All,
    Net { addr: IpAddr, prefix: u8 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    conn: ConnType,
    databases: Names,
    users: Names,
    address: Option<Address>,
    method: HbaMethod,
}

/// A parsed hba file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hba {
    rules: Vec<Rule>,
}

/// One connection, as the hba file sees it.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    pub database: &'a str,
    pub user: &'a str,
    /// `None` for a Unix socket.
    pub addr: Option<IpAddr>,
    pub tls: bool,
}

impl Hba {
    /// Parses the file's text.
    ///
    /// # Errors
    /// The first line that is malformed or uses what pgwarden does not
    /// support, with its number.
    pub fn parse(text: &str) -> Result<Hba, String> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let tokens = tokens(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            if tokens.is_empty() {
                continue;
            }
            let rule = rule(&tokens).map_err(|e| format!("line {}: {e}", n + 1))?;
            rules.push(rule);
        }
        Ok(Hba { rules })
    }

    /// True if some line asks for a client certificate.
    pub fn has_cert_lines(&self) -> bool {
        self.rules.iter().any(|r| r.method == HbaMethod::Cert)
    }

    /// The method of the first line that matches, or `None` (refused).
    pub fn method(&self, c: &Connection<'_>) -> Option<HbaMethod> {
        self.rules.iter().find(|r| r.matches(c)).map(|r| r.method)
    }
}

impl Rule {
    fn matches(&self, c: &Connection<'_>) -> bool {
        let conn = match (self.conn, c.addr) {
            (ConnType::Local, None) => true,
            (ConnType::Host, Some(_)) => true,
            (ConnType::HostSsl, Some(_)) => c.tls,
            (ConnType::HostNoSsl, Some(_)) => !c.tls,
            _ => false,
        };
        let database = match &self.databases {
            Names::All => true,
            Names::SameUser => c.database == c.user,
            Names::List(l) => l.iter().any(|d| d == c.database),
        };
        let user = match &self.users {
            Names::All | Names::SameUser => true,
            Names::List(l) => l.iter().any(|u| u == c.user),
        };
        let address = match (&self.address, c.addr) {
            (None, _) | (Some(Address::All), _) => true,
            (Some(Address::Net { addr, prefix }), Some(client)) => in_net(client, *addr, *prefix),
            (Some(_), None) => false,
        };
        conn && database && user && address
    }
}

/// A token and whether it was quoted (a quoted `all` is a name).
type Token = (String, bool);

/// Splits a line into tokens: whitespace-separated, `"..."` quoting with
/// `""` for a quote, `#` to the end of the line a comment.
fn tokens(line: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        if c == '#' {
            break;
        }
        let mut token = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '#' {
                break;
            }
            chars.next();
            if c != '"' {
                token.push(c);
                continue;
            }
            quoted = true;
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        token.push('"');
                    }
                    Some('"') => break,
                    Some(c) => token.push(c),
                    None => return Err("unterminated quote".into()),
                }
            }
        }
        out.push((token, quoted));
    }
    Ok(out)
}

fn rule(tokens: &[Token]) -> Result<Rule, String> {
    let word = |i: usize, what: &str| {
        tokens
            .get(i)
            .map(|(t, _)| t.as_str())
            .ok_or_else(|| format!("missing {what}"))
    };
    let conn = match word(0, "connection type")? {
        "local" => ConnType::Local,
        "host" => ConnType::Host,
        "hostssl" => ConnType::HostSsl,
        "hostnossl" => ConnType::HostNoSsl,
        "hostgssenc" | "hostnogssenc" => return Err("GSSAPI lines are not supported".into()),
        other => return Err(format!("unknown connection type {other:?}")),
    };
    let databases = names(tokens.get(1..).unwrap_or(&[]), "database", true)?;
    let users = names(
        tokens.get(2).map_or(&[][..], std::slice::from_ref),
        "user",
        false,
    )?;
    let mut at = 3;
    let address = match conn {
        ConnType::Local => None,
        _ => {
            let (addr, used) = address(tokens.get(at..).unwrap_or(&[]))?;
            at += used;
            Some(addr)
        }
    };
    let method = match word(at, "method")? {
        "trust" => HbaMethod::Trust,
        "reject" => HbaMethod::Reject,
        "md5" => HbaMethod::Md5,
        "scram-sha-256" => HbaMethod::ScramSha256,
        "password" => HbaMethod::Password,
        "cert" => HbaMethod::Cert,
        other => return Err(format!("authentication method {other:?} is not supported")),
    };
    if let Some((option, _)) = tokens.get(at + 1) {
        return Err(format!("option {option:?} is not supported"));
    }
    Ok(Rule {
        conn,
        databases,
        users,
        address,
        method,
    })
}

/// A comma-separated list of names or a keyword.
fn names(tokens: &[Token], what: &str, database: bool) -> Result<Names, String> {
    let Some((text, quoted)) = tokens.first() else {
        return Err(format!("missing {what}"));
    };
    if !quoted {
        match text.as_str() {
            "all" => return Ok(Names::All),
            "sameuser" if database => return Ok(Names::SameUser),
            "samerole" | "samegroup" | "replication" if database => {
                return Err(format!("database keyword {text:?} is not supported"))
            }
            _ => {}
        }
    }
    let mut list = Vec::new();
    for name in text.split(',') {
        if !quoted && (name.starts_with('+') || name.starts_with('@')) {
            return Err(format!(
                "{what} {name:?}: groups (+name) and files (@file) are not supported"
            ));
        }
        if name.is_empty() {
            return Err(format!("empty {what} name"));
        }
        list.push(name.to_owned());
    }
    Ok(Names::List(list))
}

/// `all`, `addr/prefix`, or `addr mask`; returns how many tokens it used.
fn address(tokens: &[Token]) -> Result<(Address, usize), String> {
    let Some((text, _)) = tokens.first() else {
        return Err("missing address".into());
    };
    match text.as_str() {
        "all" => return Ok((Address::All, 1)),
        "samehost" | "samenet" => return Err(format!("address {text:?} is not supported")),
        _ => {}
    }
    if let Some((addr, prefix)) = text.split_once('/') {
        let addr: IpAddr = addr.parse().map_err(|_| format!("bad address {text:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("bad prefix length in {text:?}"))?;
        return Ok((Address::Net { addr, prefix }, 1));
    }
    let addr: IpAddr = text.parse().map_err(|_| {
        format!("bad address {text:?} (host names are not supported: use addr/prefix)")
    })?;
    let mask: IpAddr = tokens
        .get(1)
        .and_then(|(m, _)| m.parse().ok())
        .ok_or_else(|| format!("address {text:?} needs /prefix or a mask"))?;
    let prefix = mask_prefix(mask).ok_or_else(|| format!("bad mask {mask}"))?;
    if addr.is_ipv4() != mask.is_ipv4() {
        return Err(format!("address {addr} and mask {mask} differ in family"));
    }
    Ok((Address::Net { addr, prefix }, 2))
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The prefix length of a contiguous mask.
fn mask_prefix(mask: IpAddr) -> Option<u8> {
    let b = bits(mask);
    let ones = b.leading_ones();
    let width = if mask.is_ipv4() { 32 } else { 128 };
    let contiguous = b.checked_shl(ones).unwrap_or(0) == 0;
    u8::try_from(ones)
        .ok()
        .filter(|_| contiguous && ones <= width)
}

fn in_net(client: IpAddr, net: IpAddr, prefix: u8) -> bool {
    // An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d).
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    if client.is_ipv4() != net.is_ipv4() {
        return false;
    }
    // IPv4 bits sit at the top of the u128, so the same mask works.
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    bits(client) & mask == bits(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn<'a>(db: &'a str, user: &'a str, addr: &str, tls: bool) -> Connection<'a> {
        Connection {
            database: db,
            user,
            addr: addr.parse().ok(),
            tls,
        }
    }

    #[test]
    fn first_match_wins_by_type_database_user_and_address() {
        let hba = Hba::parse(
            "# comment\n\
             hostssl app   alice   10.0.0.0/8      cert\n\
             host    app   bob     10.1.0.0 255.255.0.0  reject\n\
             hostnossl all all     10.0.0.0/8      reject\n\
             host    \"all\",other  all  0.0.0.0/0  md5  # a database named all\n\
             host    sameuser all  ::1/128         password\n\
             host    all   all     all             scram-sha-256\n",
        );
        let hba = hba.unwrap_or_else(|e| panic!("{e}"));
        let m = |c| hba.method(&c);
        assert_eq!(
            m(conn("app", "alice", "10.2.3.4", true)),
            Some(HbaMethod::Cert)
        );
        assert_eq!(
            m(conn("app", "alice", "10.2.3.4", false)),
            Some(HbaMethod::Reject)
        );
        assert_eq!(
            m(conn("app", "bob", "10.1.200.1", true)),
            Some(HbaMethod::Reject)
        );
        assert_eq!(
            m(conn("app", "bob", "10.2.0.1", true)),
            Some(HbaMethod::ScramSha256)
        );
        assert_eq!(
            m(conn("all", "x", "192.168.1.1", true)),
            Some(HbaMethod::Md5)
        );
        assert_eq!(
            m(conn("other", "x", "192.168.1.1", true)),
            Some(HbaMethod::Md5)
        );
        assert_eq!(
            m(conn("carol", "carol", "::1", false)),
            Some(HbaMethod::Password)
        );
        assert_eq!(
            m(conn("app", "carol", "::1", false)),
            Some(HbaMethod::ScramSha256)
        );
        // An IPv4 client on an IPv6 socket matches IPv4 lines.
        assert_eq!(
            m(conn("app", "alice", "::ffff:10.9.9.9", true)),
            Some(HbaMethod::Cert)
        );
        // A Unix socket matches only `local` lines.
        assert_eq!(
            hba.method(&Connection {
                addr: None,
                ..conn("app", "a", "", false)
            }),
            None
        );
    }

    #[test]
    fn cidr_edges() {
        assert!(in_net(
            "10.0.0.1".parse().unwrap_or(IpAddr::from([0; 4])),
            IpAddr::from([10, 0, 0, 1]),
            32
        ));
        assert!(!in_net(
            IpAddr::from([10, 0, 0, 2]),
            IpAddr::from([10, 0, 0, 1]),
            32
        ));
        assert!(in_net(
            IpAddr::from([1, 2, 3, 4]),
            IpAddr::from([0, 0, 0, 0]),
            0
        ));
        assert!(in_net(
            IpAddr::from([10, 255, 255, 255]),
            IpAddr::from([10, 0, 0, 0]),
            8
        ));
        assert!(!in_net(
            IpAddr::from([11, 0, 0, 0]),
            IpAddr::from([10, 0, 0, 0]),
            8
        ));
        let v6: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0; 4]));
        let net: IpAddr = "2001:db8::".parse().unwrap_or(IpAddr::from([0; 4]));
        assert!(in_net(v6, net, 32));
        assert!(
            !in_net(IpAddr::from([32, 1, 13, 184]), net, 32),
            "no family mixing"
        );
        assert_eq!(mask_prefix(IpAddr::from([255, 255, 255, 0])), Some(24));
        assert_eq!(mask_prefix(IpAddr::from([255, 0, 255, 0])), None);
        assert_eq!(mask_prefix(IpAddr::from([0, 0, 0, 0])), Some(0));
    }

    #[test]
    fn what_it_cannot_honour_is_an_error() {
        for bad in [
            "host all +admins 0.0.0.0/0 md5",
            "host @dbs all 0.0.0.0/0 md5",
            "host all all 0.0.0.0/0 ldap",
            "host all all 0.0.0.0/0 md5 clientcert=verify-full",
            "host all all example.com md5",
            "host all all 10.0.0.0/33 md5",
            "host all all 10.0.0.0 255.0.255.0 md5",
            "hostgssenc all all all trust",
            "host all all",
            "host \"unterminated all all trust",
            "bogus all all all trust",
        ] {
            assert!(Hba::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Hba::parse("\n  # only comments\n").map(|h| h.rules.len()),
            Ok(0)
        );
    }
}
