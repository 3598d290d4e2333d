//! Owns the open-loop arrival schedule: request `k` is due at `k / rate` seconds after
//! the start, whatever happened to the requests before it, so a slow hub cannot lower
//! the offered load and hide its latency. Pure arithmetic, in integer nanoseconds so
//! long runs do not drift.

use std::time::Duration;

/// A constant-rate schedule split into a warm-up (sent, not recorded) and a measured
/// window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Requests per second; finite and > 0 (checked by [`Schedule::new`]).
    rate: f64,
    warmup: Duration,
    duration: Duration,
}

impl Schedule {
    pub fn new(rate: f64, warmup: Duration, duration: Duration) -> Result<Schedule, String> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("rate must be a positive number, not {rate}"));
        }
        if duration.is_zero() {
            return Err("duration must be more than 0".into());
        }
        Ok(Schedule {
            rate,
            warmup,
            duration,
        })
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn warmup(&self) -> Duration {
        self.warmup
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// When request `k` (0-based) is due, counted from the start of the run.
    pub fn due(&self, k: u64) -> Duration {
        let nanos = (k as f64) * 1e9 / self.rate;
        Duration::from_nanos(nanos.round() as u64)
    }

    /// How many requests are due strictly before `t`: the smallest `k` with
    /// `due(k) >= t`.
    pub fn count_before(&self, t: Duration) -> u64 {
        let mut k = (t.as_secs_f64() * self.rate).ceil() as u64;
        // Correct the float estimate against `due` itself, so the two always agree.
        while k > 0 && self.due(k - 1) >= t {
            k -= 1;
        }
        while self.due(k) < t {
            k += 1;
        }
        k
    }

    /// Total requests of the run (warm-up and measured).
    pub fn total(&self) -> u64 {
        self.count_before(self.warmup + self.duration)
    }

    /// Requests of the warm-up; request `k` is measured when `k >= first_measured()`.
    pub fn first_measured(&self) -> u64 {
        self.count_before(self.warmup)
    }

    /// Requests in the measured window (what "offered" counts).
    pub fn measured(&self) -> u64 {
        self.total() - self.first_measured()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(rate: f64, warmup_ms: u64, duration_ms: u64) -> Schedule {
        Schedule::new(
            rate,
            Duration::from_millis(warmup_ms),
            Duration::from_millis(duration_ms),
        )
        .expect("valid schedule")
    }

    #[test]
    fn arrivals_are_evenly_spaced_from_zero() {
        let s = schedule(200.0, 0, 1000);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(5));
        assert_eq!(s.due(200), Duration::from_secs(1));
        let s = schedule(3.0, 0, 1000);
        assert_eq!(s.due(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.due(2), Duration::from_nanos(666_666_667));
    }

    #[test]
    fn counts_split_warmup_and_measured_window() {
        let s = schedule(200.0, 1000, 5000);
        assert_eq!(s.total(), 1200);
        assert_eq!(s.first_measured(), 200);
        assert_eq!(s.measured(), 1000);
        assert!(s.due(s.first_measured()) >= s.warmup());
        assert!(s.due(s.first_measured() - 1) < s.warmup());
        assert!(s.due(s.total() - 1) < s.warmup() + s.duration());
    }

    #[test]
    fn fractional_rates_count_every_due_request_once() {
        for (rate, ms) in [(0.5, 10_000), (7.0, 1000), (333.3, 2500), (5000.0, 60_000)] {
            let s = schedule(rate, 0, ms);
            let n = s.total();
            assert!(s.due(n - 1) < s.duration(), "rate {rate}");
            assert!(s.due(n) >= s.duration(), "rate {rate}");
            let expected = (rate * ms as f64 / 1000.0).ceil() as u64;
            assert_eq!(n, expected, "rate {rate}");
        }
    }

    #[test]
    fn a_long_run_does_not_drift() {
        let s = schedule(4999.0, 0, 3_600_000);
        let k = 4999 * 3600;
        assert_eq!(s.due(k), Duration::from_secs(3600));
    }

    #[test]
    fn bad_rates_are_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Schedule::new(rate, Duration::ZERO, Duration::from_secs(1)).is_err());
        }
        assert!(Schedule::new(1.0, Duration::ZERO, Duration::ZERO).is_err());
    }
}
