//! Owns `GET /api/metrics`: the gateway's Prometheus metrics
//! (`MCP_ADMIN_GATEWAY_METRICS_URL`) read server-side and summed per server, as JSON
//! for the dashboard: requests, calls, errors by code and call latency (mean and
//! quantiles from the histogram's buckets). Counters are cumulative since the gateway
//! started; a rate is the difference of two reads. An unreachable gateway is an answer
//! (`available: false`), not an error: the console keeps showing the registry.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::prometheus_text::{self, Sample};
use crate::AppState;

/// The largest metrics page read (it grows with the number of servers).
const MAX_METRICS_BYTES: usize = 16 * 1024 * 1024;
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the gateway's metrics are and the client that reads them (its own
/// connection pool, no proxy from the environment).
#[derive(Clone, Debug)]
pub struct MetricsSource {
    pub url: url::Url,
    client: reqwest::Client,
}

impl MetricsSource {
    pub fn new(url: url::Url) -> anyhow::Result<MetricsSource> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(SCRAPE_TIMEOUT)
            .build()?;
        Ok(MetricsSource { url, client })
    }

    async fn scrape(&self) -> Result<String, String> {
        let response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|err| format!("the gateway's metrics did not answer: {err}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "the gateway's metrics answered HTTP {}",
                response.status().as_u16()
            ));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_METRICS_BYTES as u64)
        {
            return Err("the gateway's metrics page is too large".into());
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|err| format!("reading the gateway's metrics: {err}"))?;
        if bytes.len() > MAX_METRICS_BYTES {
            return Err("the gateway's metrics page is too large".into());
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| "the gateway's metrics are not UTF-8".into())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsView {
    /// False when the gateway's metrics could not be read; `error` says why.
    pub available: bool,
    /// The URL read.
    pub source: String,
    /// Unix time in milliseconds of the read.
    pub scraped_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub totals: Counts,
    /// One entry per server the gateway has seen, ordered by id.
    pub servers: Vec<ServerMetrics>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Every request of the server's routes (calls, tools/list, MCP...).
    pub requests: u64,
    /// Tool calls (`/mcp/{id}/{tool}` and the compatibility call routes).
    pub calls: u64,
    /// Error answers and failed streams.
    pub errors: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerMetrics {
    pub server_id: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Errors by HTTP status code (`200` counts a stream that ended in an error).
    pub errors_by_code: BTreeMap<String, u64>,
    /// Latency of tool calls, to the end of the response.
    pub latency: Latency,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// Calls, errors and latency per server, from the gateway's metrics.
#[utoipa::path(get, path = "/api/metrics", operation_id = "getMetrics", tag = "runtime",
    responses((status = 200, body = MetricsView, description = "per-server figures; `available: false` when the gateway's metrics cannot be read")))]
pub async fn get(State(state): State<AppState>) -> Json<MetricsView> {
    let source = &state.metrics;
    let scraped_at = mcp_core::runtime::unix_millis();
    let result = source
        .scrape()
        .await
        .and_then(|text| prometheus_text::parse(&text).map_err(|err| err.to_string()));
    let mut view = match result {
        Ok(samples) => summarize(&samples),
        Err(error) => MetricsView {
            error: Some(error),
            ..MetricsView::default()
        },
    };
    view.source = source.url.to_string();
    view.scraped_at = scraped_at;
    Json(view)
}

/// Sums the gateway's samples per server. Samples without a server (`-`) are left out.
pub fn summarize(samples: &[Sample]) -> MetricsView {
    #[derive(Default)]
    struct Histogram {
        buckets: Vec<(f64, f64)>,
        sum: f64,
        count: f64,
    }
    let mut servers: BTreeMap<String, (ServerMetrics, Histogram)> = BTreeMap::new();
    for sample in samples {
        let Some(server) = sample
            .label("server")
            .filter(|s| *s != "-" && !s.is_empty())
        else {
            continue;
        };
        let count = if sample.value.is_finite() && sample.value > 0.0 {
            sample.value as u64
        } else {
            0
        };
        let (metrics, histogram) = servers.entry(server.to_owned()).or_insert_with(|| {
            (
                ServerMetrics {
                    server_id: server.to_owned(),
                    ..ServerMetrics::default()
                },
                Histogram::default(),
            )
        });
        let is_call = sample.label("route") == Some("call");
        match sample.name.as_str() {
            "mcp_gateway_requests_total" => {
                metrics.counts.requests += count;
                if is_call {
                    metrics.counts.calls += count;
                }
            }
            "mcp_gateway_errors_total" => {
                metrics.counts.errors += count;
                let code = sample.label("code").unwrap_or("unknown").to_owned();
                *metrics.errors_by_code.entry(code).or_default() += count;
            }
            "mcp_gateway_request_duration_seconds_bucket" if is_call => {
                if let Some(le) = sample.label("le").and_then(parse_bound) {
                    histogram.buckets.push((le, sample.value));
                }
            }
            "mcp_gateway_request_duration_seconds_sum" if is_call => histogram.sum += sample.value,
            "mcp_gateway_request_duration_seconds_count" if is_call => {
                histogram.count += sample.value
            }
            _ => {}
        }
    }
    let mut view = MetricsView {
        available: true,
        ..MetricsView::default()
    };
    for (_, (mut metrics, mut histogram)) in servers {
        histogram
            .buckets
            .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let count = histogram.count.max(0.0) as u64;
        metrics.latency = Latency {
            count,
            mean_ms: (count > 0).then(|| histogram.sum / histogram.count * 1000.0),
            p50_ms: quantile(0.5, &histogram.buckets).map(|s| s * 1000.0),
            p95_ms: quantile(0.95, &histogram.buckets).map(|s| s * 1000.0),
            p99_ms: quantile(0.99, &histogram.buckets).map(|s| s * 1000.0),
        };
        view.totals.requests += metrics.counts.requests;
        view.totals.calls += metrics.counts.calls;
        view.totals.errors += metrics.counts.errors;
        view.servers.push(metrics);
    }
    view
}

fn parse_bound(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => text.parse().ok(),
    }
}

/// The `q` quantile of cumulative `buckets` (upper bound, count), sorted by bound, as
/// Prometheus' `histogram_quantile` estimates it: linear within the bucket that holds
/// the rank; the highest finite bound when the rank falls in `+Inf`.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, cumulative) in buckets {
        if cumulative >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = cumulative - lower.1;
            if in_bucket <= 0.0 {
                return Some(bound);
            }
            return Some(lower.0 + (bound - lower.0) * (rank - lower.1) / in_bucket);
        }
        lower = (bound, cumulative);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let buckets = [
            (0.001, 0.0),
            (0.01, 50.0),
            (0.1, 100.0),
            (f64::INFINITY, 100.0),
        ];
        let check = |q: f64, expected: f64| {
            let got = quantile(q, &buckets).expect("a quantile");
            assert!((got - expected).abs() < 1e-9, "q {q}: {got} != {expected}");
        };
        check(0.5, 0.01);
        check(0.25, 0.001 + 0.009 * 0.5);
        check(0.75, 0.01 + 0.09 * 0.5);
        assert_eq!(quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
        assert_eq!(
            quantile(0.99, &[(0.5, 1.0), (f64::INFINITY, 100.0)]),
            Some(0.5)
        );
        assert_eq!(quantile(0.5, &[]), None);
    }

    #[test]
    fn sums_per_server() {
        let text = "\
mcp_gateway_requests_total{route=\"call\",server=\"a\",status=\"200\"} 8
mcp_gateway_requests_total{route=\"call\",server=\"a\",status=\"400\"} 2
mcp_gateway_requests_total{route=\"tools_list\",server=\"a\",status=\"200\"} 1
mcp_gateway_requests_total{route=\"health\",server=\"-\",status=\"200\"} 5
mcp_gateway_errors_total{code=\"400\",server=\"a\"} 2
mcp_gateway_errors_total{code=\"404\",server=\"-\"} 9
mcp_gateway_request_duration_seconds_bucket{route=\"call\",server=\"a\",le=\"0.001\"} 0
mcp_gateway_request_duration_seconds_bucket{route=\"call\",server=\"a\",le=\"0.01\"} 10
mcp_gateway_request_duration_seconds_bucket{route=\"call\",server=\"a\",le=\"+Inf\"} 10
mcp_gateway_request_duration_seconds_sum{route=\"call\",server=\"a\"} 0.05
mcp_gateway_request_duration_seconds_count{route=\"call\",server=\"a\"} 10
mcp_gateway_request_duration_seconds_count{route=\"tools_list\",server=\"a\"} 1
";
        let view = summarize(&prometheus_text::parse(text).expect("parses"));
        assert!(view.available);
        assert_eq!(
            view.totals,
            Counts {
                requests: 11,
                calls: 10,
                errors: 2
            }
        );
        assert_eq!(view.servers.len(), 1);
        let a = &view.servers[0];
        assert_eq!(a.server_id, "a");
        assert_eq!(a.errors_by_code, BTreeMap::from([("400".to_owned(), 2)]));
        assert_eq!(a.latency.count, 10);
        assert!((a.latency.mean_ms.expect("mean") - 5.0).abs() < 1e-9);
        assert!((a.latency.p50_ms.expect("p50") - 5.5).abs() < 1e-9);
    }
}
