//! [`FitParams`]: what [`Trainer::fit`](crate::Trainer::fit) trains, where, and how.

use std::path::Path;

use tch::Device;

use crate::data::{SliceSource, check_source};
use crate::trainer::ExistingRun;
use crate::{ConvAlgorithm, ConvBackend, Error, NetworkSpec, ProcessGroup, Result};

/// What [`Trainer::fit`](crate::Trainer::fit) trains and where: the network, its class names, the data and the
/// model directory (required, [`FitParams::new`]), and settings with defaults, each set by a
/// method of the same name. [`check`](Self::check) tests every rule; `fit` calls it.
///
/// ```no_run
/// # use crnn::{CrnnConfig, ExistingRun, FitParams, Silent, Trainer, ViewSource};
/// # fn demo(train: &ViewSource<'_>, val: &ViewSource<'_>, names: &[String]) -> crnn::Result<()> {
/// let config = CrnnConfig::paper(names.len(), 94);
/// let params = FitParams::new(&config, names, train, val, "model".as_ref())
///     .device(tch::Device::Cpu)
///     .existing(ExistingRun::Resume);
/// let outcome = Trainer::default().fit(params, &mut Silent)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FitParams<'a> {
    /// The network to build: a [`CrnnConfig`](crate::CrnnConfig) (any of the five built-in
    /// architectures) or another project's [`NetworkSpec`].
    pub model: &'a dyn NetworkSpec,
    /// One name per class, in label order (saved in `config.json`).
    pub class_names: &'a [String],
    /// Training slices.
    pub train: &'a dyn SliceSource,
    /// Validation slices (best epoch, early stopping).
    pub val: &'a dyn SliceSource,
    /// The model directory.
    pub dir: &'a Path,
    /// Where to train.
    ///
    /// Default: `Device::Cpu`.
    pub device: Device,
    /// What to do with a run already in `dir`.
    ///
    /// Default: [`ExistingRun::Refuse`].
    pub existing: ExistingRun,
    /// Anything to keep in `config.json` beside the run (a resumed run must match it).
    ///
    /// Default: `null`.
    pub metadata: serde_json::Value,
    /// How the conv stack runs; `None` is the device's default
    /// ([`ConvBackend::default_for`]). Not saved: resume with the same backend to continue
    /// bit for bit (the backends draw different dropout masks).
    ///
    /// Default: `None`.
    pub backend: Option<ConvBackend>,
    /// How [`ConvBackend::FusedCpu`] runs the 3x3 convolutions of blocks 2-4
    /// ([`Crnn2d::set_conv_algorithm`](crate::Crnn2d::set_conv_algorithm)). Not saved, as the
    /// backend.
    ///
    /// Default: [`ConvAlgorithm::Winograd`].
    pub conv_algorithm: ConvAlgorithm,
    /// Data-parallel training across this process group (every rank calls `fit` with the
    /// same data and settings); `None` trains in this process alone. See the crate README's
    /// "Data-parallel training" for what each rank does.
    ///
    /// Default: `None`.
    pub group: Option<&'a ProcessGroup>,
    /// Also keep every epoch's weights, as `epochs/epoch-<n>.safetensors` in the model
    /// directory, so that another monitor's choice can be made afterwards without training
    /// again ([`reselect`](crate::reselect)). About the size of `weights.safetensors` per
    /// epoch.
    ///
    /// Default: `false`.
    pub keep_epoch_weights: bool,
}

impl std::fmt::Debug for FitParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitParams")
            .field("model", &self.model.to_json().ok())
            .field("class_names", &self.class_names)
            .field("train_slices", &self.train.len())
            .field("val_slices", &self.val.len())
            .field("dir", &self.dir)
            .field("device", &self.device)
            .field("existing", &self.existing)
            .field("metadata", &self.metadata)
            .field("backend", &self.backend)
            .field("conv_algorithm", &self.conv_algorithm)
            .field("keep_epoch_weights", &self.keep_epoch_weights)
            .field(
                "group",
                &self
                    .group
                    .map(|g| format!("rank {} of {}", g.rank(), g.world_size())),
            )
            .finish()
    }
}

impl<'a> FitParams<'a> {
    /// The required parts; the rest at their defaults.
    pub fn new(
        model: &'a dyn NetworkSpec,
        class_names: &'a [String],
        train: &'a dyn SliceSource,
        val: &'a dyn SliceSource,
        dir: &'a Path,
    ) -> Self {
        Self {
            model,
            class_names,
            train,
            val,
            dir,
            device: Device::Cpu,
            existing: ExistingRun::Refuse,
            metadata: serde_json::Value::Null,
            backend: None,
            conv_algorithm: ConvAlgorithm::default(),
            group: None,
            keep_epoch_weights: false,
        }
    }

    /// Sets [`device`](Self::device).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Sets [`existing`](Self::existing).
    pub fn existing(mut self, existing: ExistingRun) -> Self {
        self.existing = existing;
        self
    }

    /// Sets [`metadata`](Self::metadata).
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets [`backend`](Self::backend).
    pub fn backend(mut self, backend: ConvBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Sets [`conv_algorithm`](Self::conv_algorithm).
    pub fn conv_algorithm(mut self, algorithm: ConvAlgorithm) -> Self {
        self.conv_algorithm = algorithm;
        self
    }

    /// Sets [`keep_epoch_weights`](Self::keep_epoch_weights).
    pub fn keep_epoch_weights(mut self, keep: bool) -> Self {
        self.keep_epoch_weights = keep;
        self
    }

    /// Sets [`group`](Self::group).
    pub fn group(mut self, group: &'a ProcessGroup) -> Self {
        self.group = Some(group);
        self
    }

    /// Every rule: a valid network (a shape it cannot take is refused with the rule named),
    /// one class name per class, non-empty sources of the network's slice shape with labels
    /// below the class count, and a backend that runs the network on the device.
    pub fn check(&self) -> Result<()> {
        let spec = self.model;
        spec.validate()?;
        let ((n_mels, frames), n_classes) = (spec.input_shape(), spec.n_classes());
        if self.class_names.len() != n_classes {
            return Err(Error::InvalidConfig {
                field: "class_names",
                rule: format!("{} names for {n_classes} classes", self.class_names.len()),
            });
        }
        for (what, source) in [("training data", self.train), ("validation data", self.val)] {
            check_source(what, source, n_mels, frames, Some(n_classes))?;
        }
        if let Some(b) = self.backend {
            spec.check_backend(b, self.device)?;
        }
        Ok(())
    }
}
