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
