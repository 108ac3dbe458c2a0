//! Percentiles and small numeric helpers.

use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds (nearest-rank on the sorted samples).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From microsecond samples; `None` when there are none.
    pub fn from_micros(samples: &mut [u64]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Some(Percentiles {
            count: samples.len(),
            mean: sum as f64 / samples.len() as f64 / 1000.0,
            p50: ms(nearest_rank(samples, 0.50)),
            p90: ms(nearest_rank(samples, 0.90)),
            p99: ms(nearest_rank(samples, 0.99)),
            p999: ms(nearest_rank(samples, 0.999)),
            max: ms(*samples.last().unwrap_or(&0)),
        })
    }

    pub fn at(&self, q: Quantile) -> f64 {
        match q {
            Quantile::P50 => self.p50,
            Quantile::P90 => self.p90,
            Quantile::P99 => self.p99,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Quantile {
    P50,
    P90,
    P99,
}

/// The smallest sample such that at least `q` of all samples are at or below it.
/// `sorted` must be sorted ascending and non-empty.
pub fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len();
    let rank = (q * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Least-squares slope of `y` over `x` (units of y per unit of x).
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=100).map(|v| v * 1000).collect();
        let p = Percentiles::from_micros(&mut samples).unwrap();
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p90, 90.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.p999, 100.0);
        assert_eq!(p.max, 100.0);
        assert_eq!(p.count, 100);
        assert!((p.mean - 50.5).abs() < 1e-9);
        let mut one = vec![7000];
        assert_eq!(Percentiles::from_micros(&mut one).unwrap().p99, 7.0);
        assert!(Percentiles::from_micros(&mut []).is_none());
    }

    #[test]
    fn medians_and_slopes() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 2.0 * x as f64 + 1.0)).collect();
        assert!((slope(&line).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
    }
}
