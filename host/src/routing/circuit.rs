//! Circuit breakers and rate-limit back-off, per model and per provider.
//!
//! A breaker is closed while calls succeed, opens after `failure_threshold` consecutive failures
//! (no calls for `open_ms`), then lets exactly one probe through (half-open): its success closes
//! the breaker, its failure opens it again. Separately, an upstream 429 with a retry-after puts the
//! provider in back-off for that long. Both are fed by real outcomes only.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a rate-limit back-off may last, whatever the provider says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The thresholds every breaker uses.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    backoff_until: Mutex<Option<Instant>>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
            backoff_until: Mutex::new(None),
        }
    }
}

impl Breaker {
    /// The state as routing reports it; an open breaker whose time is up reads as half-open.
    pub fn state(&self, now: Instant) -> CircuitState {
        match self.state.lock().map(|s| match *s {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if now >= until => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }) {
            Ok(state) => state,
            Err(_) => CircuitState::Closed,
        }
    }

    /// Whether a call may go through now, without taking the half-open probe.
    pub fn available(&self, now: Instant) -> Result<(), String> {
        if let Some(left) = self.backoff_left(now) {
            return Err(format!(
                "backing off for {} ms after a rate limit",
                left.as_millis()
            ));
        }
        let state = self
            .state
            .lock()
            .map_err(|_| "breaker state unavailable".to_string())?;
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now >= until => Ok(()),
            State::Open { until } => Err(format!(
                "circuit open for another {} ms",
                (until - now).as_millis()
            )),
            State::HalfOpen {
                probe_in_flight: false,
            } => Ok(()),
            State::HalfOpen {
                probe_in_flight: true,
            } => Err("circuit half-open, its probe is in flight".into()),
        }
    }

    /// Admits a call, taking the single half-open probe if that is what is left. `None` means
    /// not now; `Some(true)` means this call holds the probe and must settle or release it.
    pub fn admit(&self, now: Instant) -> Option<bool> {
        if self.backoff_left(now).is_some() {
            return None;
        }
        let Ok(mut state) = self.state.lock() else {
            return Some(false);
        };
        match *state {
            State::Closed { .. } => Some(false),
            State::Open { until } if now >= until => {
                *state = State::HalfOpen {
                    probe_in_flight: true,
                };
                Some(true)
            }
            State::Open { .. } => None,
            State::HalfOpen {
                probe_in_flight: false,
            } => {
                *state = State::HalfOpen {
                    probe_in_flight: true,
                };
                Some(true)
            }
            State::HalfOpen {
                probe_in_flight: true,
            } => None,
        }
    }

    pub fn record_success(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = State::Closed {
                consecutive_failures: 0,
            };
        }
    }

    /// Returns true when this failure opened the breaker.
    pub fn record_failure(&self, settings: BreakerSettings, now: Instant) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let open = State::Open {
            until: now + settings.open_for,
        };
        match *state {
            State::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures + 1;
                if failures >= settings.failure_threshold {
                    *state = open;
                    true
                } else {
                    *state = State::Closed {
                        consecutive_failures: failures,
                    };
                    false
                }
            }
            State::HalfOpen { .. } => {
                *state = open;
                true
            }
            State::Open { .. } => false,
        }
    }

    /// A call that was admitted but ended without a verdict (a client that went away) must not
    /// keep the probe slot.
    pub fn release_probe(&self) {
        if let Ok(mut state) = self.state.lock()
            && let State::HalfOpen {
                probe_in_flight: true,
            } = *state
        {
            *state = State::HalfOpen {
                probe_in_flight: false,
            };
        }
    }

    /// Backs off until `until`, but never longer than `MAX_BACKOFF` from now: a retry-after is
    /// the provider's word, and a bogus one must not disable it for good.
    pub fn back_off(&self, now: Instant, for_: Duration) {
        let until = now + for_.min(MAX_BACKOFF);
        if let Ok(mut backoff) = self.backoff_until.lock() {
            *backoff = Some(backoff.map_or(until, |current| current.max(until)));
        }
    }

    /// How long the rate-limit back-off still runs, if it does.
    pub fn backoff_left(&self, now: Instant) -> Option<Duration> {
        let until = (*self.backoff_until.lock().ok()?)?;
        (until > now).then(|| until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failure_threshold: 3,
        open_for: Duration::from_millis(100),
    };

    #[test]
    fn opens_after_threshold_then_admits_one_probe() {
        let b = Breaker::default();
        let t0 = Instant::now();
        assert!(!b.record_failure(SETTINGS, t0));
        assert!(!b.record_failure(SETTINGS, t0));
        assert!(b.record_failure(SETTINGS, t0));
        assert_eq!(b.state(t0), CircuitState::Open);
        assert_eq!(b.admit(t0), None);
        let later = t0 + Duration::from_millis(150);
        assert_eq!(b.state(later), CircuitState::HalfOpen);
        assert_eq!(b.admit(later), Some(true), "the probe");
        assert_eq!(b.admit(later), None, "only one probe at a time");
        b.record_success();
        assert_eq!(b.state(later), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record_failure(SETTINGS, t0);
        }
        let later = t0 + Duration::from_millis(150);
        assert_eq!(b.admit(later), Some(true));
        assert!(b.record_failure(SETTINGS, later));
        assert_eq!(b.state(later), CircuitState::Open);
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::default();
        let t0 = Instant::now();
        b.record_failure(SETTINGS, t0);
        b.record_failure(SETTINGS, t0);
        b.record_success();
        assert!(!b.record_failure(SETTINGS, t0));
        assert_eq!(b.state(t0), CircuitState::Closed);
    }

    #[test]
    fn back_off_blocks_until_it_ends() {
        let b = Breaker::default();
        let t0 = Instant::now();
        b.back_off(t0, Duration::from_millis(50));
        assert!(b.available(t0).is_err());
        assert_eq!(b.admit(t0), None);
        assert!(b.available(t0 + Duration::from_millis(60)).is_ok());
        // A bogus retry-after is capped.
        b.back_off(t0, Duration::from_millis(u64::MAX));
        assert!(
            b.available(t0 + MAX_BACKOFF + Duration::from_secs(1))
                .is_ok()
        );
    }
}
