//! The batch loader: a thread that shuffles (seeded, per epoch), crops, flips and normalises on
//! the CPU and hands `Batch`es over a bounded crossbeam channel. Dropping the `Loader` (or its
//! receiver side) stops the thread at its next send.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};

use super::{DataError, Dataset};
use crate::rng::SeededRng;

/// Per-channel normalisation: `x = (pixel / 255 - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Training augmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Augment {
    /// Random crop back to the original size after zero-padding every side by this many pixels
    /// (0 = no crop). Padding is black (pixel 0), as torchvision's `RandomCrop(padding=p)`.
    pub crop_pad: usize,
    /// Mirror left-right with probability 1/2.
    pub hflip: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Shuffle every epoch (a permutation seeded by `seed` and the epoch number).
    pub shuffle: bool,
    pub seed: u64,
    /// Drop the last batch of an epoch when it is smaller than `batch_size`.
    pub drop_last: bool,
    pub augment: Augment,
    pub normalize: Normalize,
    /// First epoch number (for resuming: epoch e is the same whenever it is produced).
    pub start_epoch: usize,
    /// How many epochs to produce.
    pub epochs: usize,
    /// Batches buffered ahead of the consumer.
    pub prefetch: usize,
}

impl LoaderConfig {
    /// Training defaults for the dataset: shuffle, its augmentation and normalisation.
    pub fn train(ds: &Dataset, batch_size: usize, seed: u64, epochs: usize) -> Self {
        Self {
            batch_size,
            shuffle: true,
            seed,
            drop_last: true,
            augment: ds.kind.train_augment(),
            normalize: ds.kind.normalize(),
            start_epoch: 0,
            epochs,
            prefetch: 4,
        }
    }

    /// Evaluation defaults: file order, no augmentation, every example (last batch partial).
    pub fn eval(ds: &Dataset, batch_size: usize) -> Self {
        Self {
            shuffle: false,
            drop_last: false,
            augment: Augment::default(),
            epochs: 1,
            ..Self::train(ds, batch_size, 0, 1)
        }
    }

    fn check(&self, ds: &Dataset) -> Result<(), DataError> {
        let c = ds.shape.0;
        if self.batch_size == 0 {
            return Err(DataError::Invalid(
                "loader: batch_size must be at least 1".into(),
            ));
        }
        if self.normalize.mean.len() != c || self.normalize.std.len() != c {
            return Err(DataError::Invalid(format!(
                "loader: normalisation has {} means and {} stds for {c} channels",
                self.normalize.mean.len(),
                self.normalize.std.len()
            )));
        }
        if let Some(s) = self
            .normalize
            .std
            .iter()
            .find(|s| !(s.is_finite() && **s > 0.0))
        {
            return Err(DataError::Invalid(format!(
                "loader: normalisation std {s} must be positive"
            )));
        }
        if self.normalize.mean.iter().any(|m| !m.is_finite()) {
            return Err(DataError::Invalid(
                "loader: normalisation mean must be finite".into(),
            ));
        }
        Ok(())
    }

    pub fn batches_per_epoch(&self, len: usize) -> usize {
        if self.drop_last {
            len / self.batch_size
        } else {
            len.div_ceil(self.batch_size)
        }
    }
}

/// One batch: `x` `[n, c, h, w]` normalised f32, `y` labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
    pub n: usize,
    pub epoch: usize,
    /// Index of this batch within its epoch.
    pub index: usize,
    /// Dataset indices of the examples (for checks and debugging).
    pub ids: Vec<u32>,
}

/// Mixes the seed with a stream id so each epoch and batch gets an independent generator.
fn stream_seed(seed: u64, a: u64, b: u64) -> u64 {
    let mut r = SeededRng::new(
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
    );
    r.next_u64()
}

/// The example order of `epoch`: a seeded permutation, or file order without shuffling.
pub fn epoch_order(len: usize, cfg: &LoaderConfig, epoch: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..len as u32).collect();
    if cfg.shuffle {
        SeededRng::new(stream_seed(cfg.seed, 1, epoch as u64)).shuffle(&mut order);
    }
    order
}

/// Builds one batch from dataset indices `ids`, augmenting with `rng` (crop offset then flip,
/// drawn per example in order). Deterministic for a given `rng` state.
pub fn make_batch(
    ds: &Dataset,
    ids: &[u32],
    cfg: &LoaderConfig,
    rng: &mut SeededRng,
) -> Result<Batch, DataError> {
    cfg.check(ds)?;
    if let Some(i) = ids.iter().find(|i| **i as usize >= ds.len()) {
        return Err(DataError::Invalid(format!(
            "batch index {i} out of range ({} has {} examples)",
            ds.kind.name(),
            ds.len()
        )));
    }
    Ok(build_batch(ds, ids, cfg, rng))
}

/// [`make_batch`] after the checks.
fn build_batch(ds: &Dataset, ids: &[u32], cfg: &LoaderConfig, rng: &mut SeededRng) -> Batch {
    let (c, h, w) = ds.shape;
    let plane = h * w;
    let mut x = Vec::with_capacity(ids.len() * c * plane);
    let p = cfg.augment.crop_pad;
    let scale: Vec<(f32, f32)> = (0..c)
        .map(|ch| {
            (
                1.0 / (255.0 * cfg.normalize.std[ch]),
                cfg.normalize.mean[ch] / cfg.normalize.std[ch],
            )
        })
        .collect();
    for &id in ids {
        let img = ds.image(id as usize);
        let (oy, ox) = if p > 0 {
            (rng.below(2 * p + 1), rng.below(2 * p + 1))
        } else {
            (p, p)
        };
        let flip = cfg.augment.hflip && rng.below(2) == 1;
        for (ch, &(mul, sub)) in scale.iter().enumerate() {
            for yy in 0..h {
                // Output (yy, xx) reads padded (yy + oy, xx + ox) = original (yy + oy - p, ...).
                let sy = (yy + oy).wrapping_sub(p);
                for xx in 0..w {
                    let xs = if flip { w - 1 - xx } else { xx };
                    let sx = (xs + ox).wrapping_sub(p);
                    let pix = if sy < h && sx < w {
                        img[ch * plane + sy * w + sx]
                    } else {
                        0
                    };
                    x.push(pix as f32 * mul - sub);
                }
            }
        }
    }
    Batch {
        x,
        y: ids.iter().map(|&i| ds.labels[i as usize] as u32).collect(),
        n: ids.len(),
        epoch: 0,
        index: 0,
        ids: ids.to_vec(),
    }
}

/// Produces every batch of every configured epoch, in order, calling `emit` until it returns
/// false. The loader thread runs this; it is also usable synchronously.
pub fn produce(
    ds: &Dataset,
    cfg: &LoaderConfig,
    mut emit: impl FnMut(Batch) -> bool,
) -> Result<(), DataError> {
    cfg.check(ds)?;
    for epoch in cfg.start_epoch..cfg.start_epoch + cfg.epochs {
        let order = epoch_order(ds.len(), cfg, epoch);
        for (index, ids) in order.chunks(cfg.batch_size).enumerate() {
            if cfg.drop_last && ids.len() < cfg.batch_size {
                break;
            }
            let mut rng = SeededRng::new(stream_seed(cfg.seed, 2 + epoch as u64, index as u64));
            let mut b = build_batch(ds, ids, cfg, &mut rng);
            b.epoch = epoch;
            b.index = index;
            if !emit(b) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The loader thread and its receiving end. Iterate it for batches; drop it to stop the thread.
pub struct Loader {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    pub fn spawn(ds: Arc<Dataset>, cfg: LoaderConfig) -> Result<Self, DataError> {
        cfg.check(&ds)?;
        let (tx, rx) = bounded(cfg.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("limpq-loader".into())
            .spawn(move || {
                // Checked above; the only other way out is the receiver going away.
                let _ = produce(&ds, &cfg, |b| tx.send(b).is_ok());
            })
            .map_err(|e| DataError::Invalid(format!("loader: cannot start thread: {e}")))?;
        Ok(Self {
            rx: Some(rx),
            handle: Some(handle),
        })
    }

    /// The receiving end, e.g. for `crossbeam_channel::select!`.
    pub fn receiver(&self) -> &Receiver<Batch> {
        self.rx.as_ref().expect("receiver present until drop")
    }
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Disconnect first so a thread blocked on a full channel wakes with a send error.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
