//! `/api/v1/metrics`: what MonitorDB holds, queries over it, and the
//! scrape targets with their last outcome.

use atoll_api::ErrorBody;
use atoll_api::metrics::{MetricView, QueryAnswer, QuerySeries, SdGroup, TargetView, TargetsView};
use atoll_core::time::{now_ms, parse_duration_ms};
use atoll_monitor::{Matcher, MonitorError, Query};
use axum::Json;
use axum::extract::{Query as QueryString, RawQuery, State};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_metrics)).routes(routes!(query)).routes(routes!(targets)).routes(routes!(service_discovery))
}

/// Every metric MonitorDB holds, with its help text, kind and labels.
#[utoipa::path(get, path = "/api/v1/metrics", tag = "metrics", security(("bearer" = ["viewer"])), responses((status = 200, body = Vec<MetricView>), (status = 401, body = ErrorBody)))]
async fn list_metrics(State(state): State<AppState>, _caller: Caller) -> Json<Vec<MetricView>> {
    Json(
        state
            .monitoring
            .db
            .metrics()
            .into_iter()
            .map(|m| MetricView { name: m.name, kind: m.kind, help: m.help, labels: m.labels, series: m.series })
            .collect(),
    )
}

/// The parameters of a query (documentation; they are read from the raw
/// query string so that `match` may repeat).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct QueryParams {
    /// The metric, e.g. `atoll_db_statements_total`.
    metric: String,
    /// A label condition: `name=value`, `name!=value`, `name=~regex` or
    /// `name!~regex`; repeat for several.
    #[param(rename = "match")]
    matchers: Option<Vec<String>>,
    /// Start, unix milliseconds; default `end` minus `range`.
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    start: Option<i64>,
    /// End, unix milliseconds; default now.
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    end: Option<i64>,
    /// Length of the range when `start` is not given, e.g. `15m`, `6h`, `7d`; default `1h`.
    range: Option<String>,
    /// Spacing of the answer's points, e.g. `30s`; default range / 240, at
    /// least the resolution read.
    step: Option<String>,
    /// `rate`: per-second rate of a counter (resets handled) before any aggregation.
    #[param(rename = "fn")]
    func: Option<String>,
    /// Across series: `sum`, `avg`, `max` or `min`.
    agg: Option<String>,
    /// Labels the aggregation keeps apart, comma-separated, e.g. `server`.
    by: Option<String>,
}

/// Values of one metric over a time range, per series or aggregated.
///
/// The resolution is picked for the range: raw samples up to 6 hours,
/// minute rollups up to 2 days, hour rollups beyond (and whenever finer
/// data is past its retention).
#[utoipa::path(get, path = "/api/v1/metrics/query", tag = "metrics", security(("bearer" = ["viewer"])), params(QueryParams),
    responses((status = 200, body = QueryAnswer), (status = 400, body = ErrorBody, description = "unknown metric, bad matcher, impossible range"),
        (status = 401, body = ErrorBody)))]
async fn query(State(state): State<AppState>, _caller: Caller, RawQuery(raw): RawQuery) -> ApiResult<Json<QueryAnswer>> {
    let now = now_ms();
    let q = parse_query(raw.as_deref().unwrap_or(""), now).map_err(ApiError::BadRequest)?;
    let answer = state.monitoring.db.query(&q, now).await.map_err(|e| match e {
        MonitorError::Query(q) => ApiError::BadRequest(q.to_string()),
        other => ApiError::Unavailable(other.to_string()),
    })?;
    Ok(Json(QueryAnswer {
        metric: answer.metric,
        resolution: answer.resolution.as_str().to_string(),
        step_ms: answer.step_ms,
        timestamps: answer.timestamps,
        series: answer
            .series
            .into_iter()
            .map(|s| QuerySeries { labels: s.labels, values: s.values.into_iter().map(|v| v.filter(|v| v.is_finite())).collect() })
            .collect(),
    }))
}

/// The latest time a query may name: the end of year 9999.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Reads a query string; every problem is named. Times are bounded, so no
/// arithmetic on them overflows.
fn parse_query(raw: &str, now: i64) -> Result<Query, String> {
    let mut metric = None;
    let (mut matchers, mut start, mut end, mut range, mut step, mut rate, mut agg, mut by) =
        (Vec::new(), None, None, 3_600_000, None, false, None, Vec::new());
    let number = |key: &str, v: &str| match v.parse::<i64>() {
        Ok(t) if (0..=MAX_TIME_MS).contains(&t) => Ok(t),
        Ok(_) => Err(format!("{key}=`{v}` is out of range: give a unix time in milliseconds from 0 to {MAX_TIME_MS}")),
        Err(_) => Err(format!("{key}=`{v}` is not a unix time in milliseconds")),
    };
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        let v = value.as_ref();
        match key.as_ref() {
            "metric" => metric = Some(v.to_string()),
            "match" => matchers.push(Matcher::parse(v).map_err(|e| e.to_string())?),
            "start" => start = Some(number("start", v)?),
            "end" => end = Some(number("end", v)?),
            "range" => range = parse_duration_ms(v).map_err(|e| format!("range: {e}"))?,
            "step" => step = Some(parse_duration_ms(v).map_err(|e| format!("step: {e}"))?),
            "fn" if v == "rate" => rate = true,
            "fn" => return Err(format!("fn=`{v}` is unknown; the one function is `rate`")),
            "agg" => agg = Some(v.parse().map_err(|e: atoll_monitor::QueryError| e.to_string())?),
            "by" => by = v.split(',').map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
            other => return Err(format!("unknown parameter `{other}`; use metric, match, start, end, range, step, fn, agg, by")),
        }
    }
    let metric = metric.ok_or("metric is missing: name the metric to read (GET /api/v1/metrics lists them)")?;
    let end_ms = end.unwrap_or(now);
    // From the epoch at the earliest: a range longer than that reads it all.
    let start_ms = start.unwrap_or(end_ms.saturating_sub(range).max(0));
    if !by.is_empty() && agg.is_none() {
        return Err("by needs agg (sum, avg, max or min)".into());
    }
    Ok(Query { metric, matchers, start_ms, end_ms, step_ms: step, rate, agg, by })
}

/// The scrape targets and how each one's last scrape went.
#[utoipa::path(get, path = "/api/v1/metrics/targets", tag = "metrics", security(("bearer" = ["viewer"])), responses((status = 200, body = TargetsView), (status = 401, body = ErrorBody)))]
async fn targets(State(state): State<AppState>, _caller: Caller) -> Json<TargetsView> {
    let targets = state
        .monitoring
        .targets()
        .into_iter()
        .map(|t| TargetView {
            job: t.target.job().to_string(),
            instance: t.target.instance().to_string(),
            url: t.target.url.clone(),
            labels: t.target.labels.clone(),
            up: t.up,
            last_scrape_ms: t.last_scrape_ms,
            duration_ms: t.duration_ms,
            samples: t.samples,
            error: t.error,
        })
        .collect();
    Json(TargetsView { scraping: state.platform.leading().is_some(), interval_ms: state.config.scrape_interval_ms, targets })
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SdParams {
    /// Only this job: `agent`, `proxy` or `server`.
    pub job: Option<String>,
}

/// Every target for Prometheus or VictoriaMetrics, as service-discovery
/// target groups (usable directly as `http_sd_configs`; `atoll metrics sd`
/// writes them as `file_sd_configs` files). Agents are reached through this
/// server (`/api/v1/hosts/{host}/metrics`), which holds their credentials:
/// scrape the `agent` job with an API token.
#[utoipa::path(get, path = "/api/v1/metrics/sd", tag = "metrics", security(("bearer" = ["viewer"])), params(SdParams),
    responses((status = 200, body = Vec<SdGroup>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn service_discovery(
    State(state): State<AppState>,
    _caller: Caller,
    QueryString(p): QueryString<SdParams>,
) -> ApiResult<Json<Vec<SdGroup>>> {
    if let Some(job) = p.job.as_deref().filter(|j| !["agent", "proxy", "server"].contains(j)) {
        return Err(ApiError::BadRequest(format!("unknown job {job:?}; use agent, proxy or server")));
    }
    let targets = crate::monitoring::targets::current(&state).await?;
    let own = url_parts(&state.platform.url)
        .ok_or_else(|| ApiError::Internal(format!("cannot read this server's URL {:?}", state.platform.url)))?;
    let mut out = Vec::new();
    for t in targets.iter().filter(|t| p.job.as_deref().is_none_or(|j| t.job() == j)) {
        let mut labels = t.labels.clone();
        let (scheme, address, path) = if t.job() == "agent" {
            (own.0.clone(), own.1.clone(), format!("/api/v1/hosts/{}/metrics", t.instance()))
        } else {
            url_parts(&t.url).ok_or_else(|| ApiError::Internal(format!("target {} has an unreadable URL {:?}", t.id, t.url)))?
        };
        labels.insert("__scheme__".into(), scheme);
        labels.insert("__metrics_path__".into(), path);
        out.push(SdGroup { targets: vec![address], labels });
    }
    Ok(Json(out))
}

/// Scheme, `host:port` and path of a URL.
fn url_parts(url: &str) -> Option<(String, String, String)> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    let address = match u.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    Some((u.scheme().to_string(), address, u.path().to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_query;

    #[test]
    fn urls_split_for_discovery() {
        let p = |u: &str| super::url_parts(u).unwrap();
        assert_eq!(p("http://127.0.0.1:9/metrics"), ("http".into(), "127.0.0.1:9".into(), "/metrics".into()));
        assert_eq!(p("https://atoll.example:8443/"), ("https".into(), "atoll.example:8443".into(), "/".into()));
        assert!(super::url_parts("127.0.0.1:9").is_none());
    }

    #[test]
    fn query_strings() {
        let q =
            parse_query("metric=m&match=server%3Dorders-1&match=job!~a|b&range=15m&step=30s&fn=rate&agg=sum&by=server,host", 10_000_000)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((q.start_ms, q.end_ms, q.step_ms, q.rate), (10_000_000 - 900_000, 10_000_000, Some(30_000), true));
        assert_eq!(q.matchers.len(), 2);
        assert_eq!(q.by, vec!["server".to_string(), "host".to_string()]);
        for (bad, says) in [
            ("match=a%3D1", "metric is missing"),
            ("metric=m&match=zone", "no operator"),
            ("metric=m&range=5", "unit"),
            ("metric=m&fn=irate", "rate"),
            ("metric=m&agg=median", "median"),
            ("metric=m&by=server", "needs agg"),
            ("metric=m&start=yesterday", "unix time"),
            ("metric=m&start=-9223372036854775808", "out of range"),
            ("metric=m&end=9223372036854775807", "out of range"),
            ("metric=m&limit=5", "unknown parameter `limit`"),
        ] {
            let err = parse_query(bad, 0).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
