//! Owns what a run measured and how it is reported: outcomes go into a `Recorder`
//! (HDR histograms in microseconds, failures by kind), which ends as a `Report`
//! printed as a table or written as JSON. No I/O besides formatting.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::Mode;

/// Why a call did not count as a success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The hub answered with this HTTP status instead of a stream.
    Http(u16),
    /// The stream ended with `tool_call.error` (or an MCP result with `isError`).
    ToolError,
    /// An MCP JSON-RPC error answer.
    RpcError,
    /// No completion within the request timeout.
    Timeout,
    /// Connect, reset or other transport failure.
    Connection,
    /// An answer that is not what the protocol promises (a stream that ends without a
    /// completion, a body that is not SSE or JSON-RPC).
    Protocol,
    /// Not sent: the cap on requests in flight was reached (the generator, not the hub,
    /// was the limit; counted as a failure so the open loop stays honest).
    Dropped,
    /// Still running when the run's report was taken (past its timeout plus a
    /// margin: the machine was too loaded to even time it out).
    Unfinished,
}

impl Failure {
    pub fn label(&self) -> String {
        match self {
            Failure::Http(status) => format!("http_{status}"),
            Failure::ToolError => "tool_error".into(),
            Failure::RpcError => "rpc_error".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Connection => "connection".into(),
            Failure::Protocol => "protocol".into(),
            Failure::Dropped => "dropped".into(),
            Failure::Unfinished => "unfinished".into(),
        }
    }
}

/// A call that completed.
#[derive(Clone, Copy, Debug)]
pub struct Success {
    /// Sent -> completed.
    pub latency: Duration,
    /// Sent -> first event.
    pub first_event: Duration,
    /// Due (the schedule's time) -> completed: the latency plus any lag of the
    /// generator, so a generator that falls behind cannot hide waiting time.
    pub response: Duration,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant figures; values above are clamped.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 600_000_000)
}

/// Collects the outcomes of the measured window.
#[derive(Clone, Debug)]
pub struct Recorder {
    latency: Histogram<u64>,
    first_event: Histogram<u64>,
    response: Histogram<u64>,
    lag: Histogram<u64>,
    succeeded: u64,
    failures: BTreeMap<String, u64>,
    max_in_flight: u64,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            latency: histogram(),
            first_event: histogram(),
            response: histogram(),
            lag: histogram(),
            succeeded: 0,
            failures: BTreeMap::new(),
            max_in_flight: 0,
        }
    }
}

impl Recorder {
    pub fn success(&mut self, success: Success) {
        self.succeeded += 1;
        let _ = self.latency.record(micros(success.latency));
        let _ = self.first_event.record(micros(success.first_event));
        let _ = self.response.record(micros(success.response));
    }

    pub fn failure(&mut self, failure: &Failure) {
        *self.failures.entry(failure.label()).or_insert(0) += 1;
    }

    /// How late a request left against its schedule (the generator's own health).
    pub fn lag(&mut self, lag: Duration) {
        let _ = self.lag.record(micros(lag));
    }

    pub fn in_flight(&mut self, n: u64) {
        self.max_in_flight = self.max_in_flight.max(n);
    }

    pub fn succeeded(&self) -> u64 {
        self.succeeded
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Adds another run's outcomes (its histograms, counts and failures) to these.
    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.first_event, &other.first_event),
            (&mut self.response, &other.response),
            (&mut self.lag, &other.lag),
        ] {
            // Same bounds on both sides: adding cannot fail.
            let _ = mine.add(theirs);
        }
        self.succeeded += other.succeeded;
        for (label, n) in &other.failures {
            *self.failures.entry(label.clone()).or_insert(0) += n;
        }
        self.max_in_flight = self.max_in_flight.max(other.max_in_flight);
    }

    pub fn into_report(self, meta: RunMeta) -> Report {
        let failed = self.failed();
        let secs = meta.duration.as_secs_f64();
        Report {
            scenario: meta.scenario,
            mode: meta.mode,
            target: meta.target,
            rate_offered: meta.rate,
            warmup_s: meta.warmup.as_secs_f64(),
            duration_s: secs,
            offered: meta.offered,
            succeeded: self.succeeded,
            failed,
            failure_rate: if meta.offered == 0 {
                0.0
            } else {
                failed as f64 / meta.offered as f64
            },
            achieved_rps: if secs > 0.0 {
                self.succeeded as f64 / secs
            } else {
                0.0
            },
            failures: self.failures.clone(),
            latency_ms: Percentiles::of(&self.latency),
            first_event_ms: Percentiles::of(&self.first_event),
            response_ms: Percentiles::of(&self.response),
            schedule_lag_ms: Percentiles::of(&self.lag),
            max_in_flight: self.max_in_flight,
            timeline: Vec::new(),
            recorder: Box::new(self),
        }
    }
}

/// What the report says about the run itself.
pub struct RunMeta {
    pub scenario: String,
    pub mode: Mode,
    pub target: String,
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub offered: u64,
}

#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// Milliseconds from a microsecond histogram.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub mode: Mode,
    pub target: String,
    /// Requests per second the schedule offered.
    pub rate_offered: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Requests due in the measured window.
    pub offered: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// failed / offered.
    pub failure_rate: f64,
    /// Successes per second of the measured window.
    pub achieved_rps: f64,
    pub failures: BTreeMap<String, u64>,
    /// Send -> `tool_call.completed` (or the MCP result).
    pub latency_ms: Percentiles,
    /// Send -> first SSE event (`tool_call.started`).
    pub first_event_ms: Percentiles,
    /// Scheduled time -> completion: the latency as the open loop sees it (includes
    /// the generator's lag); the capacity bar is judged on this.
    pub response_ms: Percentiles,
    /// Scheduled time -> send; large values mean the generator, not the hub, fell behind.
    pub schedule_lag_ms: Percentiles,
    pub max_in_flight: u64,
    /// Every measured call, when the run asked for it (`RunConfig::timeline`).
    #[serde(skip)]
    pub timeline: Vec<crate::driver::Call>,
    /// What the figures were computed from, so runs can be pooled ([`Report::pooled`]).
    #[serde(skip)]
    pub recorder: Box<Recorder>,
}

impl Report {
    /// One report of several runs of the same plan at the same rate (the rounds of an
    /// interleaved comparison): counts add up, durations too, and every percentile
    /// comes from the merged histograms, not from averaging the runs' percentiles.
    /// `None` for no runs.
    pub fn pooled(runs: &[Report]) -> Option<Report> {
        let first = runs.first()?;
        let mut recorder = (*first.recorder).clone();
        for run in &runs[1..] {
            recorder.merge(&run.recorder);
        }
        Some(recorder.into_report(RunMeta {
            scenario: first.scenario.clone(),
            mode: first.mode,
            target: first.target.clone(),
            rate: first.rate_offered,
            warmup: Duration::from_secs_f64(runs.iter().map(|r| r.warmup_s).sum()),
            duration: Duration::from_secs_f64(runs.iter().map(|r| r.duration_s).sum()),
            offered: runs.iter().map(|r| r.offered).sum(),
        }))
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} ({:?}) -> {}",
            self.scenario, self.mode, self.target
        );
        let _ = writeln!(
            out,
            "offered {:.0} rps for {:.1} s (+{:.1} s warm-up): {} requests, {} succeeded, {} failed ({:.3}%), achieved {:.1} rps, max in flight {}",
            self.rate_offered,
            self.duration_s,
            self.warmup_s,
            self.offered,
            self.succeeded,
            self.failed,
            self.failure_rate * 100.0,
            self.achieved_rps,
            self.max_in_flight
        );
        if !self.failures.is_empty() {
            let kinds: Vec<String> = self
                .failures
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(out, "failures: {}", kinds.join(", "));
        }
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, p) in [
            ("latency", &self.latency_ms),
            ("first event", &self.first_event_ms),
            ("response", &self.response_ms),
            ("schedule lag", &self.schedule_lag_ms),
        ] {
            let _ = writeln!(
                out,
                "{:<16} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name, p.mean, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        out
    }
}

/// One second of a run's measured window (`mcp-loadtest run --per-second`): a stall
/// that a whole run's p99 only hints at shows up as one bad row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the start of the run (warm-up included) at which these calls were sent.
    pub second: u64,
    pub calls: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Groups `timeline` by the second each call was sent in; latency is send -> end.
pub fn per_second(timeline: &[crate::driver::Call]) -> Vec<Second> {
    let mut by_second: BTreeMap<u64, (u64, Vec<Duration>)> = BTreeMap::new();
    for call in timeline {
        let entry = by_second.entry(call.sent.as_secs()).or_default();
        if !call.ok {
            entry.0 += 1;
        }
        entry.1.push(call.ended.saturating_sub(call.sent));
    }
    by_second
        .into_iter()
        .map(|(second, (failed, mut latencies))| {
            latencies.sort_unstable();
            let at = |q: f64| nearest_rank(&latencies, q).as_secs_f64() * 1000.0;
            Second {
                second,
                calls: latencies.len() as u64,
                failed,
                p50_ms: at(0.50),
                p99_ms: at(0.99),
                max_ms: at(1.0),
            }
        })
        .collect()
}

/// The nearest-rank percentile of `sorted`: the smallest value with at least a fraction
/// `q` of the values at or below it (the default of `T` when there are none).
pub fn nearest_rank<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// The per-second rows as a table.
pub fn per_second_table(seconds: &[Second]) -> String {
    let mut out = format!(
        "{:>6} {:>7} {:>7} {:>9} {:>9} {:>9}\n",
        "second", "calls", "failed", "p50 ms", "p99 ms", "max ms"
    );
    for s in seconds {
        let _ = writeln!(
            out,
            "{:>6} {:>7} {:>7} {:>9.3} {:>9.3} {:>9.3}",
            s.second, s.calls, s.failed, s.p50_ms, s.p99_ms, s.max_ms
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(offered: u64, duration: Duration) -> RunMeta {
        RunMeta {
            scenario: "t".into(),
            mode: Mode::Call,
            target: "http://x".into(),
            rate: offered as f64 / duration.as_secs_f64(),
            warmup: Duration::ZERO,
            duration,
            offered,
        }
    }

    #[test]
    fn pooled_runs_give_the_percentiles_of_all_their_calls() {
        let run = |from: u64, to: u64, failed: u64| {
            let mut recorder = Recorder::default();
            for ms in from..=to {
                recorder.success(Success {
                    latency: Duration::from_millis(ms),
                    first_event: Duration::from_millis(1),
                    response: Duration::from_millis(ms),
                });
            }
            for _ in 0..failed {
                recorder.failure(&Failure::Timeout);
            }
            recorder.into_report(meta(to - from + 1 + failed, Duration::from_secs(5)))
        };
        // The low half in one run, the high half in the other: neither run's p50 is
        // the pooled one.
        let low = run(1, 500, 1);
        let high = run(501, 1000, 2);
        assert!((low.latency_ms.p50 - 250.0).abs() < 1.0);
        let pooled = Report::pooled(&[low, high]).expect("two runs");
        assert_eq!(pooled.latency_ms.count, 1000);
        assert_eq!(pooled.succeeded, 1000);
        assert_eq!(pooled.failed, 3);
        assert_eq!(pooled.offered, 1003);
        assert_eq!(pooled.failures.get("timeout"), Some(&3));
        assert_eq!(pooled.duration_s, 10.0);
        assert!((pooled.achieved_rps - 100.0).abs() < 1e-9);
        for (got, exact) in [
            (pooled.latency_ms.p50, 500.0),
            (pooled.latency_ms.p99, 990.0),
        ] {
            assert!((got - exact).abs() <= exact * 0.001, "{got} vs {exact}");
        }
        assert!(Report::pooled(&[]).is_none());
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut recorder = Recorder::default();
        // 1 ms .. 1000 ms, once each.
        for ms in 1..=1000u64 {
            recorder.success(Success {
                latency: Duration::from_millis(ms),
                first_event: Duration::from_micros(ms),
                response: Duration::from_millis(ms + 1),
            });
        }
        let report = recorder.into_report(meta(1000, Duration::from_secs(10)));
        let p = &report.latency_ms;
        assert_eq!(p.count, 1000);
        // HDR at 3 significant figures: within 0.1% of the exact value.
        for (got, exact) in [
            (p.p50, 500.0),
            (p.p90, 900.0),
            (p.p99, 990.0),
            (p.p999, 999.0),
            (p.max, 1000.0),
            (p.mean, 500.5),
        ] {
            assert!((got - exact).abs() <= exact * 0.001, "{got} vs {exact}");
        }
        let f = &report.first_event_ms;
        assert!((f.p50 - 0.5).abs() < 0.001, "{f:?}");
        let r = &report.response_ms;
        assert!((r.p50 - 501.0).abs() <= 0.5, "{r:?}");
        assert_eq!(report.achieved_rps, 100.0);
        assert_eq!(report.failure_rate, 0.0);
    }

    #[test]
    fn failures_are_counted_by_kind_against_what_was_offered() {
        let mut recorder = Recorder::default();
        for _ in 0..990 {
            recorder.success(Success {
                latency: Duration::from_millis(2),
                first_event: Duration::from_millis(1),
                response: Duration::from_millis(2),
            });
        }
        for failure in [
            Failure::Http(503),
            Failure::Http(503),
            Failure::Http(400),
            Failure::ToolError,
            Failure::Timeout,
            Failure::Connection,
            Failure::Protocol,
            Failure::RpcError,
            Failure::Dropped,
            Failure::Unfinished,
        ] {
            recorder.failure(&failure);
        }
        let report = recorder.into_report(meta(1000, Duration::from_secs(5)));
        assert_eq!(report.succeeded, 990);
        assert_eq!(report.failed, 10);
        assert!((report.failure_rate - 0.01).abs() < 1e-12);
        assert_eq!(report.achieved_rps, 198.0);
        assert_eq!(report.failures["http_503"], 2);
        assert_eq!(report.failures["dropped"], 1);
        assert_eq!(report.failures["unfinished"], 1);
        assert_eq!(report.failures.len(), 9);
        let table = report.table();
        assert!(
            table.contains("990 succeeded, 10 failed (1.000%)"),
            "{table}"
        );
        assert!(table.contains("http_503: 2"), "{table}");
        let json: serde_json::Value = serde_json::to_value(&report).expect("json");
        assert_eq!(json["latency_ms"]["p50"], 2.0);
        assert_eq!(json["mode"], "call");
    }

    #[test]
    fn an_empty_run_reports_zeros_not_nan() {
        let report = Recorder::default().into_report(meta(0, Duration::from_secs(1)));
        assert_eq!(report.failure_rate, 0.0);
        assert_eq!(report.latency_ms, Percentiles::default());
        assert!(serde_json::to_string(&report).is_ok());
    }
    #[test]
    fn per_second_groups_calls_by_the_second_they_were_sent() {
        let call = |sent_ms: u64, took_ms: u64, ok: bool| crate::driver::Call {
            sent: Duration::from_millis(sent_ms),
            ended: Duration::from_millis(sent_ms + took_ms),
            ok,
        };
        // Second 0: latencies 1..=100 ms, one failure; second 2: one slow call (second 1 empty).
        let mut timeline: Vec<_> = (1..=100).map(|i| call(i * 5, i, i != 7)).collect();
        timeline.push(call(2_100, 250, true));
        let rows = per_second(&timeline);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].second, rows[0].calls, rows[0].failed), (0, 100, 1));
        assert_eq!(
            (rows[0].p50_ms, rows[0].p99_ms, rows[0].max_ms),
            (50.0, 99.0, 100.0)
        );
        assert_eq!((rows[1].second, rows[1].calls, rows[1].failed), (2, 1, 0));
        assert_eq!(
            (rows[1].p50_ms, rows[1].p99_ms, rows[1].max_ms),
            (250.0, 250.0, 250.0)
        );
        assert!(per_second_table(&rows).lines().count() == 3);
    }
}
