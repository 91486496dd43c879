//! [`ClassificationReport`]: scikit-learn's `classification_report(..., output_dict=True)`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::check_labels;
use crate::{Error, Result};

/// Precision, recall, F1 and support of one class or one average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// `tp / (tp + fp)`; 0 when nothing was predicted as this class (see `precision_undefined`).
    pub precision: f64,
    /// `tp / (tp + fn)`; 0 when the class never occurs (see `recall_undefined`).
    pub recall: f64,
    /// `2 tp / (2 tp + fp + fn)`; 0 when the class neither occurs nor is predicted.
    #[serde(rename = "f1-score")]
    pub f1: f64,
    /// Number of true samples (for averages: all samples).
    pub support: u64,
    /// scikit-learn's zero_division case for precision: the denominator was 0 and 0 was used.
    #[serde(default)]
    pub precision_undefined: bool,
    /// The zero_division case for recall.
    #[serde(default)]
    pub recall_undefined: bool,
    /// The zero_division case for F1.
    #[serde(default)]
    pub f1_undefined: bool,
}

/// Per-class and averaged scores, equal to scikit-learn 1.x
/// `classification_report(y_true, y_pred, labels=range(len(class_names)),
/// target_names=class_names, output_dict=True)` with its default `zero_division="warn"`
/// (an undefined ratio counts as 0, and the `*_undefined` flags say where that happened).
///
/// **The paper's "F1" is [`weighted_avg`](Self::weighted_avg)`.f1`**: per-class F1 averaged
/// with weights equal to each class's support (its code stores `score['weighted avg']`), at
/// slice level and at song level alike. It is neither macro nor micro F1.
///
/// Every class in `class_names` is reported, including a class that never occurs and is never
/// predicted (all zeros, counted in the macro average as scikit-learn does with `labels=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Class names, in label order.
    pub class_names: Vec<String>,
    /// Scores per class, in label order.
    pub per_class: Vec<Scores>,
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Unweighted mean over classes.
    pub macro_avg: Scores,
    /// Mean over classes weighted by support: the paper's F1.
    pub weighted_avg: Scores,
}

fn ratio(num: u64, den: u64) -> (f64, bool) {
    if den == 0 {
        (0.0, true)
    } else {
        (num as f64 / den as f64, false)
    }
}

impl ClassificationReport {
    /// Computes the report. Labels are class indices `0..class_names.len()`.
    pub fn new(y_true: &[usize], y_pred: &[usize], class_names: &[String]) -> Result<Self> {
        if y_true.len() != y_pred.len() {
            return Err(Error::LengthMismatch {
                what: "y_true and y_pred",
                left: y_true.len(),
                right: y_pred.len(),
            });
        }
        if y_true.is_empty() {
            return Err(Error::Empty("y_true"));
        }
        let n = class_names.len();
        if n == 0 {
            return Err(Error::Empty("class_names"));
        }
        check_labels("y_true", y_true, n)?;
        check_labels("y_pred", y_pred, n)?;
        let (mut tp, mut pred, mut truth) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
        for (&t, &p) in y_true.iter().zip(y_pred) {
            truth[t] += 1;
            pred[p] += 1;
            if t == p {
                tp[t] += 1;
            }
        }
        let per_class: Vec<Scores> = (0..n)
            .map(|c| {
                let (precision, precision_undefined) = ratio(tp[c], pred[c]);
                let (recall, recall_undefined) = ratio(tp[c], truth[c]);
                // sklearn >= 1.3: F = 2 tp / (2 tp + fp + fn), zero_division only if that is 0/0.
                let (f1, f1_undefined) = ratio(2 * tp[c], pred[c] + truth[c]);
                Scores {
                    precision,
                    recall,
                    f1,
                    support: truth[c],
                    precision_undefined,
                    recall_undefined,
                    f1_undefined,
                }
            })
            .collect();
        let total = y_true.len() as u64;
        let correct: u64 = tp.iter().sum();
        let mean = |f: fn(&Scores) -> f64| per_class.iter().map(f).sum::<f64>() / n as f64;
        let weighted = |f: fn(&Scores) -> f64| {
            per_class
                .iter()
                .map(|s| f(s) * s.support as f64)
                .sum::<f64>()
                / total as f64
        };
        let any = |f: fn(&Scores) -> bool| per_class.iter().any(f);
        let macro_avg = Scores {
            precision: mean(|s| s.precision),
            recall: mean(|s| s.recall),
            f1: mean(|s| s.f1),
            support: total,
            precision_undefined: any(|s| s.precision_undefined),
            recall_undefined: any(|s| s.recall_undefined),
            f1_undefined: any(|s| s.f1_undefined),
        };
        let weighted_avg = Scores {
            precision: weighted(|s| s.precision),
            recall: weighted(|s| s.recall),
            f1: weighted(|s| s.f1),
            support: total,
            ..macro_avg.clone()
        };
        Ok(Self {
            class_names: class_names.to_vec(),
            per_class,
            accuracy: correct as f64 / total as f64,
            macro_avg,
            weighted_avg,
        })
    }

    /// The paper's F1: the support-weighted average of per-class F1.
    pub fn weighted_f1(&self) -> f64 {
        self.weighted_avg.f1
    }

    /// Classes whose precision, recall or F1 was undefined (scikit-learn would warn).
    pub fn undefined_classes(&self) -> Vec<&str> {
        self.class_names
            .iter()
            .zip(&self.per_class)
            .filter(|(_, s)| s.precision_undefined || s.recall_undefined || s.f1_undefined)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// JSON in scikit-learn's `output_dict` layout: one object per class name, then
    /// `"accuracy"`, `"macro avg"`, `"weighted avg"`.
    pub fn to_sklearn_json(&self) -> serde_json::Value {
        let scores = |s: &Scores| {
            serde_json::json!({
                "precision": s.precision, "recall": s.recall, "f1-score": s.f1,
                "support": s.support as f64,
            })
        };
        let mut map = serde_json::Map::new();
        for (name, s) in self.class_names.iter().zip(&self.per_class) {
            map.insert(name.clone(), scores(s));
        }
        map.insert("accuracy".into(), self.accuracy.into());
        map.insert("macro avg".into(), scores(&self.macro_avg));
        map.insert("weighted avg".into(), scores(&self.weighted_avg));
        serde_json::Value::Object(map)
    }
}

/// scikit-learn's text layout (`digits=2`).
impl fmt::Display for ClassificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = f.precision().unwrap_or(2);
        let width = self
            .class_names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(12);
        writeln!(
            f,
            "{:>width$}  {:>9} {:>9} {:>9} {:>9}",
            "", "precision", "recall", "f1-score", "support"
        )?;
        writeln!(f)?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, s: &Scores| {
            writeln!(
                f,
                "{name:>width$}  {:>9.digits$} {:>9.digits$} {:>9.digits$} {:>9}",
                s.precision, s.recall, s.f1, s.support
            )
        };
        for (name, s) in self.class_names.iter().zip(&self.per_class) {
            row(f, name, s)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:>width$}  {:>9} {:>9} {:>9.digits$} {:>9}",
            "accuracy", "", "", self.accuracy, self.weighted_avg.support
        )?;
        row(f, "macro avg", &self.macro_avg)?;
        row(f, "weighted avg", &self.weighted_avg)
    }
}
