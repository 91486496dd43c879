//! Confusion matrices (scikit-learn's `confusion_matrix`).

use ndarray::Array2;

use crate::error::check_labels;
use crate::{Error, Result};

/// Counts `[n_classes, n_classes]`: row = true class, column = predicted class.
pub fn confusion_matrix(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
) -> Result<Array2<u64>> {
    if y_true.len() != y_pred.len() {
        return Err(Error::LengthMismatch {
            what: "y_true and y_pred",
            left: y_true.len(),
            right: y_pred.len(),
        });
    }
    check_labels("y_true", y_true, n_classes)?;
    check_labels("y_pred", y_pred, n_classes)?;
    let mut m = Array2::zeros((n_classes, n_classes));
    for (&t, &p) in y_true.iter().zip(y_pred) {
        m[[t, p]] += 1;
    }
    Ok(m)
}

/// Each row divided by its sum (scikit-learn `normalize="true"`): row `i` is the distribution
/// of predictions for true class `i`; a class with no samples gives a row of zeros.
pub fn normalize_rows(counts: &Array2<u64>) -> Array2<f64> {
    let mut out = counts.mapv(|c| c as f64);
    for mut row in out.outer_iter_mut() {
        let sum: f64 = row.sum();
        if sum > 0.0 {
            row /= sum;
        }
    }
    out
}
