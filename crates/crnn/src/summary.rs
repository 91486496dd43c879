//! [`keras_summary`]: the layer table Keras's `model.summary()` prints for a built-in network,
//! worked out from its config (layer names numbered per type as Keras 2 does, output shapes
//! channels-last, parameters per layer).

use crate::architecture::{CONV2D_GRU_UNITS, CRNN1D_CONVS, CRNN1D_POOL, SEQUENCE_UNITS};
use crate::{Architecture, CrnnConfig, Result};

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// Keras's name (`conv2d_1`).
    pub name: String,
    /// The layer class (`Conv2D`).
    pub kind: &'static str,
    /// Output shape without the batch (Keras's channels-last order).
    pub output: Vec<usize>,
    /// Parameters (BatchNorm's moving statistics included, as Keras counts them).
    pub params: usize,
    /// Of them, not trained (BatchNorm's moving mean and variance).
    pub non_trainable: usize,
}

/// Builds the rows, tracking the output shape and Keras's per-type counters.
struct Rows {
    rows: Vec<LayerRow>,
    shape: Vec<usize>,
}

impl Rows {
    fn add(&mut self, kind: &'static str, shape: Vec<usize>, params: usize, non_trainable: usize) {
        let n = self.rows.iter().filter(|r| r.kind == kind).count() + 1;
        let base = match kind {
            "BatchNormalization" => "batch_normalization".to_string(),
            "MaxPooling2D" => "max_pooling2d".to_string(),
            "MaxPooling1D" => "max_pooling1d".to_string(),
            k => k.to_lowercase(),
        };
        self.rows.push(LayerRow {
            name: format!("{base}_{n}"),
            kind,
            output: shape.clone(),
            params,
            non_trainable,
        });
        self.shape = shape;
    }

    fn keep(&mut self, kind: &'static str) {
        let shape = self.shape.clone();
        self.add(kind, shape, 0, 0);
    }

    fn batch_norm(&mut self, axis: usize) {
        let features = self.shape[axis];
        self.keep_with("BatchNormalization", 4 * features, 2 * features);
    }

    fn keep_with(&mut self, kind: &'static str, params: usize, non_trainable: usize) {
        let shape = self.shape.clone();
        self.add(kind, shape, params, non_trainable);
    }

    fn conv2d(&mut self, filters: usize) {
        let (f, t, c) = (self.shape[0], self.shape[1], self.shape[2]);
        self.add("Conv2D", vec![f, t, filters], 9 * c * filters + filters, 0);
    }

    fn pool2d(&mut self, (pf, pt): (usize, usize)) {
        let s = &self.shape;
        let shape = vec![s[0] / pf, s[1] / pt, s[2]];
        self.add("MaxPooling2D", shape, 0, 0);
    }

    fn reshape_to_time(&mut self) {
        let (f, t, c) = (self.shape[0], self.shape[1], self.shape[2]);
        self.add("Permute", vec![t, f, c], 0, 0);
        self.add("Reshape", vec![t, f * c], 0, 0);
    }

    fn recurrent(&mut self, kind: &'static str, gates: usize, units: usize, sequence: bool) {
        let (t, input) = (self.shape[0], self.shape[1]);
        let shape = if sequence {
            vec![t, units]
        } else {
            vec![units]
        };
        self.add(kind, shape, gates * (units * (input + units) + units), 0);
    }

    fn head(&mut self, n_classes: usize) {
        let input = self.shape[0];
        self.add("Dense", vec![n_classes], input * n_classes + n_classes, 0);
        self.keep("Activation");
    }
}

/// The rows Keras's `model.summary()` shows for the network of `config` (validated first).
/// Their parameters add up to Keras's `count_params()`, which the tests check against the
/// variables of the built network.
pub fn keras_summary(config: &CrnnConfig) -> Result<Vec<LayerRow>> {
    config.validate()?;
    let mut r = Rows {
        rows: Vec::new(),
        shape: vec![config.n_mels, config.slice_frames, 1],
    };
    let blocks: Vec<(Vec<usize>, (usize, usize))> = match config.architecture {
        Architecture::Crnn2d => config
            .conv_filters
            .iter()
            .zip(config.pool_sizes)
            .map(|(&f, p)| (vec![f], p))
            .collect(),
        a => a
            .conv2d_blocks()
            .map(|b| b.iter().map(|b| (b.filters.to_vec(), b.pool)).collect())
            .unwrap_or_default(),
    };
    if config.has_input_norm() {
        r.batch_norm(0);
    }
    match config.architecture {
        Architecture::Crnn1d => {
            r.reshape_to_time();
            for &(filters, width) in &CRNN1D_CONVS {
                let (t, c) = (r.shape[0], r.shape[1]);
                r.add(
                    "Conv1D",
                    vec![t + 1 - width, filters],
                    width * c * filters + filters,
                    0,
                );
                r.keep("Activation");
                let (t, c) = (r.shape[0], r.shape[1]);
                r.add("MaxPooling1D", vec![t / CRNN1D_POOL, c], 0, 0);
            }
            r.recurrent("GRU", 3, SEQUENCE_UNITS, true);
            r.recurrent("GRU", 3, SEQUENCE_UNITS, false);
        }
        Architecture::Rnn => {
            r.reshape_to_time();
            r.recurrent("LSTM", 4, SEQUENCE_UNITS, true);
            r.recurrent("LSTM", 4, SEQUENCE_UNITS, false);
        }
        a => {
            for (filters, pool) in blocks {
                for f in filters {
                    r.conv2d(f);
                    r.keep("Activation");
                    r.batch_norm(2);
                }
                r.pool2d(pool);
                r.keep("Dropout");
            }
            r.reshape_to_time();
            let units = if a == Architecture::Crnn2d {
                config.gru_units
            } else {
                CONV2D_GRU_UNITS
            };
            r.recurrent("GRU", 3, units, true);
            r.recurrent("GRU", 3, units, false);
            r.keep("Dropout");
        }
    }
    r.head(config.n_classes);
    Ok(r.rows)
}

/// The table as Keras prints it, ending with the lines `Total params: N` and `Trainable
/// params: M` (thousands separated by commas, as Keras).
pub fn format_keras_summary(config: &CrnnConfig, rows: &[LayerRow]) -> String {
    // Keras's columns, widened where a name would run into the shape.
    let w = rows
        .iter()
        .map(|r| r.name.len() + r.kind.len() + 4)
        .max()
        .unwrap_or(0)
        .max(29);
    let rule = |c: char| c.to_string().repeat(w + 36);
    let mut out = format!(
        "Model: \"{}\" ({} mels x {} frames, {} classes)\n{}\n{:<w$}{:<26}{}\n{}\n",
        config.architecture.keras_name(),
        config.n_mels,
        config.slice_frames,
        config.n_classes,
        rule('_'),
        "Layer (type)",
        "Output Shape",
        "Param #",
        rule('=')
    );
    for (i, row) in rows.iter().enumerate() {
        let shape = std::iter::once("None".to_string())
            .chain(row.output.iter().map(usize::to_string))
            .collect::<Vec<_>>()
            .join(", ");
        out += &format!(
            "{:<w$}{:<26}{}\n{}\n",
            format!("{} ({})", row.name, row.kind),
            format!("({shape})"),
            thousands(row.params),
            if i + 1 == rows.len() {
                rule('=')
            } else {
                rule('_')
            }
        );
    }
    let total: usize = rows.iter().map(|r| r.params).sum();
    let frozen: usize = rows.iter().map(|r| r.non_trainable).sum();
    out += &format!(
        "Total params: {}\nTrainable params: {}\n",
        thousands(total),
        thousands(total - frozen)
    );
    out
}

/// `1234567` as `1,234,567`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_model_adds_up_to_its_known_count() {
        let rows = keras_summary(&CrnnConfig::paper(20, 94)).unwrap();
        let total: usize = rows.iter().map(|r| r.params).sum();
        let frozen: usize = rows.iter().map(|r| r.non_trainable).sum();
        assert_eq!((total, total - frozen), (394_324, 393_172));
        assert_eq!(rows[0].name, "batch_normalization_1");
        assert_eq!(rows.last().map(|r| r.output.clone()), Some(vec![20]));
        let text = format_keras_summary(&CrnnConfig::paper(20, 94), &rows);
        assert!(text.contains("Total params: 394,324\nTrainable params: 393,172\n"));
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(999), "999");
    }
}
