//! Queries: which series, which resolution, and turning their rows into
//! values on a regular step, optionally as a rate and aggregated across
//! series. Everything here is pure; [`crate::Monitor::query`] feeds it.

use std::collections::BTreeMap;

use crate::series::{Matcher, MatcherError};
use crate::store::Resolution;

/// Aggregation across series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Agg {
    Sum,
    Avg,
    Max,
    Min,
}

impl Agg {
    pub fn as_str(self) -> &'static str {
        match self {
            Agg::Sum => "sum",
            Agg::Avg => "avg",
            Agg::Max => "max",
            Agg::Min => "min",
        }
    }
}

impl std::str::FromStr for Agg {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, QueryError> {
        Ok(match s {
            "sum" => Agg::Sum,
            "avg" => Agg::Avg,
            "max" => Agg::Max,
            "min" => Agg::Min,
            other => return Err(QueryError::BadAgg(other.to_string())),
        })
    }
}

/// A query as the API takes it.
#[derive(Debug, Clone)]
pub struct Query {
    pub metric: String,
    pub matchers: Vec<Matcher>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `None`: about 240 points over the range.
    pub step_ms: Option<i64>,
    /// Per-second rate of a counter (resets handled) before aggregating.
    pub rate: bool,
    pub agg: Option<Agg>,
    /// Labels the aggregation keeps apart (`sum by (server)`).
    pub by: Vec<String>,
}

/// What a caller got wrong; the API answers 400 with this text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("unknown metric `{0}`; GET /api/v1/metrics lists them")]
    UnknownMetric(String),
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    #[error("the range ends ({end}) before or where it starts ({start}); give end after start")]
    EmptyRange { start: i64, end: i64 },
    #[error("step must be positive, got {0} ms")]
    BadStep(i64),
    #[error("{points} points per series is too many (at most {max}); use a larger step or a shorter range")]
    TooManyPoints { points: i64, max: i64 },
    #[error("the query matches {found} series (at most {max}); narrow it with label filters or aggregate")]
    TooManySeries { found: usize, max: usize },
    #[error("unknown aggregation `{0}`; use sum, avg, max or min")]
    BadAgg(String),
    #[error("`{0}` is not a label name")]
    BadLabel(String),
}

pub const MAX_POINTS: i64 = 11_000;
pub const MAX_SERIES: usize = 10_000;

impl Query {
    /// Checks what does not need the data; returns the step to use.
    pub fn validate(&self) -> Result<i64, QueryError> {
        if self.end_ms <= self.start_ms {
            return Err(QueryError::EmptyRange { start: self.start_ms, end: self.end_ms });
        }
        if let Some(label) = self.by.iter().find(|l| !crate::series::valid_name(l)) {
            return Err(QueryError::BadLabel(label.clone()));
        }
        let range = self.end_ms.saturating_sub(self.start_ms);
        let step = match self.step_ms {
            Some(s) if s <= 0 => return Err(QueryError::BadStep(s)),
            Some(s) => s,
            None => (range / 240).max(1000),
        };
        let points = range / step + 1;
        if points > MAX_POINTS {
            return Err(QueryError::TooManyPoints { points, max: MAX_POINTS });
        }
        Ok(step)
    }
}

/// The resolution a range is read at: the finest that keeps a series to a
/// few thousand rows and still holds data that old.
pub fn pick_resolution(start_ms: i64, end_ms: i64, now_ms: i64, retention: &crate::Retention) -> Resolution {
    let range = end_ms - start_ms;
    let age = now_ms - start_ms;
    if range <= 6 * 3_600_000 && age <= retention.raw_ms {
        Resolution::Raw
    } else if range <= 2 * 86_400_000 && age <= retention.minute_ms {
        Resolution::Minute
    } else {
        Resolution::Hour
    }
}

/// One answer series: its labels and a value (or a gap) per timestamp.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub values: Vec<Option<f64>>,
}

/// A query's answer: shared timestamps, one row of values per series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Answer {
    pub metric: String,
    pub resolution: Resolution,
    pub step_ms: i64,
    pub timestamps: Vec<i64>,
    pub series: Vec<Series>,
}

/// The step timestamps of a range: multiples of `step` in `[start, end]`.
pub fn steps(start: i64, end: i64, step: i64) -> Vec<i64> {
    let first = start.div_euclid(step) * step + if start.rem_euclid(step) == 0 { 0 } else { step };
    (0..).map(|i| first + i * step).take_while(|t| *t <= end).collect()
}

/// A series' values on the steps: the mean of the rows in `(t - step, t]`,
/// or, for a rate, increase over elapsed time of the rows ending there.
/// `rows` are (timestamp, value) in time order; for a rate they should
/// start one row before the range.
pub fn align(rows: &[(i64, f64)], steps: &[i64], step: i64, rate: bool) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(steps.len());
    let mut i = 0;
    for &t in steps {
        let lo = t - step;
        while i < rows.len() && rows[i].0 <= lo {
            i += 1;
        }
        let (mut sum, mut weight) = (0.0, 0.0);
        let mut j = i;
        while j < rows.len() && rows[j].0 <= t {
            let (ts, v) = rows[j];
            if !v.is_nan() {
                if rate {
                    if j > 0 && !rows[j - 1].1.is_nan() {
                        let (pt, pv) = rows[j - 1];
                        // A drop is a counter reset: the counter restarted at 0.
                        sum += if v >= pv { v - pv } else { v };
                        weight += (ts - pt) as f64 / 1000.0;
                    }
                } else {
                    sum += v;
                    weight += 1.0;
                }
            }
            j += 1;
        }
        out.push((weight > 0.0).then(|| sum / weight));
    }
    out
}

/// Combines series (already aligned on the same steps) per group of `by`
/// labels.
pub fn aggregate(series: Vec<Series>, agg: Agg, by: &[String]) -> Vec<Series> {
    let mut groups: BTreeMap<BTreeMap<String, String>, (Vec<f64>, Vec<u32>)> = BTreeMap::new();
    for s in series {
        let key: BTreeMap<_, _> = by.iter().map(|l| (l.clone(), s.labels.get(l).cloned().unwrap_or_default())).collect();
        let (acc, counts) = groups.entry(key).or_insert_with(|| {
            let start = match agg {
                Agg::Max => f64::NEG_INFINITY,
                Agg::Min => f64::INFINITY,
                Agg::Sum | Agg::Avg => 0.0,
            };
            (vec![start; s.values.len()], vec![0; s.values.len()])
        });
        for ((a, c), v) in acc.iter_mut().zip(counts.iter_mut()).zip(&s.values) {
            let Some(v) = v else { continue };
            *c += 1;
            *a = match agg {
                Agg::Sum | Agg::Avg => *a + v,
                Agg::Max => a.max(*v),
                Agg::Min => a.min(*v),
            };
        }
    }
    groups
        .into_iter()
        .map(|(labels, (acc, counts))| Series {
            labels,
            values: acc
                .into_iter()
                .zip(counts)
                .map(|(a, c)| match (c, agg) {
                    (0, _) => None,
                    (c, Agg::Avg) => Some(a / f64::from(c)),
                    _ => Some(a),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_aligned_multiples() {
        assert_eq!(steps(1_500, 5_000, 1_000), vec![2_000, 3_000, 4_000, 5_000]);
        assert_eq!(steps(2_000, 2_500, 1_000), vec![2_000]);
    }

    #[test]
    fn rate_handles_resets_and_gaps() {
        // 10 per second, a restart at 40 s, nothing between 60 and 90 s.
        let rows = [
            (0, 0.0),
            (10_000, 100.0),
            (20_000, 200.0),
            (30_000, 300.0),
            (40_000, 50.0),
            (50_000, 150.0),
            (60_000, 250.0),
            (90_000, 550.0),
        ];
        let got = align(&rows, &[10_000, 20_000, 40_000, 50_000, 70_000, 90_000], 10_000, true);
        assert_eq!(got, vec![Some(10.0), Some(10.0), Some(5.0), Some(10.0), None, Some(10.0)]);
        let plain = align(&rows, &[20_000, 80_000], 20_000, false);
        assert_eq!(plain, vec![Some(150.0), None]);
    }

    #[test]
    fn aggregation_by_label() {
        let s = |server: &str, values: Vec<Option<f64>>| Series { labels: [("server".to_string(), server.to_string())].into(), values };
        let all = vec![s("a", vec![Some(1.0), None]), s("b", vec![Some(3.0), Some(4.0)]), s("a", vec![Some(5.0), None])];
        let sum = aggregate(all.clone(), Agg::Sum, &[]);
        assert_eq!(sum.len(), 1);
        assert_eq!(sum[0].values, vec![Some(9.0), Some(4.0)]);
        let by = aggregate(all.clone(), Agg::Max, &["server".to_string()]);
        assert_eq!(by.iter().map(|s| s.values.clone()).collect::<Vec<_>>(), vec![vec![Some(5.0), None], vec![Some(3.0), Some(4.0)]]);
        assert_eq!(aggregate(all, Agg::Avg, &[])[0].values, vec![Some(3.0), Some(4.0)]);
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let q = Query { metric: "m".into(), matchers: vec![], start_ms: 10, end_ms: 10, step_ms: None, rate: false, agg: None, by: vec![] };
        assert!(matches!(q.validate(), Err(QueryError::EmptyRange { .. })));
        let q = Query { end_ms: 100_000_000, step_ms: Some(1), ..q };
        assert!(matches!(q.validate(), Err(QueryError::TooManyPoints { .. })));
        let q = Query { step_ms: Some(-5), ..q };
        assert_eq!(q.validate(), Err(QueryError::BadStep(-5)));
        assert_eq!("median".parse::<Agg>(), Err(QueryError::BadAgg("median".into())));
    }
}
