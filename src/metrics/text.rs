//! Prometheus' text exposition format (0.0.4): every family with its
//! `# HELP` and `# TYPE`, its samples together, label values escaped.
//!
//! Written here rather than through a recorder: the values already live
//! in the proxy's own counters (seconds as fractions, latency as an HDR
//! histogram turned into cumulative buckets at each scrape), and a
//! recorder takes neither a fractional counter nor ready-made buckets.

use std::fmt::Write;

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A scrape's text, one family at a time.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    /// Starts family `name`; its samples follow through the returned value.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Family {
            out: &mut self.out,
            name,
        }
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &'static str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help).sample(&[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// One family being written.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    pub fn sample(&mut self, labels: Labels<'_>, value: f64) {
        line(self.out, self.name, "", labels, None, value);
    }

    /// A histogram's series: `buckets` are (upper bound, cumulative count)
    /// in increasing order; `+Inf` is added as `count`.
    pub fn histogram(&mut self, labels: Labels<'_>, buckets: &[(f64, u64)], sum: f64, count: u64) {
        for &(le, n) in buckets {
            line(
                self.out,
                self.name,
                "_bucket",
                labels,
                Some(&fmt_value(le)),
                n as f64,
            );
        }
        line(
            self.out,
            self.name,
            "_bucket",
            labels,
            Some("+Inf"),
            count as f64,
        );
        line(self.out, self.name, "_sum", labels, None, sum);
        line(self.out, self.name, "_count", labels, None, count as f64);
    }
}

fn line(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: Labels<'_>,
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let pairs = labels.iter().copied().chain(le.map(|le| ("le", le)));
    let mut first = true;
    for (key, value) in pairs {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(key);
        out.push_str("=\"");
        escape(out, value);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&fmt_value(value));
    out.push('\n');
}

/// Backslash, double quote and newline escaped, as the format asks.
fn escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_escape_and_histograms() {
        let mut e = Exposition::default();
        e.single("up", Kind::Gauge, "Up.", 1.0);
        let mut f = e.family("lat_seconds", Kind::Histogram, "Latency.");
        f.histogram(&[("db", "a\"b\\c\nd")], &[(0.001, 2), (0.5, 3)], 0.25, 4);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP up Up.\n# TYPE up gauge\nup 1\n\
             # HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{db=\"a\\\"b\\\\c\\nd\",le=\"0.001\"} 2\n\
             lat_seconds_bucket{db=\"a\\\"b\\\\c\\nd\",le=\"0.5\"} 3\n\
             lat_seconds_bucket{db=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} 4\n\
             lat_seconds_sum{db=\"a\\\"b\\\\c\\nd\"} 0.25\n\
             lat_seconds_count{db=\"a\\\"b\\\\c\\nd\"} 4\n"
        );
    }
}
