//! Console commands: PgBouncer's, and pgwarden's own, parsed from a query's
//! text. Pure: no state is read here.

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW thing` (lower-cased).
    Show(String),
    /// `SET key = value` (key lower-cased, value unquoted).
    Set {
        key: String,
        value: String,
    },
    Reload,
    Pause(Option<String>),
    Resume(Option<String>),
    Suspend,
    /// `SHUTDOWN` and `SHUTDOWN WAIT_FOR_SERVERS` (the same in pgwarden:
    /// open transactions finish) are `false`; `WAIT_FOR_CLIENTS` is `true`.
    Shutdown {
        wait_for_clients: bool,
    },
    KillClient(u64),
    Reconnect(Option<String>),
    Kill(Option<String>),
    Enable(String),
    Disable(String),
    WaitClose(Option<String>),
    DrainNode(String),
    UndrainNode(String),
    Switchover {
        db: String,
        node: String,
    },
    SaveConfig,
}

impl Command {
    /// Whether a `stats_users` user may run it.
    pub fn read_only(&self) -> bool {
        matches!(self, Command::Show(_))
    }

    /// The command's name, for errors and tags.
    pub fn tag(&self) -> &'static str {
        match self {
            Command::Show(_) => "SHOW",
            Command::Set { .. } => "SET",
            Command::Reload => "RELOAD",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Suspend => "SUSPEND",
            Command::Shutdown { .. } => "SHUTDOWN",
            Command::KillClient(_) => "KILL_CLIENT",
            Command::Reconnect(_) => "RECONNECT",
            Command::Kill(_) => "KILL",
            Command::Enable(_) => "ENABLE",
            Command::Disable(_) => "DISABLE",
            Command::WaitClose(_) => "WAIT_CLOSE",
            Command::DrainNode(_) => "DRAIN NODE",
            Command::UndrainNode(_) => "UNDRAIN NODE",
            Command::Switchover { .. } => "SWITCHOVER",
            Command::SaveConfig => "SAVE CONFIG",
        }
    }
}

/// Parses one command; the error says what was wrong.
///
/// # Errors
/// Not a console command, or its arguments are missing or extra.
/// Parses one console command; the error is the client's text: PgBouncer's
/// `invalid command` for a command it does not know (tools such as pgcli
/// look for it, and for 08P01, to tell a pooler console from a server),
/// else what is wrong with a known one.
pub fn parse(sql: &str) -> Result<Command, String> {
    let text = sql.trim().trim_end_matches(';').trim();
    parse_text(text).map_err(|e| match e {
        Bad::Unknown => format!("invalid command '{text}', use SHOW HELP;"),
        Bad::Syntax(e) => format!("syntax error in console command: {e} (see SHOW HELP)"),
    })
}

/// Why a console command did not parse.
enum Bad {
    Unknown,
    Syntax(String),
}

impl From<String> for Bad {
    fn from(e: String) -> Self {
        Bad::Syntax(e)
    }
}

impl From<&str> for Bad {
    fn from(e: &str) -> Self {
        Bad::Syntax(e.to_owned())
    }
}

fn parse_text(text: &str) -> Result<Command, Bad> {
    let words = split(text)?;
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let name = |i: usize| words.get(i).cloned();
    let arity = |n: usize| {
        if words.len() > n {
            Err(format!("unexpected {:?}", words[n]))
        } else {
            Ok(())
        }
    };
    let needs = |i: usize, what: &str| name(i).ok_or_else(|| format!("{what} needs a name"));
    let verb = lower.first().map(String::as_str).unwrap_or("");
    let command = match verb {
        "show" => {
            arity(2)?;
            Command::Show(lower.get(1).cloned().ok_or("SHOW what?")?)
        }
        "set" => return parse_set(text).map_err(Bad::Syntax),
        "reload" => arity(1).map(|()| Command::Reload)?,
        "suspend" => arity(1).map(|()| Command::Suspend)?,
        "shutdown" => {
            arity(2)?;
            let wait_for_clients = match lower.get(1).map(String::as_str) {
                None | Some("wait_for_servers") => false,
                Some("wait_for_clients") => true,
                Some(other) => {
                    return Err(
                        format!("SHUTDOWN {other:?}: WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS").into(),
                    )
                }
            };
            Command::Shutdown { wait_for_clients }
        }
        "kill_client" => {
            arity(2)?;
            let id = needs(1, "KILL_CLIENT")?;
            Command::KillClient(
                id.parse()
                    .map_err(|_| format!("KILL_CLIENT {id:?}: not a client id"))?,
            )
        }
        "pause" => arity(2).map(|()| Command::Pause(name(1)))?,
        "resume" => arity(2).map(|()| Command::Resume(name(1)))?,
        "reconnect" => arity(2).map(|()| Command::Reconnect(name(1)))?,
        "wait_close" => arity(2).map(|()| Command::WaitClose(name(1)))?,
        "kill" => arity(2).map(|()| Command::Kill(name(1)))?,
        "enable" => Command::Enable(needs(1, "ENABLE")?),
        "disable" => Command::Disable(needs(1, "DISABLE")?),
        "drain" | "undrain" if lower.get(1).map(String::as_str) == Some("node") => {
            arity(3)?;
            let node = needs(2, "DRAIN NODE")?;
            if verb == "drain" {
                Command::DrainNode(node)
            } else {
                Command::UndrainNode(node)
            }
        }
        "switchover" => {
            arity(4)?;
            if lower.get(2).map(String::as_str) != Some("to") {
                return Err("SWITCHOVER db TO node".into());
            }
            Command::Switchover {
                db: needs(1, "SWITCHOVER")?,
                node: needs(3, "SWITCHOVER ... TO")?,
            }
        }
        "save" if lower.get(1).map(String::as_str) == Some("config") => {
            arity(2).map(|()| Command::SaveConfig)?
        }
        "" => return Err("empty command".into()),
        _ => return Err(Bad::Unknown),
    };
    if matches!(&command, Command::Enable(_) | Command::Disable(_)) {
        arity(2)?;
    }
    Ok(command)
}

/// `SET key = value` / `SET key TO value`; the value may be quoted.
fn parse_set(text: &str) -> Result<Command, String> {
    let rest = text[3..].trim_start();
    let (key, value) = match rest.find('=') {
        Some(i) => (rest[..i].trim(), rest[i + 1..].trim()),
        None => {
            let mut parts = rest.splitn(2, char::is_whitespace);
            let key = parts.next().unwrap_or("").trim();
            let tail = parts.next().unwrap_or("").trim_start();
            match tail.get(..2) {
                Some(to) if to.eq_ignore_ascii_case("to") => (key, tail[2..].trim()),
                _ => return Err("SET key = value".into()),
            }
        }
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err("SET key = value".into());
    }
    let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(quoted) => quoted.replace("''", "'"),
        None if value.is_empty() => return Err("SET needs a value".into()),
        None => value.to_owned(),
    };
    Ok(Command::Set {
        key: key.to_ascii_lowercase(),
        value,
    })
}

/// Words, with `"quoted identifiers"` kept whole (and unquoted).
fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        word.push('"');
                    }
                    Some('"') => break,
                    Some(ch) => word.push(ch),
                    None => return Err("unterminated quoted name".into()),
                }
            }
            words.push(word);
        } else {
            let mut word = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                word.push(ch);
                chars.next();
            }
            words.push(word);
        }
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbouncer_commands() {
        assert_eq!(parse("show pools;"), Ok(Command::Show("pools".into())));
        assert_eq!(
            parse("SHOW STATS_TOTALS"),
            Ok(Command::Show("stats_totals".into()))
        );
        assert_eq!(parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(
            parse("pause \"My Db\""),
            Ok(Command::Pause(Some("My Db".into())))
        );
        assert_eq!(parse("RESUME app"), Ok(Command::Resume(Some("app".into()))));
        assert_eq!(parse("KILL app"), Ok(Command::Kill(Some("app".into()))));
        assert_eq!(parse("kill"), Ok(Command::Kill(None)));
        assert_eq!(parse("KILL_CLIENT 42"), Ok(Command::KillClient(42)));
        assert!(parse("KILL_CLIENT x").is_err());
        assert_eq!(
            parse("SHUTDOWN WAIT_FOR_CLIENTS"),
            Ok(Command::Shutdown {
                wait_for_clients: true
            })
        );
        assert_eq!(
            parse("shutdown wait_for_servers"),
            Ok(Command::Shutdown {
                wait_for_clients: false
            })
        );
        assert_eq!(parse(" reload ; "), Ok(Command::Reload));
        assert_eq!(
            parse("SET default_pool_size = 40"),
            Ok(Command::Set {
                key: "default_pool_size".into(),
                value: "40".into()
            })
        );
        assert_eq!(
            parse("set server_reset_query to 'DISCARD ALL'"),
            Ok(Command::Set {
                key: "server_reset_query".into(),
                value: "DISCARD ALL".into()
            })
        );
    }

    #[test]
    fn pgwarden_commands() {
        assert_eq!(
            parse("DRAIN NODE 10.0.0.2:5432"),
            Ok(Command::DrainNode("10.0.0.2:5432".into()))
        );
        assert_eq!(
            parse("SWITCHOVER app TO 127.0.0.1:5433"),
            Ok(Command::Switchover {
                db: "app".into(),
                node: "127.0.0.1:5433".into()
            })
        );
        assert_eq!(parse("save config"), Ok(Command::SaveConfig));
    }

    #[test]
    fn mistakes() {
        for bad in [
            "",
            "SELECT 1",
            "SHOW",
            "SHOW POOLS extra",
            "KILL a b",
            "ENABLE",
            "SET x",
            "SET = 1",
            "SWITCHOVER app node",
            "PAUSE a b",
            "show \"x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(!Command::Pause(None).read_only());
        assert!(Command::Show("pools".into()).read_only());
    }
}
