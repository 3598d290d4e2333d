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
//! - [`Breaker`]: closed -> open after N consecutive failed attempts, or (with
//!   `errorRatePercent`) an error rate over a rolling window of ten fixed buckets ->
//!   half-open (one probe) after the cool-down -> closed on success, open again on
//!   failure. Each change says its [`Reason`].
//! - [`Guards`]: one [`Guard`] (budget, breaker, counters) per server, kept across
//!   registry reloads.
//!
//! The happy path costs atomic loads: no lock and no allocation per call while nothing
//! fails (the budget's deposit stops once it is full; the breaker's failure count is
//! written only when it is not zero; the error-rate window, when configured, adds one
//! read-modify-write of one word in place). A server with neither `retry` nor
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

/// Why the breaker changed state (the `reason` of `tool.circuit.*`), and, for an open
/// breaker, why it opened (in the `circuit_open` tool error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Closed -> open: `failureThreshold` failed attempts in a row.
    ConsecutiveFailures,
    /// Closed -> open: `failed` of the `calls` attempts in the window failed, at least
    /// `errorRatePercent` of them.
    ErrorRate { failed: u32, calls: u32 },
    /// Half-open -> open: the probe failed.
    ProbeFailed,
    /// Open -> half-open: the cool-down is over, one probe goes.
    CoolDownOver,
    /// Half-open -> closed: the probe succeeded.
    ProbeSucceeded,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ConsecutiveFailures => "consecutive_failures",
            Reason::ErrorRate { .. } => "error_rate",
            Reason::ProbeFailed => "probe_failed",
            Reason::CoolDownOver => "cool_down_over",
            Reason::ProbeSucceeded => "probe_succeeded",
        }
    }

    /// Why an open breaker opened, for the `circuit_open` tool error: `after ...`.
    /// `failures` is the count of consecutive failures.
    pub fn describe_open(self, failures: u32) -> String {
        match self {
            Reason::ErrorRate { failed, calls } => format!(
                "after an error rate of {}% ({failed} of the last {calls} calls failed)",
                u64::from(failed) * 100 / u64::from(calls.max(1))
            ),
            Reason::ProbeFailed => {
                format!("after its half-open probe failed ({failures} consecutive failures)")
            }
            Reason::ConsecutiveFailures | Reason::CoolDownOver | Reason::ProbeSucceeded => {
                format!("after {failures} consecutive failures")
            }
        }
    }

    /// The same as the runtime record spells why a breaker opened; `None` for the
    /// reasons that do not open it (cool-down over, probe succeeded).
    pub fn as_open_reason(self) -> Option<mcp_core::runtime::BreakerOpenReason> {
        use mcp_core::runtime::BreakerOpenReason as Open;
        match self {
            Reason::ConsecutiveFailures => Some(Open::ConsecutiveFailures),
            Reason::ErrorRate { failed, calls } => Some(Open::ErrorRate { failed, calls }),
            Reason::ProbeFailed => Some(Open::ProbeFailed),
            Reason::CoolDownOver | Reason::ProbeSucceeded => None,
        }
    }

    /// The reason an open breaker keeps, packed in one word: kind in the low byte,
    /// `failed` and `calls` (28 bits each, saturated) above it.
    fn pack(self) -> u64 {
        const MAX: u64 = (1 << 28) - 1;
        match self {
            Reason::ConsecutiveFailures => 0,
            Reason::ErrorRate { failed, calls } => {
                1 | (u64::from(failed).min(MAX) << 8) | (u64::from(calls).min(MAX) << 36)
            }
            Reason::ProbeFailed => 2,
            Reason::CoolDownOver => 3,
            Reason::ProbeSucceeded => 4,
        }
    }

    fn unpack(raw: u64) -> Reason {
        const MASK: u64 = (1 << 28) - 1;
        let field = |shift: u32| u32::try_from((raw >> shift) & MASK).unwrap_or(u32::MAX);
        match raw & 0xff {
            1 => Reason::ErrorRate {
                failed: field(8),
                calls: field(36),
            },
            2 => Reason::ProbeFailed,
            3 => Reason::CoolDownOver,
            4 => Reason::ProbeSucceeded,
            _ => Reason::ConsecutiveFailures,
        }
    }
}

/// A change of the breaker's state, for the caller to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    /// Consecutive failures when it happened.
    pub failures: u32,
    pub reason: Reason,
}

/// What the breaker says to an attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go.
    Pass,
    /// The half-open probe: go, and the result decides ([`Breaker::record`] with
    /// `probe: true`). The transition to half-open is in it for the log.
    Probe(Transition),
    /// Open (or a probe is out): fail fast; the cool-down ends in this long. `opened_by`
    /// says why it opened.
    Reject {
        retry_in: Duration,
        failures: u32,
        opened_by: Reason,
    },
}

/// The attempts and failed attempts of the last `windowMs`, for the breaker's
/// error-rate rule: [`Window::BUCKETS`] fixed buckets of `windowMs / BUCKETS` each, in
/// place (no allocation). Each bucket is one word: the number of its time slot (so a
/// bucket of an older turn of the ring reads as empty), its attempts and its failures.
#[derive(Debug, Default)]
struct Window {
    buckets: [AtomicU64; Window::BUCKETS],
}

impl Window {
    const BUCKETS: usize = 10;
    const COUNT_BITS: u32 = 20;
    const COUNT_MASK: u64 = (1 << Window::COUNT_BITS) - 1;
    const SLOT_SHIFT: u32 = 2 * Window::COUNT_BITS;
    const SLOT_MASK: u64 = (1 << (64 - Window::SLOT_SHIFT)) - 1;
    const CALL: u64 = 1 << Window::COUNT_BITS;

    fn width(window_ms: u64) -> u64 {
        (window_ms / Window::BUCKETS as u64).max(1)
    }

    fn slot(now_ms: u64, window_ms: u64) -> u64 {
        (now_ms / Window::width(window_ms)) & Window::SLOT_MASK
    }

    /// Counts one attempt (failed or not) in the bucket of `now_ms`: one
    /// read-modify-write of one word (a bucket already full stays as it is).
    fn record(&self, now_ms: u64, window_ms: u64, failed: bool) {
        let slot = Window::slot(now_ms, window_ms);
        let Some(bucket) = self
            .buckets
            .get(usize::try_from(slot % Window::BUCKETS as u64).unwrap_or(0))
        else {
            return;
        };
        let add = Window::CALL | u64::from(failed);
        let _ = bucket.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            if word >> Window::SLOT_SHIFT != slot {
                // An older turn of the ring: this slot starts afresh.
                return Some((slot << Window::SLOT_SHIFT) | add);
            }
            if (word >> Window::COUNT_BITS) & Window::COUNT_MASK == Window::COUNT_MASK {
                return None;
            }
            Some(word + add)
        });
    }

    /// (attempts, failures) in the buckets of the last `window_ms` up to `now_ms`.
    fn totals(&self, now_ms: u64, window_ms: u64) -> (u32, u32) {
        let now = Window::slot(now_ms, window_ms);
        let (mut calls, mut failed) = (0u64, 0u64);
        for bucket in &self.buckets {
            let word = bucket.load(Ordering::Relaxed);
            let age = now.wrapping_sub(word >> Window::SLOT_SHIFT) & Window::SLOT_MASK;
            if age < Window::BUCKETS as u64 {
                calls += (word >> Window::COUNT_BITS) & Window::COUNT_MASK;
                failed += word & Window::COUNT_MASK;
            }
        }
        (
            u32::try_from(calls).unwrap_or(u32::MAX),
            u32::try_from(failed).unwrap_or(u32::MAX),
        )
    }

    /// Forgets everything (the breaker closed: a new start).
    fn clear(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
    }
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
    /// Why it last opened ([`Reason::pack`]).
    opened_by: AtomicU64,
    /// The error-rate rule's counts (untouched when `errorRatePercent` is not set).
    window: Window,
}

impl Breaker {
    pub fn new(epoch: Instant) -> Breaker {
        Breaker {
            epoch,
            state: AtomicU8::new(state_as_u8(BreakerState::Closed)),
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            opened_by: AtomicU64::new(Reason::ConsecutiveFailures.pack()),
            window: Window::default(),
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

    /// Why it last opened (consecutive failures before it ever did).
    pub fn opened_by(&self) -> Reason {
        Reason::unpack(self.opened_by.load(Ordering::Acquire))
    }

    /// Why it opened while it is open or half-open, as the runtime record says it
    /// (`opened_by`); `None` while it is closed.
    pub fn open_reason(&self) -> Option<mcp_core::runtime::BreakerOpenReason> {
        if self.state() == BreakerState::Closed {
            return None;
        }
        self.opened_by().as_open_reason()
    }

    /// (attempts, failed attempts) the error-rate window holds at `now`; zeros when the
    /// rule is off.
    pub fn window_counts(&self, config: &CircuitBreakerConfig, now: Instant) -> (u32, u32) {
        match config.error_rate() {
            Some(rule) => self.window.totals(self.ms(now), rule.window_ms),
            None => (0, 0),
        }
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
                    reason: Reason::CoolDownOver,
                });
            }
        }
        Admission::Reject {
            retry_in: Duration::from_millis(cool_down.saturating_sub(elapsed)),
            failures,
            opened_by: self.opened_by(),
        }
    }

    /// Records an attempt's result (`failure: None` is a success; a failure that does
    /// not count for the breaker counts as a success). Returns the transition, if any.
    /// With `errorRatePercent` set, every attempt but a probe is also counted in the
    /// window (one more atomic read-modify-write); a failure then opens the breaker
    /// when it brings the window's error rate to the percentage.
    pub fn record(
        &self,
        config: &CircuitBreakerConfig,
        failure: Option<Failure>,
        probe: bool,
        now: Instant,
    ) -> Option<Transition> {
        let failed = failure.is_some_and(Failure::counts_for_breaker);
        let rule = if probe { None } else { config.error_rate() };
        let now_ms = rule.map(|rule| {
            let now_ms = self.ms(now);
            self.window.record(now_ms, rule.window_ms, failed);
            now_ms
        });
        if !failed {
            // The happy path: a load, and a write only after failures.
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            if probe {
                self.probing.store(false, Ordering::Release);
                self.window.clear();
                self.state
                    .store(state_as_u8(BreakerState::Closed), Ordering::Release);
                return Some(Transition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                    failures: 0,
                    reason: Reason::ProbeSucceeded,
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
            self.opened_by
                .store(Reason::ProbeFailed.pack(), Ordering::Release);
            self.probing.store(false, Ordering::Release);
            self.state
                .store(state_as_u8(BreakerState::Open), Ordering::Release);
            return Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open,
                failures,
                reason: Reason::ProbeFailed,
            });
        }
        if self.state() != BreakerState::Closed {
            return None;
        }
        let reason = if failures >= config.failure_threshold() {
            Reason::ConsecutiveFailures
        } else {
            let (Some(rule), Some(now_ms)) = (rule, now_ms) else {
                return None;
            };
            let (calls, failed) = self.window.totals(now_ms, rule.window_ms);
            let over = calls >= rule.min_calls
                && u64::from(failed) * 100 >= u64::from(rule.percent) * u64::from(calls);
            if !over {
                return None;
            }
            Reason::ErrorRate { failed, calls }
        };
        self.opened_at.store(self.ms(now), Ordering::Release);
        self.opened_by.store(reason.pack(), Ordering::Release);
        let opened = self
            .state
            .compare_exchange(
                state_as_u8(BreakerState::Closed),
                state_as_u8(BreakerState::Open),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        opened.then_some(Transition {
            from: BreakerState::Closed,
            to: BreakerState::Open,
            failures,
            reason,
        })
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
            opened_by: self.breaker.open_reason(),
        }
    }

    /// The breaker's state and the counters, as `/healthz` shows them (`opened_by` only
    /// while the breaker is not closed).
    pub fn report(&self) -> serde_json::Value {
        let mut report = serde_json::json!({
            "state": self.breaker.state(),
            "consecutive_failures": self.breaker.failures(),
            "retries": self.retries.load(Ordering::Relaxed),
            "retries_by_reason": self.by_reason(),
            "retries_refused_by_budget": self.budget_refusals.load(Ordering::Relaxed),
            "rejected": self.rejected.load(Ordering::Relaxed),
            "opened": self.opened.load(Ordering::Relaxed),
        });
        if let (Some(reason), Some(fields)) = (self.breaker.open_reason(), report.as_object_mut()) {
            fields.insert("opened_by".into(), serde_json::json!(reason));
        }
        report
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
            ..CircuitBreakerConfig::default()
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
                failures: 3,
                reason: Reason::ConsecutiveFailures
            })
        );
        assert_eq!(breaker.state(), BreakerState::Open);
        let at = t0 + Duration::from_millis(400);
        assert_eq!(
            breaker.admit(&config, at),
            Admission::Reject {
                retry_in: Duration::from_millis(600),
                failures: 3,
                opened_by: Reason::ConsecutiveFailures
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

    fn rate_config(percent: u32, window_ms: u64, min_calls: u32) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: Some(5),
            cool_down_ms: Some(1000),
            error_rate_percent: Some(percent),
            window_ms: Some(window_ms),
            min_calls: Some(min_calls),
        }
    }

    #[test]
    fn an_error_rate_over_the_window_opens_the_breaker_below_the_consecutive_threshold() {
        let t0 = Instant::now();
        let config = rate_config(50, 10_000, 10);
        let breaker = Breaker::new(t0);
        // Success, failure, success, failure...: never two failures in a row.
        let mut opened = None;
        for n in 0..20u64 {
            let at = t0 + Duration::from_millis(n * 10);
            assert_eq!(breaker.admit(&config, at), Admission::Pass, "call {n}");
            let failure = (n % 2 == 1).then_some(Failure::Status(503));
            if let Some(transition) = breaker.record(&config, failure, false, at) {
                opened = Some((n, transition));
                break;
            }
            assert!(breaker.failures() <= 1);
        }
        // The tenth call (n = 9) is the fifth failure of ten: 50%.
        let (n, transition) = opened.expect("the error rate opened it");
        assert_eq!(n, 9);
        assert_eq!(
            transition,
            Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open,
                failures: 1,
                reason: Reason::ErrorRate {
                    failed: 5,
                    calls: 10
                }
            }
        );
        assert_eq!(transition.reason.as_str(), "error_rate");
        let at = t0 + Duration::from_millis(190);
        let Admission::Reject {
            retry_in,
            failures,
            opened_by,
        } = breaker.admit(&config, at)
        else {
            panic!("open: fail fast");
        };
        assert_eq!(retry_in, Duration::from_millis(1000 - 100));
        assert_eq!(
            opened_by,
            Reason::ErrorRate {
                failed: 5,
                calls: 10
            }
        );
        assert_eq!(
            opened_by.describe_open(failures),
            "after an error rate of 50% (5 of the last 10 calls failed)"
        );
        assert_eq!(
            Reason::ConsecutiveFailures.describe_open(5),
            "after 5 consecutive failures"
        );
    }

    #[test]
    fn fewer_calls_than_min_calls_never_open_it_by_rate() {
        let t0 = Instant::now();
        let config = CircuitBreakerConfig {
            failure_threshold: Some(100),
            ..rate_config(10, 10_000, 20)
        };
        let breaker = Breaker::new(t0);
        for _ in 0..19 {
            assert_eq!(
                breaker.record(&config, Some(Failure::Timeout), false, t0),
                None
            );
        }
        assert_eq!(breaker.window_counts(&config, t0), (19, 19));
        assert_eq!(breaker.state(), BreakerState::Closed);
        let opened = breaker.record(&config, Some(Failure::Timeout), false, t0);
        assert_eq!(
            opened.map(|t| t.reason),
            Some(Reason::ErrorRate {
                failed: 20,
                calls: 20
            }),
            "the twentieth call is enough"
        );
    }

    #[test]
    fn the_window_rolls_and_old_buckets_are_forgotten() {
        let t0 = Instant::now();
        // 1000 ms in ten buckets of 100 ms; the consecutive rule out of the way.
        let config = CircuitBreakerConfig {
            failure_threshold: Some(1000),
            ..rate_config(30, 1000, 20)
        };
        let breaker = Breaker::new(t0);
        for _ in 0..10 {
            breaker.record(&config, Some(Failure::Connect), false, t0);
        }
        // 4xx are the caller's: counted as successes.
        breaker.record(&config, Some(Failure::Status(404)), false, t0);
        assert_eq!(breaker.window_counts(&config, t0), (11, 10));
        let half = t0 + Duration::from_millis(550);
        assert_eq!(breaker.window_counts(&config, half), (11, 10), "still in");
        // A window later: the ten failures are gone. 20 successes and one failure
        // (1 of 21) do not open it; with the old failures (11 of 32) they would have.
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(breaker.window_counts(&config, later), (0, 0));
        for _ in 0..20 {
            breaker.record(&config, None, false, later);
        }
        assert_eq!(
            breaker.record(&config, Some(Failure::Connect), false, later),
            None
        );
        assert_eq!(breaker.window_counts(&config, later), (21, 1));
        assert_eq!(breaker.state(), BreakerState::Closed);
        // Buckets spread over the window add up; the oldest drops out first.
        let breaker = Breaker::new(t0);
        for step in 0..10u64 {
            let at = t0 + Duration::from_millis(step * 100);
            breaker.record(&config, None, false, at);
        }
        let end = t0 + Duration::from_millis(999);
        assert_eq!(breaker.window_counts(&config, end), (10, 0));
        let next = t0 + Duration::from_millis(1000);
        assert_eq!(breaker.window_counts(&config, next), (9, 0));
    }

    #[test]
    fn a_probe_that_closes_the_breaker_clears_the_window() {
        let t0 = Instant::now();
        let config = rate_config(50, 60_000, 4);
        let breaker = Breaker::new(t0);
        for failure in [None, Some(Failure::Connect), None] {
            assert_eq!(breaker.record(&config, failure, false, t0), None);
        }
        let opened = breaker.record(&config, Some(Failure::Connect), false, t0);
        assert_eq!(
            opened.map(|t| (t.to, t.reason)),
            Some((
                BreakerState::Open,
                Reason::ErrorRate {
                    failed: 2,
                    calls: 4
                }
            ))
        );
        let t1 = t0 + Duration::from_millis(1000);
        let Admission::Probe(to_half) = breaker.admit(&config, t1) else {
            panic!("probe");
        };
        assert_eq!(to_half.reason, Reason::CoolDownOver);
        let failed_probe = breaker.record(&config, Some(Failure::Connect), true, t1);
        assert_eq!(failed_probe.map(|t| t.reason), Some(Reason::ProbeFailed));
        assert!(matches!(
            breaker.admit(&config, t1),
            Admission::Reject {
                opened_by: Reason::ProbeFailed,
                ..
            }
        ));
        let t2 = t1 + Duration::from_millis(1000);
        assert!(matches!(breaker.admit(&config, t2), Admission::Probe(_)));
        let closed = breaker.record(&config, None, true, t2);
        assert_eq!(closed.map(|t| t.reason), Some(Reason::ProbeSucceeded));
        // The window is within its 60 s, but starts afresh: 1 failure of 1 call is
        // under min_calls.
        assert_eq!(breaker.window_counts(&config, t2), (0, 0));
        assert_eq!(
            breaker.record(&config, Some(Failure::Connect), false, t2),
            None
        );
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn without_error_rate_percent_the_window_is_never_touched() {
        let t0 = Instant::now();
        let config = breaker_config(3, 1000);
        let breaker = Breaker::new(t0);
        for n in 0..1000u32 {
            let failure = (n % 2 == 0).then_some(Failure::Status(500));
            assert_eq!(breaker.record(&config, failure, false, t0), None);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        let all_rates = rate_config(1, 10_000, 1);
        assert_eq!(
            breaker.window_counts(&all_rates, t0),
            (0, 0),
            "nothing was counted"
        );
    }

    #[test]
    fn the_window_counts_concurrent_attempts_exactly_and_reasons_pack() {
        let t0 = Instant::now();
        let config = CircuitBreakerConfig {
            failure_threshold: Some(u32::MAX),
            ..rate_config(100, 10_000, CircuitBreakerConfig::MAX_MIN_CALLS)
        };
        let breaker = Arc::new(Breaker::new(t0));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let breaker = Arc::clone(&breaker);
                std::thread::spawn(move || {
                    for n in 0..5_000u32 {
                        let failure = (n % 5 == i).then_some(Failure::Other);
                        breaker.record(&config, failure, false, t0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(breaker.window_counts(&config, t0), (20_000, 4_000));
        for reason in [
            Reason::ConsecutiveFailures,
            Reason::ErrorRate {
                failed: 7,
                calls: 123_456,
            },
            Reason::ProbeFailed,
            Reason::CoolDownOver,
            Reason::ProbeSucceeded,
        ] {
            assert_eq!(Reason::unpack(reason.pack()), reason);
        }
        assert_eq!(
            Reason::unpack(
                Reason::ErrorRate {
                    failed: u32::MAX,
                    calls: u32::MAX
                }
                .pack()
            ),
            Reason::ErrorRate {
                failed: (1 << 28) - 1,
                calls: (1 << 28) - 1
            },
            "saturated, not mixed up"
        );
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

    /// Opens `guard`'s breaker with `failures` (each recorded at `at`), then checks its
    /// snapshot and report carry `reason`, and that the report reads as the snapshot.
    fn assert_opened_by(
        guard: &Guard,
        config: &CircuitBreakerConfig,
        failures: &[Option<Failure>],
        at: Instant,
        reason: serde_json::Value,
    ) -> mcp_core::runtime::Resilience {
        assert_eq!(guard.snapshot().opened_by, None, "closed: no reason");
        assert!(guard.report().get("opened_by").is_none());
        let mut opened = None;
        for failure in failures {
            opened = opened.or(guard.breaker.record(config, *failure, false, at));
        }
        assert_eq!(opened.map(|t| t.to), Some(BreakerState::Open));
        let snapshot = guard.snapshot();
        assert_eq!(snapshot.state, BreakerState::Open);
        assert_eq!(
            serde_json::to_value(snapshot.opened_by).expect("json"),
            reason
        );
        let report = guard.report();
        assert_eq!(report["opened_by"], reason);
        let read: mcp_core::runtime::Resilience =
            serde_json::from_value(report).expect("the report reads");
        assert_eq!(read, snapshot);
        let record = serde_json::to_value(snapshot).expect("record");
        assert_eq!(record["openedBy"], reason);
        snapshot
    }

    #[test]
    fn the_snapshot_and_the_report_say_why_the_breaker_opened() {
        use mcp_core::runtime::BreakerOpenReason;
        let t0 = Instant::now();
        // By error rate: 2 of 4 calls failed (50%), never two in a row.
        let guard = Guard::new(t0);
        let config = rate_config(50, 60_000, 4);
        let snapshot = assert_opened_by(
            &guard,
            &config,
            &[
                None,
                Some(Failure::Connect),
                None,
                Some(Failure::Status(503)),
            ],
            t0,
            json!({"kind": "error_rate", "failed": 2, "calls": 4}),
        );
        assert_eq!(
            snapshot.opened_by,
            Some(BreakerOpenReason::ErrorRate {
                failed: 2,
                calls: 4
            })
        );
        // Half-open (the probe is out): still why it opened.
        let t1 = t0 + Duration::from_millis(1000);
        assert!(matches!(
            guard.breaker.admit(&config, t1),
            Admission::Probe(_)
        ));
        assert_eq!(guard.snapshot().state, BreakerState::HalfOpen);
        assert_eq!(guard.snapshot().opened_by, snapshot.opened_by);
        // The probe fails: reopened by it.
        guard
            .breaker
            .record(&config, Some(Failure::Timeout), true, t1);
        assert_eq!(
            guard.snapshot().opened_by,
            Some(BreakerOpenReason::ProbeFailed)
        );
        assert_eq!(guard.report()["opened_by"], json!({"kind": "probe_failed"}));
        // The next probe succeeds: closed, no reason.
        let t2 = t1 + Duration::from_millis(1000);
        assert!(matches!(
            guard.breaker.admit(&config, t2),
            Admission::Probe(_)
        ));
        guard.breaker.record(&config, None, true, t2);
        assert_eq!(guard.snapshot().state, BreakerState::Closed);
        assert_eq!(guard.snapshot().opened_by, None);
        assert!(guard.report().get("opened_by").is_none());

        // By consecutive failures: three in a row.
        let guard = Guard::new(t0);
        let config = breaker_config(3, 1000);
        let snapshot = assert_opened_by(
            &guard,
            &config,
            &[Some(Failure::Status(502)); 3],
            t0,
            json!({"kind": "consecutive_failures"}),
        );
        assert_eq!(snapshot.consecutive_failures, 3);
        assert_eq!(
            snapshot.opened_by,
            Some(BreakerOpenReason::ConsecutiveFailures)
        );
    }
}
