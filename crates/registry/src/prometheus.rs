//! The Prometheus text exposition format (version 0.0.4), written by hand.

use std::fmt::Write;

use crate::figures::{Family, MetricKind};

/// The content type of the exposition.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `families` as Prometheus text: a `# HELP` and a `# TYPE` line per
/// family, then its series.
pub(crate) fn render(families: &[Family]) -> String {
    let mut out = String::with_capacity(4096);
    for family in families {
        let meta = family.meta;
        let kind = match meta.kind {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {} {}", meta.name, escape_help(meta.help));
        let _ = writeln!(out, "# TYPE {} {kind}", meta.name);
        for sample in &family.samples {
            out.push_str(meta.name);
            if !sample.labels.is_empty() {
                out.push('{');
                for (i, (label, value)) in sample.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{label}=\"{}\"", escape_label(value));
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&value(sample.value));
            out.push('\n');
        }
    }
    out
}

/// A label value with `\`, `"` and line feeds escaped.
pub(crate) fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text with `\` and line feeds escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A value as Prometheus reads it (`+Inf`, `-Inf`, `NaN` included).
fn value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::{Meta, Sample};

    #[test]
    fn labels_and_values_are_escaped() {
        let family = Family {
            meta: Meta {
                name: "x_total",
                help: "a \\ help\nline",
                kind: MetricKind::Counter,
            },
            samples: vec![
                Sample {
                    labels: vec![("name", "a\"b\\c\nd".to_owned())],
                    value: 3.0,
                },
                Sample {
                    labels: Vec::new(),
                    value: f64::NAN,
                },
                Sample {
                    labels: vec![("name", "i".to_owned()), ("key", "k".to_owned())],
                    value: f64::INFINITY,
                },
                Sample {
                    labels: vec![("name", "r".to_owned())],
                    value: 12.5,
                },
            ],
        };
        assert_eq!(
            render(&[family]),
            "# HELP x_total a \\\\ help\\nline\n\
             # TYPE x_total counter\n\
             x_total{name=\"a\\\"b\\\\c\\nd\"} 3\n\
             x_total NaN\n\
             x_total{name=\"i\",key=\"k\"} +Inf\n\
             x_total{name=\"r\"} 12.5\n"
        );
    }
}
