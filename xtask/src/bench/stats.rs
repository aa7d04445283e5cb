//! Order statistics of a sample: median and spread, nothing that assumes a distribution.

use crate::bench::json::{Json, obj};

/// Summary of one subject's samples, in the metric's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
    pub p90: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` for an empty sample; NaNs are ignored.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        #[expect(clippy::cast_precision_loss, reason = "sample sizes are small counts")]
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        Some(Self {
            n: s.len(),
            min: s[0],
            p25: quantile(&s, 0.25),
            median: quantile(&s, 0.5),
            p75: quantile(&s, 0.75),
            p90: quantile(&s, 0.9),
            max: s[s.len() - 1],
            mean,
        })
    }

    pub fn to_json(self) -> Json {
        obj([
            ("n", Json::from(self.n)),
            ("min", self.min.into()),
            ("p25", self.p25.into()),
            ("median", self.median.into()),
            ("p75", self.p75.into()),
            ("p90", self.p90.into()),
            ("max", self.max.into()),
            ("mean", self.mean.into()),
        ])
    }
}

/// The `q` quantile of sorted data, interpolating linearly between order statistics (the
/// "type 7" definition of R and NumPy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positions within a small, non-empty sample"
    )]
    {
        let pos = q * (sorted.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(sorted.len() - 1);
        sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, 5.0]).unwrap();
        assert_eq!((s.n, s.min, s.median, s.max), (5, 1.0, 3.0, 5.0));
        assert_eq!((s.p25, s.p75), (2.0, 4.0));
        assert!((s.p90 - 4.6).abs() < 1e-9);
        assert_eq!(s.mean, 3.0);
        let even = Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert_eq!(Summary::of(&[7.0]).unwrap().p90, 7.0);
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
    }
}
