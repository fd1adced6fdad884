//! Prometheus' text exposition format, read line by line without copying:
//! the scraper keys its series cache by a sample line's series text, so a
//! known series costs one hash lookup and a float parse per scrape.
//! (Crates for this format allocate every label of every line.)

use crate::series::{SeriesKey, valid_name};

/// One meaningful line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// `series` is the text before the value, e.g. `m{a="1"}`.
    Sample {
        series: &'a str,
        value: f64,
    },
    Help {
        metric: &'a str,
        text: &'a str,
    },
    Type {
        metric: &'a str,
        kind: &'a str,
    },
}

/// A line that is not the text format, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: String,
}

/// Every sample, HELP and TYPE line of `text`, or the first bad line.
pub fn lines(text: &str) -> impl Iterator<Item = Result<Line<'_>, ParseError>> {
    text.lines().enumerate().filter_map(|(i, raw)| line(raw).map_err(|problem| ParseError { line: i + 1, problem }).transpose())
}

fn line(raw: &str) -> Result<Option<Line<'_>>, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Some(comment) = text.strip_prefix('#') {
        let mut words = comment.trim_start().splitn(3, ' ');
        return Ok(match (words.next(), words.next(), words.next()) {
            (Some("HELP"), Some(metric), text) => Some(Line::Help { metric, text: text.unwrap_or("").trim() }),
            (Some("TYPE"), Some(metric), Some(kind)) => Some(Line::Type { metric, kind: kind.trim() }),
            _ => None,
        });
    }
    let end = series_end(text)?;
    let (series, rest) = text.split_at(end);
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or_else(|| format!("`{}` has no value", clip(text)))?;
    let value: f64 = value.parse().map_err(|_| format!("`{}` is not a number in `{}`", clip(value), clip(text)))?;
    if let Some(ts) = fields.next()
        && ts.parse::<i64>().is_err()
    {
        return Err(format!("`{}` is not a timestamp in `{}`", clip(ts), clip(text)));
    }
    Ok(Some(Line::Sample { series, value }))
}

/// Where the series text of a sample line ends: after the name, or after
/// the `}` that closes its labels (quoted values may hold `}` and spaces).
fn series_end(text: &str) -> Result<usize, String> {
    let name_end = text.find(|c: char| c == '{' || c.is_ascii_whitespace()).unwrap_or(text.len());
    if !valid_name(&text[..name_end]) {
        return Err(format!("`{}` does not start with a metric name", clip(text)));
    }
    if !text[name_end..].starts_with('{') {
        return Ok(name_end);
    }
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text[name_end..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Ok(name_end + i + 1),
            _ => {}
        }
    }
    Err(format!("labels of `{}` are not closed", clip(text)))
}

/// The series text of a sample line as a key.
pub fn parse_series(series: &str) -> Result<SeriesKey, String> {
    let (metric, rest) = match series.find('{') {
        Some(at) => (&series[..at], &series[at + 1..]),
        None => return Ok(SeriesKey::new(series, [])),
    };
    let body = rest.strip_suffix('}').ok_or_else(|| format!("labels of `{}` are not closed", clip(series)))?;
    let mut labels = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| format!("label without `=` in `{}`", clip(series)))?;
        let name = rest[..eq].trim();
        if !valid_name(name) {
            return Err(format!("bad label name `{}` in `{}`", clip(name), clip(series)));
        }
        let after = rest[eq + 1..].trim_start();
        let after = after.strip_prefix('"').ok_or_else(|| format!("label {name} is not quoted in `{}`", clip(series)))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut close = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                '"' => {
                    close = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let close = close.ok_or_else(|| format!("label {name} has no closing quote in `{}`", clip(series)))?;
        labels.push((name.to_string(), value));
        rest = after[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(SeriesKey::new(metric, labels))
}

/// Long garbage is cut in error messages.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(80) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_our_processes_and_prometheus_clients_write() {
        let text = "# HELP atoll_host_cpu_seconds_total CPU time by mode.\n\
                    # TYPE atoll_host_cpu_seconds_total counter\n\
                    atoll_host_cpu_seconds_total{mode=\"user\"} 12.5\n\
                    up 1 1700000000000\n\
                    h_bucket{le=\"+Inf\",path=\"/a b}\\\"\"} 3\n\
                    nan_metric NaN\n\n";
        let got: Vec<_> = lines(text).collect::<Result<_, _>>().expect("parses");
        assert_eq!(got[0], Line::Help { metric: "atoll_host_cpu_seconds_total", text: "CPU time by mode." });
        assert_eq!(got[1], Line::Type { metric: "atoll_host_cpu_seconds_total", kind: "counter" });
        assert_eq!(got[2], Line::Sample { series: "atoll_host_cpu_seconds_total{mode=\"user\"}", value: 12.5 });
        assert_eq!(got[3], Line::Sample { series: "up", value: 1.0 });
        let Line::Sample { series, value } = got[4] else { panic!("sample expected") };
        assert_eq!(value, 3.0);
        let key = parse_series(series).expect("labels parse");
        assert_eq!(key.label("path"), Some("/a b}\""));
        assert_eq!(key.label("le"), Some("+Inf"));
        assert!(matches!(got[5], Line::Sample { value, .. } if value.is_nan()));
    }

    #[test]
    fn garbage_names_its_line() {
        let err = lines("ok 1\n<html>oops</html>\n").find_map(Result::err).expect("an error");
        assert_eq!(err.line, 2);
        assert!(err.problem.contains("metric name"), "{}", err.problem);
        let err = lines("m{a=\"1\" 2\n").find_map(Result::err).expect("an error");
        assert!(err.problem.contains("not closed"), "{}", err.problem);
        let err = lines("m twelve\n").find_map(Result::err).expect("an error");
        assert!(err.problem.contains("not a number"), "{}", err.problem);
        assert!(parse_series("m{a=1}").is_err());
    }
}
