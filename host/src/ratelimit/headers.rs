//! Rate-limit headers on upstream responses: when a provider says its quota is used up, the
//! gateway stops sending to it until the quota resets instead of collecting 429s.

use std::time::Duration;

/// (remaining, reset) header pairs, per provider family. Resets are durations (`1s`, `6m0s`,
/// `20ms`) or seconds.
const PAIRS: &[(&str, &str)] = &[
    // OpenAI, Groq, Mistral, xAI.
    (
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    // The IETF RateLimit header fields draft.
    ("ratelimit-remaining", "ratelimit-reset"),
];

/// How long until the provider's exhausted quota resets. With `exhausted_only`, only quotas
/// whose `remaining` header says 0 count (a success); without it, any reset header does (a 429
/// that came without a retry-after).
pub fn upstream_reset(headers: &[(&str, &str)], exhausted_only: bool) -> Option<Duration> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    PAIRS
        .iter()
        .filter(|(remaining, _)| {
            !exhausted_only || find(remaining).is_some_and(|v| v.parse::<f64>() == Ok(0.0))
        })
        .filter_map(|(_, reset)| find(reset).and_then(parse_duration))
        .max()
}

/// `1s`, `6m0s`, `1h2m3.5s`, `20ms`, or a plain number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_style_durations() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1"), None);
    }

    #[test]
    fn only_exhausted_quotas_count_on_success() {
        let headers = [
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "2s"),
            ("x-ratelimit-remaining-tokens", "1000"),
            ("x-ratelimit-reset-tokens", "1m"),
        ];
        assert_eq!(upstream_reset(&headers, true), Some(Duration::from_secs(2)));
        assert_eq!(
            upstream_reset(&headers, false),
            Some(Duration::from_secs(60))
        );
        assert_eq!(upstream_reset(&headers[2..], true), None);
    }
}
