//! How far a field's confidence can be trusted: the reliability diagram (confidence bins against
//! the accuracy inside them, and the expected calibration error) and the precision/coverage
//! curve (answer only above a confidence threshold: how many are answered, how many of those are
//! right). "Coverage at 90 % precision" is the share a field may fill in without review.

use serde::{Deserialize, Serialize};

/// Equal-width confidence bins of the reliability diagram.
pub const BINS: usize = 10;
/// The precision the review threshold is chosen for.
pub const TARGET_PRECISION: f64 = 0.9;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// Answering the rows with confidence ≥ `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoveragePoint {
    pub threshold: f64,
    pub coverage: f64,
    pub precision: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub rows: usize,
    pub bins: Vec<Bin>,
    /// Expected calibration error: the bins' |accuracy − confidence|, weighted by their rows.
    pub ece: f64,
    /// At every 10 % of coverage (the most confident rows first), and at full coverage.
    pub curve: Vec<CoveragePoint>,
    /// The widest coverage whose precision is at least `TARGET_PRECISION` (None: not even the
    /// most confident row is right).
    pub at_target_precision: Option<CoveragePoint>,
}

/// `pairs` are (confidence in 0..=1, correct). None without rows.
pub fn calibrate(pairs: &[(f64, bool)]) -> Option<Calibration> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len();
    let mut bins: Vec<Bin> = (0..BINS).map(|i| Bin { lo: i as f64 / BINS as f64, hi: (i + 1) as f64 / BINS as f64, n: 0, mean_confidence: 0.0, accuracy: 0.0 }).collect();
    for &(c, ok) in pairs {
        let b = &mut bins[((c.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1)];
        b.n += 1;
        b.mean_confidence += c;
        b.accuracy += ok as u8 as f64;
    }
    let mut ece = 0.0;
    for b in bins.iter_mut().filter(|b| b.n > 0) {
        b.mean_confidence /= b.n as f64;
        b.accuracy /= b.n as f64;
        ece += b.n as f64 / n as f64 * (b.accuracy - b.mean_confidence).abs();
    }
    // Most confident first; ties keep their order, so the curve is deterministic.
    let mut sorted: Vec<(f64, bool)> = pairs.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut right = 0usize;
    let mut curve = Vec::new();
    let mut at_target: Option<CoveragePoint> = None;
    let mut next_step = 1;
    for (i, &(c, ok)) in sorted.iter().enumerate() {
        right += ok as usize;
        let taken = i + 1;
        // A threshold only separates rows of different confidence.
        if taken < n && sorted[taken].0 == c {
            continue;
        }
        let point = CoveragePoint { threshold: c, coverage: taken as f64 / n as f64, precision: right as f64 / taken as f64 };
        if point.precision >= TARGET_PRECISION {
            at_target = Some(point.clone());
        }
        while next_step <= 10 && point.coverage + 1e-12 >= next_step as f64 / 10.0 {
            if curve.last() != Some(&point) {
                curve.push(point.clone());
            }
            next_step += 1;
        }
    }
    Some(Calibration { rows: n, bins, ece, curve, at_target_precision: at_target })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfectly_calibrated_field_has_no_error_and_its_curve_falls_with_coverage() {
        // 10 rows at 0.95 with 9 right (close to 0.95), 10 at 0.55 with 5 right (close to 0.55).
        let mut pairs: Vec<(f64, bool)> = (0..10).map(|i| (0.95, i != 0)).collect();
        pairs.extend((0..10).map(|i| (0.55, i < 5)));
        let c = calibrate(&pairs).unwrap();
        assert_eq!(c.rows, 20);
        let used: Vec<&Bin> = c.bins.iter().filter(|b| b.n > 0).collect();
        assert_eq!(used.len(), 2);
        assert!((used[1].accuracy - 0.9).abs() < 1e-9 && (used[1].mean_confidence - 0.95).abs() < 1e-9, "{used:?}");
        assert!((c.ece - (0.5 * 0.05 + 0.5 * 0.05)).abs() < 1e-9, "{}", c.ece);
        let t = c.at_target_precision.clone().unwrap();
        assert_eq!((t.threshold, t.coverage, t.precision), (0.95, 0.5, 0.9));
        let last = c.curve.last().unwrap();
        assert_eq!((last.coverage, last.precision), (1.0, 0.7));
        assert!(c.curve.windows(2).all(|w| w[0].coverage < w[1].coverage));
    }

    #[test]
    fn edge_cases() {
        assert!(calibrate(&[]).is_none());
        let c = calibrate(&[(1.0, false), (0.0, false)]).unwrap();
        assert!(c.at_target_precision.is_none());
        assert_eq!(c.bins[9].n, 1, "confidence 1.0 falls in the top bin");
        assert_eq!(c.bins[0].n, 1);
        let c = calibrate(&[(0.7, true); 5]).unwrap();
        assert_eq!(c.curve, vec![CoveragePoint { threshold: 0.7, coverage: 1.0, precision: 1.0 }], "one threshold, one point");
    }
}
