//! The t-SNE of the 32-d bottleneck (`representation.py` of the paper).

use std::path::Path;

use anyhow::{Result, bail};
use artist20::{Split, TrackFeatures};
use crnn::TrainedModel;
use eval::TsneConfig;

use crate::experiment::SplitSlices;

/// What [`write_tsne`] embeds and where it writes.
pub struct TsneParams<'a> {
    /// The trained model whose bottleneck is embedded.
    pub model: &'a TrainedModel,
    /// The corpus's features.
    pub features: &'a TrackFeatures,
    /// The split that labels the tracks.
    pub split: &'a Split,
    /// The tracks whose slices are embedded (the test songs, say).
    pub tracks: &'a [usize],
    /// Where the model runs.
    pub device: tch::Device,
    /// Folder of `tsne.csv` and `tsne.png`.
    pub out: &'a Path,
    /// The PNG's title.
    pub title: &'a str,
}

/// Embeds the slices of `params.tracks` with the model, runs t-SNE and writes `tsne.csv`
/// (`x0,x1,label`, as the paper's CSV) and `tsne.png` into `params.out`. Returns the point
/// count.
pub fn write_tsne(params: &TsneParams<'_>) -> Result<usize> {
    let TsneParams {
        model,
        features,
        split,
        tracks,
        device,
        out,
        title,
    } = *params;
    let (n_mels, slice_frames) = model.model.input_shape();
    let meta: crate::experiment::ModelMetadata =
        serde_json::from_value(model.file.metadata.clone())?;
    let slices = SplitSlices::new(
        features,
        split,
        tracks,
        slice_frames,
        meta.slice_mode,
        n_mels,
    )?;
    if slices.index.len() < 100 {
        bail!(
            "{} slices: too few for a t-SNE with perplexity 30 (needs > 90); use --all-songs or a shorter slice",
            slices.index.len()
        );
    }
    let emb = crnn::embed(&model.model, &slices, 256, device)?;
    let xy = eval::tsne(emb.view(), &TsneConfig::default())?;
    let names = &model.file.class_names;
    std::fs::create_dir_all(out)?;
    let mut csv = String::from("x0,x1,label\n");
    for (p, &l) in xy.outer_iter().zip(slices.labels()) {
        csv += &format!("{},{},{}\n", p[0], p[1], names[l]);
    }
    crate::cli::write_atomic(&out.join("tsne.csv"), |tmp| Ok(std::fs::write(tmp, csv)?))?;
    eval::plot::plot_scatter(
        &out.join("tsne.png"),
        xy.view(),
        slices.labels(),
        names,
        title,
    )?;
    Ok(xy.nrows())
}
