//! The batch loader: worker threads that shuffle (seeded, per epoch), decode (image folders),
//! crop, flip and normalise on the CPU and hand `Batch`es over bounded crossbeam channels, in
//! order. Dropping the `Loader` stops the threads at their next send.

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
    /// Image folders: crop the resized image at a random offset (else in the centre).
    pub random_crop: bool,
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
            augment: ds.train_augment(),
            normalize: ds.normalize(),
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
    build_batch(ds, ids, cfg, rng)
}

/// [`make_batch`] after the checks. An image folder's files are read and decoded here; an
/// unreadable one is the error (naming the file).
fn build_batch(
    ds: &Dataset,
    ids: &[u32],
    cfg: &LoaderConfig,
    rng: &mut SeededRng,
) -> Result<Batch, DataError> {
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
    let mut decoded;
    for &id in ids {
        let img = match &ds.folder {
            Some(f) => {
                let crop_rng = cfg.augment.random_crop.then_some(&mut *rng);
                decoded = f.load(id as usize, crop_rng)?;
                decoded.as_slice()
            }
            None => ds.image(id as usize),
        };
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
    Ok(Batch {
        x,
        y: ids.iter().map(|&i| ds.labels[i as usize] as u32).collect(),
        n: ids.len(),
        epoch: 0,
        index: 0,
        ids: ids.to_vec(),
    })
}

/// Produces every batch of every configured epoch, in order, calling `emit` until it returns
/// false. The loader threads run this; it is also usable synchronously.
pub fn produce(
    ds: &Dataset,
    cfg: &LoaderConfig,
    emit: impl FnMut(Batch) -> bool,
) -> Result<(), DataError> {
    produce_part(ds, cfg, 0, 1, emit)
}

/// [`produce`] of the batches whose position in the run (counted over every epoch) is
/// `part` modulo `parts`: worker `part` of `parts`.
fn produce_part(
    ds: &Dataset,
    cfg: &LoaderConfig,
    part: usize,
    parts: usize,
    mut emit: impl FnMut(Batch) -> bool,
) -> Result<(), DataError> {
    cfg.check(ds)?;
    let mut seq = 0usize;
    for epoch in cfg.start_epoch..cfg.start_epoch + cfg.epochs {
        let order = epoch_order(ds.len(), cfg, epoch);
        for (index, ids) in order.chunks(cfg.batch_size).enumerate() {
            if cfg.drop_last && ids.len() < cfg.batch_size {
                break;
            }
            seq += 1;
            if (seq - 1) % parts != part {
                continue;
            }
            let mut rng = SeededRng::new(stream_seed(cfg.seed, 2 + epoch as u64, index as u64));
            let mut b = build_batch(ds, ids, cfg, &mut rng)?;
            b.epoch = epoch;
            b.index = index;
            if !emit(b) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Worker threads a loader starts for `ds`: one for data in memory (copying pixels is cheap),
/// up to 8 (and the machine's cores) for an image folder, whose images are decoded per batch.
pub fn loader_workers(ds: &Dataset) -> usize {
    if ds.folder.is_none() {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// The loader threads and their receiving ends. Iterate it for batches (or call
/// [`Loader::next_batch`] to get a decoding error too); drop it to stop the threads.
///
/// Worker k of W builds batches k, k + W, k + 2W, … of the run, each from its own seeded
/// stream, and the loader takes them in turn: the batches are the same, in the same order,
/// whatever the number of workers.
pub struct Loader {
    rxs: Vec<Receiver<Result<Batch, DataError>>>,
    handles: Vec<JoinHandle<()>>,
    /// Position of the next batch in the run.
    seq: usize,
    /// The error that ended the batches, until taken.
    error: Option<DataError>,
    done: bool,
}

impl Loader {
    pub fn spawn(ds: Arc<Dataset>, cfg: LoaderConfig) -> Result<Self, DataError> {
        cfg.check(&ds)?;
        let workers = loader_workers(&ds);
        let depth = cfg.prefetch.max(1).div_ceil(workers);
        let mut loader = Self {
            rxs: Vec::with_capacity(workers),
            handles: Vec::with_capacity(workers),
            seq: 0,
            error: None,
            done: false,
        };
        for part in 0..workers {
            let (tx, rx) = bounded(depth);
            let (ds, cfg) = (ds.clone(), cfg.clone());
            let handle = std::thread::Builder::new()
                .name(format!("limpq-loader-{part}"))
                .spawn(move || {
                    let r = produce_part(&ds, &cfg, part, workers, |b| tx.send(Ok(b)).is_ok());
                    if let Err(e) = r {
                        // The consumer sees it in turn; gone, it no longer matters.
                        let _ = tx.send(Err(e));
                    }
                })
                .map_err(|e| DataError::Invalid(format!("loader: cannot start thread: {e}")))?;
            // Pushed as started: a failure above drops (and so stops and joins) those before.
            loader.rxs.push(rx);
            loader.handles.push(handle);
        }
        Ok(loader)
    }

    /// The next batch; `Ok(None)` after the last one; the error (e.g. an image file that
    /// cannot be decoded, named) that stopped the batches early.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, DataError> {
        match self.next() {
            Some(b) => Ok(Some(b)),
            None => match self.error.take() {
                Some(e) => Err(e),
                None => Ok(None),
            },
        }
    }

    /// The error that ended the batches early, if any (taken: asked again, None).
    pub fn take_error(&mut self) -> Option<DataError> {
        self.error.take()
    }
}

impl Iterator for Loader {
    type Item = Batch;
    /// The next batch, None at the end and after an error ([`Loader::take_error`]).
    fn next(&mut self) -> Option<Batch> {
        if self.done || self.rxs.is_empty() {
            return None;
        }
        let rx = &self.rxs[self.seq % self.rxs.len()];
        match rx.recv() {
            Ok(Ok(b)) => {
                self.seq += 1;
                Some(b)
            }
            Ok(Err(e)) => {
                self.error = Some(e);
                self.done = true;
                None
            }
            // The worker of this batch ended without it: every batch was produced.
            Err(_) => {
                self.done = true;
                None
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Disconnect first so a thread blocked on a full channel wakes with a send error.
        self.rxs.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
