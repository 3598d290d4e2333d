//! Owns the decisions of retries and of the circuit breaker, as pure state machines: no
//! I/O, no sleeps, and the time always passed in (`now`), so tests drive them with a
//! made-up clock. The HTTP adapter ([`crate::http`]) asks them before and after each
//! attempt and does the waiting and the logging.
//!
//! - [`RetryPolicy`]: a server's `retry` merged with the tool's override; which failures
//!   and methods are retried, and the back-off (exponential, with jitter, at least the
//!   `Retry-After` the REST API asked for, never past the call's deadline).
//! - [`Budget`]: at most `budgetPercent` retries per hundred first attempts, plus a
//!   reserve, so retries cannot multiply the load on a REST API that is down.
//! - [`Breaker`]: closed -> open after N consecutive failed attempts -> half-open (one
//!   probe) after the cool-down -> closed on success, open again on failure.
//! - [`Guards`]: one [`Guard`] (budget, breaker, counters) per server, kept across
//!   registry reloads.
//!
//! The happy path costs atomic loads: no lock and no allocation per call while nothing
//! fails (the budget's deposit stops once it is full; the breaker's failure count is
//! written only when it is not zero). A server with neither `retry` nor
//! `circuitBreaker` never gets here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use mcp_core::model::{CircuitBreakerConfig, HttpMethod, RetryConfig, ServerConfig, ToolBinding};

/// A failed attempt, as the retry and breaker decisions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The TCP (or TLS) connection could not be made: the request was never sent.
    Connect,
    /// The attempt did not finish in time.
    Timeout,
    /// The REST API answered this status (>= 400).
    Status(u16),
    /// Anything else (a broken connection, a bad response...): never retried.
    Other,
}

impl Failure {
    /// Connect errors, timeouts and 502/503/504 may be tried again.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Failure::Connect | Failure::Timeout | Failure::Status(502..=504)
        )
    }

    /// What the breaker counts as the REST API failing: it could not be reached, did not
    /// answer in time, broke the connection, or answered 5xx. A 4xx is the caller's.
    pub fn counts_for_breaker(self) -> bool {
        match self {
            Failure::Connect | Failure::Timeout | Failure::Other => true,
            Failure::Status(status) => status >= 500,
        }
    }

    /// Where a retry of this failure is counted: its index in
    /// [`mcp_core::runtime::RetriesByReason::REASONS`] (`connect`, `timeout`,
    /// `status_502`, `status_503`, `status_504`); `None` for a failure never retried.
    pub fn retry_reason(self) -> Option<usize> {
        match self {
            Failure::Connect => Some(0),
            Failure::Timeout => Some(1),
            Failure::Status(status @ 502..=504) => Some(usize::from(status - 500)),
            Failure::Status(_) | Failure::Other => None,
        }
    }

    /// For the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Status(_) => "status",
            Failure::Other => "other",
        }
    }
}

/// The retry settings of one call: the tool's `retry` over the server's over the
/// defaults. `None` from [`RetryPolicy::of`] when neither configures retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub budget_percent: u32,
    /// Time allowed for one attempt, when shorter than the call's timeout.
    pub attempt_timeout: Option<Duration>,
    /// Whether this tool's method may be repeated.
    pub repeatable: bool,
}

/// Why a failed attempt is not tried again (the `reason` of `tool.http.retry.skipped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRetry {
    /// Not a connect error, timeout or 502/503/504.
    NotRetryable,
    /// POST or PATCH without `idempotent: true`, or `idempotent: false`.
    NotRepeatable,
    /// `maxAttempts` reached.
    Exhausted,
    /// The back-off (or `Retry-After`) does not fit before the call's deadline.
    NoTimeLeft,
    /// The retry budget is spent.
    Budget,
    /// The breaker opened (this attempt's failure may have opened it).
    CircuitOpen,
}

impl NoRetry {
    pub fn as_str(self) -> &'static str {
        match self {
            NoRetry::NotRetryable => "not_retryable",
            NoRetry::NotRepeatable => "not_idempotent",
            NoRetry::Exhausted => "attempts_exhausted",
            NoRetry::NoTimeLeft => "no_time_left",
            NoRetry::Budget => "budget_spent",
            NoRetry::CircuitOpen => "circuit_open",
        }
    }
}

impl RetryPolicy {
    /// The policy of `tool` on `server`; `None` (no retries) when neither has `retry`.
    pub fn of(server: &ServerConfig, tool: &ToolBinding) -> Option<RetryPolicy> {
        let merged = match (tool.retry, server.retry) {
            (None, None) => return None,
            (Some(tool), Some(server)) => tool.or(server),
            (Some(one), None) | (None, Some(one)) => one,
        };
        Some(RetryPolicy::from_config(merged, tool.method))
    }

    pub fn from_config(config: RetryConfig, method: HttpMethod) -> RetryPolicy {
        let safe_method = matches!(
            method,
            HttpMethod::Get | HttpMethod::Put | HttpMethod::Delete
        );
        let base_delay = Duration::from_millis(
            config
                .base_delay_ms
                .unwrap_or(RetryConfig::DEFAULT_BASE_DELAY_MS),
        );
        RetryPolicy {
            max_attempts: config
                .max_attempts
                .unwrap_or(RetryConfig::DEFAULT_MAX_ATTEMPTS)
                .max(1),
            base_delay,
            max_delay: Duration::from_millis(
                config
                    .max_delay_ms
                    .unwrap_or(RetryConfig::DEFAULT_MAX_DELAY_MS),
            )
            .max(base_delay),
            budget_percent: config
                .budget_percent
                .unwrap_or(RetryConfig::DEFAULT_BUDGET_PERCENT),
            attempt_timeout: config.attempt_timeout_ms.map(Duration::from_millis),
            repeatable: config.idempotent.unwrap_or(safe_method),
        }
    }

    /// The back-off before retry number `retry` (1 = the first retry): half of
    /// `base * 2^(retry-1)` (capped at `max_delay`) plus a random part of the other half
    /// from `jitter` ("equal jitter": never zero, spread so clients do not retry in step).
    pub fn backoff(&self, retry: u32, jitter: u64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_delay);
        let half = exp / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        let extra = if spread == 0 {
            0
        } else {
            jitter % (spread.saturating_add(1))
        };
        half + Duration::from_micros(extra)
    }

    /// Whether the attempt number `attempts` (1 = the first) that failed with `failure`
    /// is tried again, and after how long: the back-off, or the REST API's
    /// `Retry-After` when longer; refused when that wait would end past `remaining` (the
    /// time left before the call's deadline). Does not touch the budget: the caller
    /// takes a token ([`Budget::try_spend`]) only once this says yes.
    pub fn decide(
        &self,
        attempts: u32,
        failure: Failure,
        retry_after: Option<Duration>,
        remaining: Duration,
        jitter: u64,
    ) -> Result<Duration, NoRetry> {
        if !failure.is_retryable() {
            return Err(NoRetry::NotRetryable);
        }
        if !self.repeatable {
            return Err(NoRetry::NotRepeatable);
        }
        if attempts >= self.max_attempts {
            return Err(NoRetry::Exhausted);
        }
        let wait = self
            .backoff(attempts, jitter)
            .max(retry_after.unwrap_or_default());
        // Waiting until the deadline leaves nothing for the attempt itself.
        if wait >= remaining {
            return Err(NoRetry::NoTimeLeft);
        }
        Ok(wait)
    }
}

/// `Retry-After` in delta-seconds (`Retry-After: 2`) or as an HTTP date (any of the
/// three forms RFC 9110 has recipients accept, e.g. `Wed, 21 Oct 2015 07:28:00 GMT`), as
/// a wait from `now`; a date already past is no wait; anything else is `None` (the
/// back-off applies).
pub fn parse_retry_after(value: &[u8], now: std::time::SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The retry budget of one server: a balance in hundredths of a retry. Each first
/// attempt deposits `budgetPercent`, each retry costs 100, the balance never exceeds
/// [`Budget::RESERVE`] retries (so after a quiet time a short burst of retries is
/// allowed), and a retry is refused when the balance cannot pay for it.
#[derive(Debug)]
pub struct Budget {
    balance: AtomicI64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            balance: AtomicI64::new(Budget::CAP),
        }
    }
}

impl Budget {
    /// Retries the balance can hold.
    pub const RESERVE: i64 = 10;
    const CAP: i64 = Budget::RESERVE * 100;

    /// A first attempt: adds `percent` hundredths, up to the cap. Full (the happy path
    /// after a quiet time): one load, no write.
    pub fn deposit(&self, percent: u32) {
        if percent == 0 || self.balance.load(Ordering::Relaxed) >= Budget::CAP {
            return;
        }
        let before = self
            .balance
            .fetch_add(i64::from(percent), Ordering::Relaxed);
        if before + i64::from(percent) > Budget::CAP {
            // A race past the cap is clipped back.
            let _ = self.balance.fetch_min(Budget::CAP, Ordering::Relaxed);
        }
    }

    /// Takes one retry's worth; false (nothing taken) when the balance is short.
    pub fn try_spend(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= 100).then_some(b - 100)
            })
            .is_ok()
    }

    /// Retries the balance can pay for now.
    pub fn available(&self) -> i64 {
        self.balance.load(Ordering::Relaxed) / 100
    }
}

/// The breaker's state, as the logs, `/healthz` and the runtime record name it.
pub use mcp_core::runtime::BreakerState;

fn state_from_u8(raw: u8) -> BreakerState {
    match raw {
        1 => BreakerState::Open,
        2 => BreakerState::HalfOpen,
        _ => BreakerState::Closed,
    }
}

fn state_as_u8(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

/// A change of the breaker's state, for the caller to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    /// Consecutive failures when it happened.
    pub failures: u32,
}

/// What the breaker says to an attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go.
    Pass,
    /// The half-open probe: go, and the result decides ([`Breaker::record`] with
    /// `probe: true`). The transition to half-open is in it for the log.
    Probe(Transition),
    /// Open (or a probe is out): fail fast; the cool-down ends in this long.
    Reject { retry_in: Duration, failures: u32 },
}

/// One server's circuit breaker. Times are milliseconds since `epoch` (its creation),
/// always passed in as an `Instant`.
#[derive(Debug)]
pub struct Breaker {
    epoch: Instant,
    state: AtomicU8,
    failures: AtomicU32,
    /// When it opened (or when the last probe failed), ms since `epoch`.
    opened_at: AtomicU64,
    /// A probe is out (half-open lets one call through at a time).
    probing: AtomicBool,
}

impl Breaker {
    pub fn new(epoch: Instant) -> Breaker {
        Breaker {
            epoch,
            state: AtomicU8::new(state_as_u8(BreakerState::Closed)),
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn state(&self) -> BreakerState {
        state_from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether an attempt may go now. Closed: one load.
    pub fn admit(&self, config: &CircuitBreakerConfig, now: Instant) -> Admission {
        let state = self.state();
        if state == BreakerState::Closed {
            return Admission::Pass;
        }
        let cool_down = config.cool_down_ms();
        let elapsed = self
            .ms(now)
            .saturating_sub(self.opened_at.load(Ordering::Acquire));
        let failures = self.failures();
        if state == BreakerState::Open && elapsed >= cool_down {
            let won = self
                .state
                .compare_exchange(
                    state_as_u8(BreakerState::Open),
                    state_as_u8(BreakerState::HalfOpen),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
            if won {
                self.probing.store(true, Ordering::Release);
                return Admission::Probe(Transition {
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                    failures,
                });
            }
        }
        Admission::Reject {
            retry_in: Duration::from_millis(cool_down.saturating_sub(elapsed)),
            failures,
        }
    }

    /// Records an attempt's result (`failure: None` is a success; a failure that does
    /// not count for the breaker counts as a success). Returns the transition, if any.
    pub fn record(
        &self,
        config: &CircuitBreakerConfig,
        failure: Option<Failure>,
        probe: bool,
        now: Instant,
    ) -> Option<Transition> {
        let failed = failure.is_some_and(Failure::counts_for_breaker);
        if !failed {
            // The happy path: a load, and a write only after failures.
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            if probe {
                self.probing.store(false, Ordering::Release);
                self.state
                    .store(state_as_u8(BreakerState::Closed), Ordering::Release);
                return Some(Transition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                    failures: 0,
                });
            }
            return None;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if probe {
            self.opened_at.store(self.ms(now), Ordering::Release);
            self.probing.store(false, Ordering::Release);
            self.state
                .store(state_as_u8(BreakerState::Open), Ordering::Release);
            return Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open,
                failures,
            });
        }
        if failures >= config.failure_threshold() && self.state() == BreakerState::Closed {
            self.opened_at.store(self.ms(now), Ordering::Release);
            let opened = self
                .state
                .compare_exchange(
                    state_as_u8(BreakerState::Closed),
                    state_as_u8(BreakerState::Open),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
            if opened {
                return Some(Transition {
                    from: BreakerState::Closed,
                    to: BreakerState::Open,
                    failures,
                });
            }
        }
        None
    }

    /// A probe that ended with no verdict (the caller went away, the request could not
    /// be built): back to open with the cool-down already over, so the next call probes.
    pub fn abandon_probe(&self, config: &CircuitBreakerConfig, now: Instant) {
        if self.probing.swap(false, Ordering::AcqRel) {
            let opened_at = self.ms(now).saturating_sub(config.cool_down_ms());
            self.opened_at.store(opened_at, Ordering::Release);
            self.state
                .store(state_as_u8(BreakerState::Open), Ordering::Release);
        }
    }
}

/// The retry budget and the breaker of one server, kept across registry reloads, with
/// its counters (the worker shows them in `/healthz`).
#[derive(Debug)]
pub struct Guard {
    pub budget: Budget,
    pub breaker: Breaker,
    /// Retries made.
    pub retries: AtomicU64,
    /// The same by reason, in the order of
    /// [`mcp_core::runtime::RetriesByReason::REASONS`] ([`Guard::count_retry`]).
    pub retries_by_reason: [AtomicU64; 5],
    /// Retries refused because the budget was spent.
    pub budget_refusals: AtomicU64,
    /// Calls failed fast by the open breaker.
    pub rejected: AtomicU64,
    /// Times the breaker opened (from closed or after a failed probe).
    pub opened: AtomicU64,
}

impl Guard {
    pub fn new(epoch: Instant) -> Guard {
        Guard {
            budget: Budget::default(),
            breaker: Breaker::new(epoch),
            retries: AtomicU64::new(0),
            retries_by_reason: Default::default(),
            budget_refusals: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        }
    }

    /// A retry of an attempt that failed with `failure` is made: counted in all and by
    /// its reason.
    pub fn count_retry(&self, failure: Failure) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = failure
            .retry_reason()
            .and_then(|i| self.retries_by_reason.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn by_reason(&self) -> mcp_core::runtime::RetriesByReason {
        mcp_core::runtime::RetriesByReason::from_counts(
            self.retries_by_reason
                .each_ref()
                .map(|c| c.load(Ordering::Relaxed)),
        )
    }

    /// The breaker's state and the counters, as the runtime record holds them.
    pub fn snapshot(&self) -> mcp_core::runtime::Resilience {
        mcp_core::runtime::Resilience {
            state: self.breaker.state(),
            consecutive_failures: self.breaker.failures(),
            retries: self.retries.load(Ordering::Relaxed),
            retries_by_reason: self.by_reason(),
            retries_refused_by_budget: self.budget_refusals.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            opened: self.opened.load(Ordering::Relaxed),
        }
    }

    /// The breaker's state and the counters, as `/healthz` shows them.
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "state": self.breaker.state(),
            "consecutive_failures": self.breaker.failures(),
            "retries": self.retries.load(Ordering::Relaxed),
            "retries_by_reason": self.by_reason(),
            "retries_refused_by_budget": self.budget_refusals.load(Ordering::Relaxed),
            "rejected": self.rejected.load(Ordering::Relaxed),
            "opened": self.opened.load(Ordering::Relaxed),
        })
    }
}

/// The [`Guard`] of each server this process calls. A worker calls one server: its
/// guard is found with one string comparison and no lock; the gateway's rollback mode
/// (many servers) looks the others up in a map under a read lock.
#[derive(Debug, Default)]
pub struct Guards {
    first: OnceLock<(String, Arc<Guard>)>,
    others: RwLock<HashMap<String, Arc<Guard>>>,
}

impl Guards {
    pub fn get(&self, server_id: &str) -> Arc<Guard> {
        let (id, guard) = self
            .first
            .get_or_init(|| (server_id.to_owned(), Arc::new(Guard::new(Instant::now()))));
        if id == server_id {
            return Arc::clone(guard);
        }
        if let Some(guard) = self
            .others
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(server_id)
        {
            return Arc::clone(guard);
        }
        let mut others = self
            .others
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            others
                .entry(server_id.to_owned())
                .or_insert_with(|| Arc::new(Guard::new(Instant::now()))),
        )
    }

    /// The guard of `server_id` if a guarded call has created it.
    pub fn find(&self, server_id: &str) -> Option<Arc<Guard>> {
        match self.first.get() {
            Some((id, guard)) if id == server_id => Some(Arc::clone(guard)),
            _ => self
                .others
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(server_id)
                .cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(json: serde_json::Value, method: HttpMethod) -> RetryPolicy {
        RetryPolicy::from_config(serde_json::from_value(json).expect("retry"), method)
    }

    const LOTS: Duration = Duration::from_secs(60);

    #[test]
    fn only_connect_errors_timeouts_and_502_503_504_are_retried() {
        let p = policy(json!({}), HttpMethod::Get);
        for failure in [
            Failure::Connect,
            Failure::Timeout,
            Failure::Status(502),
            Failure::Status(503),
            Failure::Status(504),
        ] {
            assert!(p.decide(1, failure, None, LOTS, 0).is_ok(), "{failure:?}");
        }
        for failure in [
            Failure::Status(500),
            Failure::Status(501),
            Failure::Status(429),
            Failure::Status(404),
            Failure::Other,
        ] {
            assert_eq!(
                p.decide(1, failure, None, LOTS, 0),
                Err(NoRetry::NotRetryable),
                "{failure:?}"
            );
        }
    }

    #[test]
    fn post_and_patch_are_retried_only_when_the_tool_says_so() {
        for method in [HttpMethod::Get, HttpMethod::Put, HttpMethod::Delete] {
            assert!(policy(json!({}), method).repeatable, "{method}");
        }
        for method in [HttpMethod::Post, HttpMethod::Patch] {
            let p = policy(json!({}), method);
            assert_eq!(
                p.decide(1, Failure::Connect, None, LOTS, 0),
                Err(NoRetry::NotRepeatable)
            );
            assert!(policy(json!({"idempotent": true}), method).repeatable);
        }
        assert!(!policy(json!({"idempotent": false}), HttpMethod::Get).repeatable);
    }

    #[test]
    fn the_tool_overrides_the_server_field_by_field_and_no_config_means_no_retries() {
        let server: ServerConfig = serde_json::from_value(json!({
            "baseUrl": "http://x", "retry": {"maxAttempts": 4, "baseDelayMs": 10}
        }))
        .expect("server");
        let mut tool: ToolBinding =
            serde_json::from_value(json!({"name": "t", "method": "POST"})).expect("tool");
        let p = RetryPolicy::of(&server, &tool).expect("a policy");
        assert_eq!((p.max_attempts, p.repeatable), (4, false));
        tool.retry = Some(RetryConfig {
            idempotent: Some(true),
            max_attempts: Some(2),
            ..RetryConfig::default()
        });
        let p = RetryPolicy::of(&server, &tool).expect("a policy");
        assert_eq!(
            (p.max_attempts, p.repeatable, p.base_delay),
            (2, true, Duration::from_millis(10))
        );
        let plain: ServerConfig =
            serde_json::from_value(json!({"baseUrl": "http://x"})).expect("server");
        tool.retry = None;
        assert_eq!(RetryPolicy::of(&plain, &tool), None);
    }

    #[test]
    fn attempts_stop_at_max_attempts() {
        let p = policy(json!({"maxAttempts": 3}), HttpMethod::Get);
        assert!(p.decide(1, Failure::Connect, None, LOTS, 0).is_ok());
        assert!(p.decide(2, Failure::Connect, None, LOTS, 0).is_ok());
        assert_eq!(
            p.decide(3, Failure::Connect, None, LOTS, 0),
            Err(NoRetry::Exhausted)
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_within_bounds_and_is_capped() {
        let p = policy(
            json!({"baseDelayMs": 100, "maxDelayMs": 1000}),
            HttpMethod::Get,
        );
        for (retry, full_ms) in [
            (1u32, 100u64),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            let full = Duration::from_millis(full_ms);
            assert_eq!(
                p.backoff(retry, 0),
                full / 2,
                "retry {retry}: half is fixed"
            );
            for jitter in [1, 12345, 987_654_321, u64::MAX] {
                let d = p.backoff(retry, jitter);
                assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
            }
        }
        assert_ne!(p.backoff(3, 7), p.backoff(3, 99_999), "the jitter spreads");
    }

    #[test]
    fn retry_after_is_honoured_but_never_past_the_deadline() {
        let p = policy(json!({"baseDelayMs": 10}), HttpMethod::Get);
        let asked = Some(Duration::from_secs(2));
        assert_eq!(
            p.decide(1, Failure::Status(503), asked, Duration::from_secs(5), 0),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            p.decide(1, Failure::Status(503), asked, Duration::from_secs(2), 0),
            Err(NoRetry::NoTimeLeft),
            "capped by the call's timeout"
        );
        // A shorter Retry-After than the back-off waits the back-off.
        let wait = p
            .decide(1, Failure::Status(503), Some(Duration::ZERO), LOTS, 0)
            .expect("retried");
        assert_eq!(wait, Duration::from_millis(5));
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 07:28:00
        assert_eq!(parse_retry_after(b" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(b"Wed, 21 Oct 2015 07:28:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after(b"Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past is no wait"
        );
        let epoch = std::time::UNIX_EPOCH;
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT", epoch),
            Some(Duration::from_secs(784_111_777))
        );
        assert_eq!(
            parse_retry_after(b"Thu, 29 Feb 2024 00:00:00 GMT", epoch),
            Some(Duration::from_secs(1_709_164_800))
        );
        for bad in [
            "-1",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 UTC",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:28:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad.as_bytes(), now), None, "{bad}");
        }
    }

    #[test]
    fn the_budget_allows_a_reserve_then_percent_of_first_attempts() {
        let budget = Budget::default();
        for _ in 0..Budget::RESERVE {
            assert!(budget.try_spend());
        }
        assert!(!budget.try_spend(), "the reserve is spent");
        // 20%: five first attempts pay for one retry.
        for _ in 0..4 {
            budget.deposit(20);
        }
        assert!(!budget.try_spend());
        budget.deposit(20);
        assert!(budget.try_spend());
        assert!(!budget.try_spend());
        // 1000 first attempts at 20% would be 200 retries: capped at the reserve.
        for _ in 0..1000 {
            budget.deposit(20);
        }
        assert_eq!(budget.available(), Budget::RESERVE);
        let none = Budget::default();
        for _ in 0..Budget::RESERVE {
            none.try_spend();
        }
        none.deposit(0);
        assert!(!none.try_spend(), "0% allows no retry past the reserve");
    }

    fn breaker_config(threshold: u32, cool_down_ms: u64) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: Some(threshold),
            cool_down_ms: Some(cool_down_ms),
        }
    }

    #[test]
    fn the_breaker_opens_after_n_consecutive_failures_and_rejects_until_the_cool_down() {
        let t0 = Instant::now();
        let config = breaker_config(3, 1000);
        let breaker = Breaker::new(t0);
        for _ in 0..2 {
            assert_eq!(breaker.admit(&config, t0), Admission::Pass);
            assert_eq!(
                breaker.record(&config, Some(Failure::Connect), false, t0),
                None
            );
        }
        // A success in between resets the count.
        assert_eq!(breaker.record(&config, None, false, t0), None);
        assert_eq!(breaker.failures(), 0);
        // 4xx are the caller's: not counted.
        for _ in 0..5 {
            breaker.record(&config, Some(Failure::Status(404)), false, t0);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.record(&config, Some(Failure::Status(500)), false, t0);
        breaker.record(&config, Some(Failure::Timeout), false, t0);
        let opened = breaker.record(&config, Some(Failure::Connect), false, t0);
        assert_eq!(
            opened,
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open,
                failures: 3
            })
        );
        assert_eq!(breaker.state(), BreakerState::Open);
        let at = t0 + Duration::from_millis(400);
        assert_eq!(
            breaker.admit(&config, at),
            Admission::Reject {
                retry_in: Duration::from_millis(600),
                failures: 3
            }
        );
        // Failures of calls admitted before it opened do not reopen it nor move the
        // cool-down.
        assert_eq!(
            breaker.record(&config, Some(Failure::Connect), false, at),
            None
        );
        assert!(matches!(
            breaker.admit(&config, t0 + Duration::from_millis(1000)),
            Admission::Probe(_)
        ));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_result_closes_or_reopens() {
        let t0 = Instant::now();
        let config = breaker_config(1, 1000);
        let breaker = Breaker::new(t0);
        breaker.record(&config, Some(Failure::Connect), false, t0);
        assert_eq!(breaker.state(), BreakerState::Open);
        let t1 = t0 + Duration::from_millis(1000);
        let Admission::Probe(to_half) = breaker.admit(&config, t1) else {
            panic!("the first call after the cool-down probes");
        };
        assert_eq!(
            (to_half.from, to_half.to),
            (BreakerState::Open, BreakerState::HalfOpen)
        );
        assert!(
            matches!(breaker.admit(&config, t1), Admission::Reject { .. }),
            "one probe at a time"
        );
        // The probe fails: open again, a new cool-down from now.
        let reopened = breaker.record(&config, Some(Failure::Status(503)), true, t1);
        assert_eq!(
            reopened.map(|t| (t.from, t.to)),
            Some((BreakerState::HalfOpen, BreakerState::Open))
        );
        assert!(matches!(
            breaker.admit(&config, t1 + Duration::from_millis(999)),
            Admission::Reject { .. }
        ));
        let t2 = t1 + Duration::from_millis(1000);
        assert!(matches!(breaker.admit(&config, t2), Admission::Probe(_)));
        let closed = breaker.record(&config, None, true, t2);
        assert_eq!(
            closed.map(|t| (t.from, t.to)),
            Some((BreakerState::HalfOpen, BreakerState::Closed))
        );
        assert_eq!(breaker.admit(&config, t2), Admission::Pass);
        assert_eq!(breaker.failures(), 0);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe_at_once() {
        let t0 = Instant::now();
        let config = breaker_config(1, 1000);
        let breaker = Breaker::new(t0);
        breaker.record(&config, Some(Failure::Connect), false, t0);
        let t1 = t0 + Duration::from_secs(5);
        assert!(matches!(breaker.admit(&config, t1), Admission::Probe(_)));
        breaker.abandon_probe(&config, t1);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(matches!(breaker.admit(&config, t1), Admission::Probe(_)));
    }

    #[test]
    fn retries_are_counted_by_reason_and_the_report_reads_as_the_record() {
        let guard = Guard::new(Instant::now());
        for failure in [
            Failure::Connect,
            Failure::Timeout,
            Failure::Timeout,
            Failure::Status(502),
            Failure::Status(503),
            Failure::Status(503),
            Failure::Status(503),
            Failure::Status(504),
        ] {
            assert!(failure.is_retryable());
            guard.count_retry(failure);
        }
        for never in [Failure::Status(500), Failure::Status(429), Failure::Other] {
            assert_eq!(never.retry_reason(), None, "{never:?}");
        }
        let snapshot = guard.snapshot();
        assert_eq!(snapshot.retries, 8);
        assert_eq!(snapshot.retries_by_reason.counts(), [1, 2, 1, 3, 1]);
        let report = guard.report();
        assert_eq!(report["retries_by_reason"]["status_503"], 3);
        // The supervisor reads /healthz's form into the record's.
        let read: mcp_core::runtime::Resilience =
            serde_json::from_value(report).expect("the report reads");
        assert_eq!(read, snapshot);
    }

    #[test]
    fn guards_are_per_server_and_kept() {
        let guards = Guards::default();
        assert!(guards.find("a").is_none());
        let a = guards.get("a");
        let b = guards.get("b");
        assert!(Arc::ptr_eq(&a, &guards.get("a")));
        assert!(Arc::ptr_eq(&b, &guards.get("b")));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(guards.find("b").is_some_and(|g| Arc::ptr_eq(&g, &b)));
        assert_eq!(a.report()["state"], "closed");
    }
}
