//! serde's and toml's error messages in the words of someone editing a
//! config file: `expected a whole number, got "twenty"`, and for a key
//! pgwarden does not know, the closest key it does know (or what a
//! PgBouncer key is called here).

/// PgBouncer keys that pgwarden spells differently or does not take.
const PGBOUNCER: &[(&str, &str)] = &[
    (
        "client_tls_ciphers",
        "pgwarden uses rustls's cipher suites; remove it",
    ),
    (
        "server_tls_ciphers",
        "pgwarden uses rustls's cipher suites; remove it",
    ),
    (
        "client_tls_ecdhcurve",
        "pgwarden uses rustls's key exchange groups; remove it",
    ),
    (
        "client_tls_dheparams",
        "pgwarden uses rustls's key exchange groups; remove it",
    ),
    (
        "autodb_idle_timeout",
        "a [databases.\"*\"] database keeps its pool; its idle servers close after server_idle_timeout; remove it",
    ),
    (
        "client_tls13_ciphers",
        "pgwarden uses rustls's cipher suites; remove it",
    ),
    (
        "server_tls13_ciphers",
        "pgwarden uses rustls's cipher suites; remove it",
    ),
    (
        "user",
        "pgwarden does not switch users; run it as its own user (systemd User=)",
    ),
    (
        "disable_pqexec",
        "multi-statement queries are classified and routed whole",
    ),
    (
        "conffile",
        "SHOW CONFIG and pgwarden check name the file in use",
    ),
    ("service_name", "Windows only"),
    ("job_name", "Windows only"),
    (
        "scram_iterations",
        "SCRAM secrets pgwarden derives use 4096 iterations",
    ),
    ("auth_ident_file", "pgwarden has no peer/ident method"),
    ("auth_ldap_options", "pgwarden has no LDAP method"),
    ("listen_backlog", "the system's somaxconn is used"),
    (
        "sbuf_loopcnt",
        "each worker serves its clients fairly by tokio's budget",
    ),
    (
        "suspend_timeout",
        "SUSPEND only waits for servers to be idle; there is no -R restart",
    ),
    (
        "dns_zone_check_period",
        "host names are looked up again after dns_max_ttl",
    ),
    ("resolv_conf", "the system's resolver is used"),
    (
        "pkt_buf",
        "pgwarden sizes its buffers itself; see max_client_buffer",
    ),
];

/// Why pgwarden does not take PgBouncer's `key` (or what it calls it), if
/// the key is one of PgBouncer's it knows.
pub fn pgbouncer_key(key: &str) -> Option<&'static str> {
    PGBOUNCER
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, why)| *why)
}

/// One message, rephrased where a pattern is known.
pub fn plain(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return unknown_key(rest);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((name, expected)) = rest.split_once('`') {
            let choices: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            return format!("\"{name}\" is not one of: {}", choices.join(", "));
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            return format!("expected {}, got {}", kind(expected), value(got));
        }
    }
    message.to_owned()
}

/// `foo`, expected one of `a`, `b`  ->  unknown key "foo"; did you mean "a"?
fn unknown_key(rest: &str) -> String {
    let Some((name, expected)) = rest.split_once('`') else {
        return format!("unknown key `{rest}");
    };
    if let Some((_, why)) = PGBOUNCER.iter().find(|(k, _)| *k == name) {
        return format!("unknown key \"{name}\" (PgBouncer's): {why}");
    }
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let closest = known
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, k)| *d <= 2 + k.len() / 4)
        .min();
    match closest {
        Some((_, k)) => format!("unknown key \"{name}\"; did you mean \"{k}\"?"),
        None => format!("unknown key \"{name}\" (see proxy.toml.example for every key)"),
    }
}

fn kind(expected: &str) -> &str {
    match expected.trim() {
        "usize" | "u8" | "u16" | "u32" | "u64" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" => "text in quotes",
        other => other,
    }
}

fn value(got: &str) -> String {
    for (prefix, shown) in [
        ("string ", None),
        ("integer `", Some('`')),
        ("boolean `", Some('`')),
        ("floating point `", Some('`')),
    ] {
        if let Some(v) = got.strip_prefix(prefix) {
            return match shown {
                None => v.to_owned(),
                Some(end) => v.trim_end_matches(end).to_owned(),
            };
        }
    }
    got.to_owned()
}

/// Levenshtein distance, for key suggestions (keys are short).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_in_plain_words() {
        assert_eq!(
            plain("invalid type: string \"twenty\", expected usize"),
            "expected a whole number, got \"twenty\""
        );
        assert_eq!(
            plain("invalid type: integer `5`, expected a boolean"),
            "expected true or false, got 5"
        );
        assert_eq!(
            plain("unknown field `defualt_pool_size`, expected one of `listen`, `default_pool_size`, `min_pool_size`"),
            "unknown key \"defualt_pool_size\"; did you mean \"default_pool_size\"?"
        );
        assert!(plain("unknown field `pkt_buf`, expected one of `listen`")
            .contains("max_client_buffer"));
        assert!(
            plain("unknown field `zzz`, expected one of `listen`").contains("proxy.toml.example")
        );
        assert_eq!(
            plain("unknown variant `sometimes`, expected one of `session`, `transaction`"),
            "\"sometimes\" is not one of: session, transaction"
        );
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
