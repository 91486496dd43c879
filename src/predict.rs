//! Artist prediction for one audio file with a trained model: decode (any format audio-io
//! reads, any rate), log-mel over the whole file, the model's slices, the paper's vote. The
//! `predict` example prints it; tests call it directly.

use anyhow::{Context, Result, bail};
use artist20::{SliceIndex, SliceMode};
use crnn::{TrainedModel, ViewSource};
use eval::VoteRule;

use crate::experiment::ModelMetadata;

/// A loaded model with what is needed to feed it: its feature metadata and mel plan.
pub struct Predictor {
    /// The model.
    pub model: TrainedModel,
    /// The features it was trained on (from its config.json).
    pub meta: ModelMetadata,
    /// The mel plan of those features.
    pub plan: melspec::MelSpectrogram,
}

/// One file's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Mean probability per class over the slices.
    pub mean_probability: Vec<f64>,
    /// Slices voting for each class (the paper's rule).
    pub votes: Vec<u32>,
    /// Slices the file gave.
    pub slices: usize,
}

impl Predictor {
    /// Loads the model directory (`OUT/<split>/<frames>/seed-<seed>/model`) onto `device`.
    pub fn load(dir: &std::path::Path, device: tch::Device) -> Result<Self> {
        let model = crate::cli::load_model(dir, device)
            .with_context(|| format!("loading the model in {}", dir.display()))?;
        let meta: ModelMetadata = serde_json::from_value(model.file.metadata.clone())
            .with_context(|| format!("{}: config.json has no feature metadata (not a model of this project's experiment)", dir.display()))?;
        let n_mels = model.model.input_shape().0;
        if meta.features.mel.n_mels != n_mels {
            bail!(
                "{}: the model takes {} mel bands but its features have {}",
                dir.display(),
                n_mels,
                meta.features.mel.n_mels
            );
        }
        let plan = melspec::MelSpectrogram::new(meta.features.mel.clone())?;
        Ok(Self { model, meta, plan })
    }

    /// Predicts one file; errors name it (undecodable, too short for one slice, ...).
    pub fn predict(&self, file: &std::path::Path, device: tch::Device) -> Result<Prediction> {
        let (mean_probability, votes, slices) = predict(
            &self.model,
            &self.meta,
            &self.plan,
            file,
            self.model.model.input_shape().1,
            device,
        )?;
        Ok(Prediction {
            mean_probability,
            votes,
            slices,
        })
    }
}

/// Mean probability per class, vote counts (paper rule), slice count.
fn predict(
    model: &TrainedModel,
    meta: &ModelMetadata,
    plan: &melspec::MelSpectrogram,
    file: &std::path::Path,
    frames: usize,
    device: tch::Device,
) -> Result<(Vec<f64>, Vec<u32>, usize)> {
    let audio = audio_io::load(file, &meta.features.load_options())?;
    let mel = plan
        .db(&audio.samples)
        .with_context(|| format!("{}: log-mel", file.display()))?;
    let features = vec![Some(mel)];
    // The model's slicing rule; a file too short for it still gets its full windows.
    let mut index = SliceIndex::new(&features, &[0], frames, meta.slice_mode)?;
    if index.is_empty() {
        index = SliceIndex::new(&features, &[0], frames, SliceMode::AllFull)?;
    }
    if index.is_empty() {
        bail!(
            "{}: {:.1} s of audio is shorter than one {frames}-frame slice ({:.1} s)",
            file.display(),
            audio.duration_s(),
            frames as f64 / meta.features.mel.frames_per_second()
        );
    }
    let views = (0..index.len())
        .filter_map(|i| index.view(&features, i))
        .collect::<Vec<_>>();
    let n = views.len();
    let source = ViewSource::new(views, vec![0; n])?;
    let probs = crnn::predict_proba(&model.model, &source, 256, device)?;
    let votes = eval::song_votes(probs.view(), &vec![0; n], VoteRule::Paper)?;
    let vote = &votes[0];
    Ok((vote.mean_probability.clone(), vote.counts.clone(), n))
}
