//! `${VAR}` and `${VAR:-default}` in the config's string values, from the
//! environment: secrets from a Kubernetes Secret or a systemd credential,
//! ports from the platform, without writing them into the file. `$${` is a
//! literal `${`. A variable that is unset (and has no default) is a config
//! problem naming the key and the variable, never an empty value.

use toml_edit::{DocumentMut, Item, Value};

use super::Problem;

/// `text` with every `${...}` in a string value replaced, looked up with
/// `var`; unchanged (byte for byte, so error positions hold) when it has
/// none.
///
/// # Errors
/// Each key whose value names an unset variable without a default, or an
/// unclosed `${`.
pub fn expand(text: &str, var: impl Fn(&str) -> Option<String>) -> Result<String, Vec<Problem>> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    // A file TOML cannot parse is left to the parser's own error.
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return Ok(text.to_owned());
    };
    let mut problems = Vec::new();
    walk_table(doc.as_table_mut(), &mut Vec::new(), &var, &mut problems);
    if problems.is_empty() {
        Ok(doc.to_string())
    } else {
        Err(problems)
    }
}

fn walk_table(
    table: &mut dyn toml_edit::TableLike,
    path: &mut Vec<String>,
    var: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    for (key, item) in table.iter_mut() {
        path.push(key.get().to_owned());
        walk_item(item, path, var, problems);
        path.pop();
    }
}

fn walk_item(
    item: &mut Item,
    path: &mut Vec<String>,
    var: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match item {
        Item::Value(v) => walk_value(v, path, var, problems),
        Item::Table(t) => walk_table(t, path, var, problems),
        Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                walk_table(t, path, var, problems);
            }
        }
        Item::None => {}
    }
}

fn walk_value(
    value: &mut Value,
    path: &mut Vec<String>,
    var: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(s) if s.value().contains("${") => match substitute(s.value(), var) {
            Ok(expanded) => {
                let decor = s.decor().clone();
                let mut fresh = toml_edit::Formatted::new(expanded);
                *fresh.decor_mut() = decor;
                *s = fresh;
            }
            Err(what) => problems.push(Problem {
                key: path.join("."),
                what,
            }),
        },
        Value::Array(a) => {
            for v in a.iter_mut() {
                walk_value(v, path, var, problems);
            }
        }
        Value::InlineTable(t) => walk_table(t, path, var, problems),
        _ => {}
    }
}

/// One string's `${NAME}`, `${NAME:-default}` and `$${`.
fn substitute(s: &str, var: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("an unclosed ${{ in {s:?}"))?;
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            match (
                var(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (or write ${{{name}:-default}})"
                    ))
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cret \"quoted\"".into()),
            "PORT" => Some("6543".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn strings_take_variables_and_defaults() {
        let text = "[proxy]\nlisten = \"0.0.0.0:${PORT}\" # the platform's\n\
                    [users.app]\npassword = \"${PW}\"\n\
                    [databases.app]\nprimary = \"${DB_HOST:-127.0.0.1}:5432\"\n\
                    dbname = \"${EMPTY:-app}\"\nreplicas = [\"$${literal}\"]\n";
        let out = expand(text, env).unwrap();
        let v: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(v["proxy"]["listen"].as_str(), Some("0.0.0.0:6543"));
        assert_eq!(
            v["users"]["app"]["password"].as_str(),
            Some("s3cret \"quoted\"")
        );
        assert_eq!(
            v["databases"]["app"]["primary"].as_str(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(v["databases"]["app"]["dbname"].as_str(), Some("app"));
        assert_eq!(
            v["databases"]["app"]["replicas"][0].as_str(),
            Some("${literal}")
        );
        assert!(out.contains("# the platform's"), "comments kept: {out}");
    }

    #[test]
    fn an_unset_variable_names_its_key() {
        let problems = expand("[users.app]\npassword = \"${NOPE}\"\n", env).unwrap_err();
        assert_eq!(problems[0].key, "users.app.password");
        assert!(problems[0].what.contains("NOPE"), "{:?}", problems[0]);
        let text = "[proxy]\nlisten = \"x:1\"\n";
        assert_eq!(
            expand(text, env).unwrap(),
            text,
            "untouched without a variable"
        );
    }
}
