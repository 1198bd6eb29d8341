//! Durations as PgBouncer writes them (a number of seconds, fractions
//! allowed) or as strings with a unit: `"250ms"`, `"30s"`, `"5m"`, `"1h"`.
//! Zero means "disabled" wherever PgBouncer gives it that meaning.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secs(pub Duration);

impl Secs {
    pub const ZERO: Secs = Secs(Duration::ZERO);

    pub const fn from_secs(s: u64) -> Self {
        Secs(Duration::from_secs(s))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Secs(Duration::from_millis(ms))
    }

    /// `None` when zero, i.e. when the timeout is disabled.
    pub fn enabled(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

/// Parses `"1.5"`, `"30s"`, `"250ms"`, `"5m"`, `"1h"`, `"2d"`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30, \"30s\", \"250ms\", \"5m\")"))?;
    let factor = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "us" => 0.000_001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
    };
    from_secs_f64(value * factor)
}

fn from_secs_f64(v: f64) -> Result<Duration, String> {
    if !v.is_finite() || !(0.0..=1e10).contains(&v) {
        return Err(format!("{v} is not a valid number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("seconds as a number, or a string like \"30s\" or \"250ms\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                from_secs_f64(v as f64).map(Secs).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                from_secs_f64(v as f64).map(Secs).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                from_secs_f64(v).map(Secs).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                parse(v).map(Secs).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert!(parse("5 parsecs").is_err());
        assert!(parse("-1").is_err());
    }
}
