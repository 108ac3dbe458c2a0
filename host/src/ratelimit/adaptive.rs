//! An adaptive request ceiling for one provider (additive-increase is too slow for the rates
//! providers allow, so it is multiplicative both ways): a 429 cuts the ceiling to a fraction of
//! the rate that provoked it; each quiet interval raises it by a factor; once it is back at the
//! rate that provoked the 429 the ceiling is lifted. The ceiling has a floor, so that a provider
//! that 429s at a low rate (its quota is shared with others) is governed by its retry-after alone.

use crate::config::RateLimitSettings;
use std::time::{Duration, Instant};

/// The request count is kept per second over the last minute: constant memory at any rate.
const SLOTS: usize = 60;
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct Adaptive {
    origin: Instant,
    /// (second since `origin`, requests sent in it).
    slots: [(u64, u32); SLOTS],
    ceiling: Option<Ceiling>,
}

#[derive(Debug, Clone, Copy)]
struct Ceiling {
    /// Requests per minute currently allowed.
    per_minute: f64,
    /// The rate that provoked the last cut; reaching it again lifts the ceiling.
    lift_at: f64,
    changed: Instant,
}

impl Default for Adaptive {
    fn default() -> Self {
        Adaptive {
            origin: Instant::now(),
            slots: [(u64::MAX, 0); SLOTS],
            ceiling: None,
        }
    }
}

impl Adaptive {
    pub fn ceiling(&self) -> Option<f64> {
        self.ceiling.map(|c| c.per_minute)
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// Requests sent in the minute before `now`.
    fn sent_last_minute(&self, now: Instant) -> u32 {
        let second = self.second(now);
        self.slots
            .iter()
            .filter(|(at, _)| *at != u64::MAX && second.saturating_sub(*at) < SLOTS as u64)
            .map(|(_, n)| n)
            .sum()
    }

    /// Takes a request slot, or says how long until one frees up under the ceiling.
    pub fn admit(&mut self, now: Instant, settings: &RateLimitSettings) -> Result<(), Duration> {
        self.recover(now, settings);
        if let Some(ceiling) = self.ceiling
            && f64::from(self.sent_last_minute(now)) >= ceiling.per_minute
        {
            let second = self.second(now);
            let oldest = self
                .slots
                .iter()
                .filter(|(at, n)| *n > 0 && *at != u64::MAX && second.saturating_sub(*at) < 60)
                .map(|(at, _)| *at)
                .min()
                .unwrap_or(second);
            let frees_at = self.origin + Duration::from_secs(oldest) + MINUTE;
            return Err(frees_at
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)));
        }
        let second = self.second(now);
        let slot = &mut self.slots[(second % SLOTS as u64) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        Ok(())
    }

    /// Cuts the ceiling after a 429; returns the ceiling now in force, in requests per minute.
    pub fn cut(&mut self, now: Instant, settings: &RateLimitSettings) -> Option<f64> {
        let sent = f64::from(self.sent_last_minute(now)).max(1.0);
        let current = self.ceiling.map_or(sent, |c| c.per_minute.min(sent));
        let lift_at = self.ceiling.map_or(sent, |c| c.lift_at);
        let per_minute = (current * settings.adaptive_decrease)
            .max(f64::from(settings.adaptive_floor_per_minute));
        self.ceiling = (per_minute < lift_at).then_some(Ceiling {
            per_minute,
            lift_at,
            changed: now,
        });
        self.ceiling()
    }

    fn recover(&mut self, now: Instant, settings: &RateLimitSettings) {
        let Some(mut ceiling) = self.ceiling else {
            return;
        };
        let interval = Duration::from_millis(settings.adaptive_interval_ms);
        while now.saturating_duration_since(ceiling.changed) >= interval {
            ceiling.per_minute =
                (ceiling.per_minute * settings.adaptive_recovery).max(ceiling.per_minute + 1.0);
            ceiling.changed += interval;
            if ceiling.per_minute >= ceiling.lift_at {
                self.ceiling = None;
                return;
            }
        }
        self.ceiling = Some(ceiling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_halves_the_rate_and_quiet_intervals_restore_it() {
        let settings = RateLimitSettings {
            adaptive_floor_per_minute: 1,
            ..RateLimitSettings::default()
        };
        let mut provider = Adaptive::default();
        let t0 = provider.origin;
        for i in 0..40 {
            assert!(
                provider
                    .admit(t0 + Duration::from_millis(i * 10), &settings)
                    .is_ok()
            );
        }
        let now = t0 + Duration::from_secs(1);
        assert_eq!(provider.cut(now, &settings), Some(20.0));
        // 40 sent in the last minute, above the ceiling of 20: wait until they age out.
        let wait = provider.admit(now, &settings).unwrap_err();
        assert!(wait > Duration::from_secs(55), "{wait:?}");
        // Each 10 s without a 429 raises the ceiling by 25% until it is lifted at 40.
        let later = now + Duration::from_secs(61);
        assert!(provider.admit(later, &settings).is_ok());
        assert_eq!(provider.ceiling(), None, "20 * 1.25^4 > 40 after 60 s");
        // Another burst meets a 429: cut to half of it, and a second 429 cuts further.
        for _ in 0..10 {
            assert!(provider.admit(later, &settings).is_ok());
        }
        assert_eq!(provider.cut(later, &settings), Some(5.5));
        assert_eq!(provider.cut(later, &settings), Some(2.75));
    }

    #[test]
    fn at_low_rates_the_floor_leaves_it_to_the_retry_after() {
        let settings = RateLimitSettings::default();
        let mut provider = Adaptive::default();
        let t0 = provider.origin;
        assert!(provider.admit(t0, &settings).is_ok());
        assert_eq!(provider.cut(t0, &settings), None);
        assert!(provider.admit(t0, &settings).is_ok());
    }
}
