//! Reading samples out of Prometheus / OpenMetrics text.

/// One sample line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parse `name{a="x",b="y"} value [timestamp]`; `None` for comments and blank lines.
pub fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 1);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    // A quoted value with \" \\ \n escapes.
                    let (_, q) = chars.next()?;
                    if q != '"' {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => {
                                let (_, e) = chars.next()?;
                                val.push(if e == 'n' { '\n' } else { e });
                            }
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.push((std::mem::take(&mut key), val));
                }
                c => key.push(c),
            }
        }
        rest = &after[end?..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Every sample in an exposition.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

/// The sum of the samples named `name` that carry (at least) `labels`; 0 when there are none.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .sum()
}

/// Whether any sample named `name` exists.
pub fn has(text: &str, name: &str) -> bool {
    samples(text).iter().any(|s| s.name == name)
}

/// Runs `promtool check metrics` on `text` and panics, with promtool's report and the text,
/// unless promtool parses it and has no complaint. Tolerated (DESIGN §9): Debian's promtool
/// lints the classic format and flags OpenMetrics counter names (`# TYPE x counter` +
/// `# HELP x …` with samples `x_total`), which Prometheus scrapes fine. Depending on the
/// version it says "counter metrics should have "_total" suffix", or (2.42, bookworm)
/// "x_total no help text" because it looks for the HELP of `x_total`; the second only for a
/// family that really is an OpenMetrics counter with a HELP line. Anything else fails.
pub fn assert_promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let o = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let openmetrics_counter_false_positive = |line: &str| {
        if line.contains("counter metrics should have \"_total\" suffix") {
            return true;
        }
        let Some(name) = line.strip_suffix(" no help text") else {
            return false;
        };
        let Some(base) = name.trim().strip_suffix("_total") else {
            return false;
        };
        text.contains(&format!("# TYPE {base} counter\n"))
            && text.contains(&format!("# HELP {base} "))
    };
    let other: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty() && !openmetrics_counter_false_positive(l))
        .collect();
    assert!(
        o.status.success() || o.status.code() == Some(3),
        "promtool failed to run or to parse the text ({}):\n{report}",
        o.status
    );
    assert!(
        other.is_empty(),
        "promtool check metrics complains ({}):\n{report}\n--- metrics ---\n{text}",
        o.status
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let s = parse_line(r#"oca_x_total{a="1",b="two, \"q\""} 42"#).unwrap();
        assert_eq!(s.name, "oca_x_total");
        assert_eq!(
            s.labels,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "two, \"q\"".to_string())
            ]
        );
        assert_eq!(s.value, 42.0);
        let s = parse_line("oca_ready 1").unwrap();
        assert_eq!(
            (s.name.as_str(), s.labels.len(), s.value),
            ("oca_ready", 0, 1.0)
        );
        assert!(parse_line("# TYPE oca_ready gauge").is_none());
        assert!(parse_line("# EOF").is_none());
        let text = "a{x=\"1\",y=\"2\"} 3\na{x=\"1\",y=\"3\"} 4\nb 1\n";
        assert_eq!(value(text, "a", &[("x", "1")]), 7.0);
        assert_eq!(value(text, "a", &[("y", "3")]), 4.0);
        assert_eq!(value(text, "c", &[]), 0.0);
    }
}
