//! Running a built [`Network`]: the op lists recorded into one submission per training step,
//! pass set or evaluation batch, and the few numbers read back.

use super::ops::Step;
use super::seg::Seg;
use super::{EngineError, EvalStats, Fwd, Network, StepStats};
use crate::dist::Dist;

impl<'g> Network<'g> {
    /// Number of kernel dispatches of one training step (forward, loss, backward, SGD).
    pub fn train_dispatches(&self) -> usize {
        let mut rec = Seg::new(self.gpu, None);
        self.record_train(&mut rec, true, &self.sel);
        rec.dispatches()
    }

    /// A recorder for one pass: it stops at every BN layer to combine statistics over
    /// the ranks when BN is synchronised ([`Network::set_bn_sync`]).
    pub(super) fn seg(&self) -> Seg<'_> {
        Seg::new(self.gpu, self.bn_sync.peers())
    }

    /// Synchronised batch norm over `dist`'s ranks: every train-mode BN layer (each set of
    /// a switchable BN included) normalises by the mean and variance of all ranks' parts of
    /// the batch, its backward uses their Σdy and Σdy·x̂, and the running statistics get
    /// the same update on every rank. Each BN layer then costs a read-back, an exchange and
    /// a write-back of its partial sums in the forward and again in the backward. Without
    /// peers (`Dist::single`) BN is per process again.
    pub fn set_bn_sync(&mut self, dist: Dist) {
        let ranks = dist.peers().map_or(1, |c| c.size());
        let gpu = self.gpu;
        for f in &self.forward {
            if let Fwd::Mode { train, .. } = f {
                train.each_bn_train(&mut |op| op.set_ranks(gpu, ranks));
            }
        }
        self.bn_sync = dist;
    }

    /// Whether BN statistics are synchronised over peers.
    pub fn bn_synced(&self) -> bool {
        self.bn_sync.peers().is_some()
    }

    /// Record one op-list entry; `sel[slot]` picks the variant of a quantized layer's ops.
    pub(super) fn step<'a>(&'a self, s: &'a Step, rec: &mut Seg<'a>, sel: &[usize]) {
        match s {
            Step::Op(op) => op.record(rec.rec()),
            Step::BnTrain(op) => rec.bn_train(op),
            Step::BnBackward(op) => rec.bn_backward(op),
            Step::Copy(a, b) => rec.rec().copy(&self.tensors[*a], &self.tensors[*b]),
            Step::Pick { slot, variants } => {
                let k = sel.get(*slot).copied().unwrap_or(0);
                if let Some(v) = variants.get(k).or_else(|| variants.first()) {
                    for s in v {
                        self.step(s, rec, sel);
                    }
                }
            }
        }
    }

    pub(super) fn record_forward<'a>(&'a self, rec: &mut Seg<'a>, train: bool, sel: &[usize]) {
        for f in &self.forward {
            self.record_fwd(f, rec, train, sel);
        }
    }

    pub(super) fn record_fwd<'a>(
        &'a self,
        f: &'a Fwd,
        rec: &mut Seg<'a>,
        train: bool,
        sel: &[usize],
    ) {
        match f {
            Fwd::Both(s) => self.step(s, rec, sel),
            Fwd::Mode { train: t, eval: e } => self.step(if train { t } else { e }, rec, sel),
        }
    }

    pub(super) fn record_train<'a>(&'a self, rec: &mut Seg<'a>, update: bool, sel: &[usize]) {
        // Quantization-aware backward ops accumulate into parameter gradients (several
        // passes per step): start from zero.
        if self.accumulate_grads {
            for p in &self.params {
                rec.rec().clear(&self.tensors[p.grad]);
            }
        }
        self.record_forward(rec, true, sel);
        self.loss_op.record(rec.rec());
        for s in &self.backward {
            self.step(s, rec, sel);
        }
        if update {
            for op in &self.sgd {
                op.record(rec.rec());
            }
        }
    }

    pub(super) fn upload(&mut self, x: &[f32], y: &[u32]) -> Result<(), EngineError> {
        let (c, h, w) = self.model.input;
        let per = c * h * w;
        let n = self.cfg.batch;
        if x.len() != n * per || y.len() != n {
            return Err(EngineError::Input(format!(
                "batch of {} labels and {} values; this network takes {n} images of {c}×{h}×{w} ({} values)",
                y.len(),
                x.len(),
                n * per
            )));
        }
        if let Some(bad) = y.iter().find(|&&l| l as usize >= self.model.classes) {
            return Err(EngineError::Input(format!(
                "label {bad} out of range for {} classes",
                self.model.classes
            )));
        }
        self.tensors[self.x].write_f32(self.gpu, x)?;
        self.tensors[self.labels].write_u32(self.gpu, y)?;
        Ok(())
    }

    fn run_train(&mut self, x: &[f32], y: &[u32], update: bool) -> Result<StepStats, EngineError> {
        self.upload(x, y)?;
        let mut rec = self.seg();
        self.record_train(&mut rec, update, &self.sel);
        let l = rec.read(&self.tensors[self.loss]);
        let c = rec.read(&self.tensors[self.correct]);
        let out = rec.submit()?;
        let loss = out.f32(l).first().copied().unwrap_or(f32::NAN);
        let correct = out.f32(c).first().copied().unwrap_or(0.0);
        Ok(StepStats {
            loss,
            correct: correct.max(0.0).round() as usize,
        })
    }

    /// The learning rate of the SGD ops (rewritten only when it changes).
    fn set_lr(&mut self, lr: f32) {
        if self.lr != Some(lr) {
            for op in &mut self.sgd {
                op.set_lr(self.gpu, lr);
            }
            self.lr = Some(lr);
        }
    }

    /// One SGD step at learning rate `lr` on a full batch: forward (train-mode BN, running
    /// statistics updated), loss, backward and the update in ONE submission; reads back only
    /// the loss and the number of correct predictions.
    pub fn train_step(&mut self, x: &[f32], y: &[u32], lr: f32) -> Result<StepStats, EngineError> {
        self.set_lr(lr);
        self.run_train(x, y, true)
    }

    /// Forward and backward without the update: fills every parameter gradient (read them
    /// with [`Network::read_grads`]). Train-mode BN: running statistics are updated.
    pub fn forward_backward(&mut self, x: &[f32], y: &[u32]) -> Result<StepStats, EngineError> {
        self.run_train(x, y, false)
    }

    /// Train-mode loss only (forward + loss; running statistics are updated).
    pub fn train_loss(&mut self, x: &[f32], y: &[u32]) -> Result<f32, EngineError> {
        self.upload(x, y)?;
        let mut rec = self.seg();
        self.record_forward(&mut rec, true, &self.sel);
        self.loss_op.record(rec.rec());
        let l = rec.read(&self.tensors[self.loss]);
        let out = rec.submit()?;
        Ok(out.f32(l).first().copied().unwrap_or(f32::NAN))
    }

    /// Eval-mode forward (running statistics) of up to `batch` images; returns the logits of
    /// the real images, `[k, classes]`. A short batch is padded with zero images.
    pub fn eval_logits(&mut self, x: &[f32]) -> Result<Vec<f32>, EngineError> {
        let (c, h, w) = self.model.input;
        let per = c * h * w;
        let n = self.cfg.batch;
        if x.is_empty() || x.len() % per != 0 || x.len() / per > n {
            return Err(EngineError::Input(format!(
                "eval batch of {} values: expected 1 to {n} images of {c}×{h}×{w}",
                x.len()
            )));
        }
        let k = x.len() / per;
        if k == n {
            self.tensors[self.x].write_f32(self.gpu, x)?;
        } else {
            self.pad_x.clear();
            self.pad_x.extend_from_slice(x);
            self.pad_x.resize(n * per, 0.0);
            self.tensors[self.x].write_f32(self.gpu, &self.pad_x)?;
        }
        let mut rec = self.seg();
        self.record_forward(&mut rec, false, &self.sel);
        let l = rec.read(&self.tensors[self.logits]);
        let out = rec.submit()?;
        let classes = self.model.classes;
        Ok(out.f32(l)[..k * classes].to_vec())
    }

    /// Eval-mode loss (no label smoothing) and accuracy of up to `batch` images.
    pub fn eval_batch(&mut self, x: &[f32], y: &[u32]) -> Result<EvalStats, EngineError> {
        let logits = self.eval_logits(x)?;
        let classes = self.model.classes;
        if logits.len() != y.len() * classes {
            return Err(EngineError::Input(format!(
                "eval batch: {} labels for {} images",
                y.len(),
                logits.len() / classes
            )));
        }
        let mut stats = EvalStats {
            count: y.len(),
            ..EvalStats::default()
        };
        for (row, &label) in logits.chunks_exact(classes).zip(y) {
            let label = label as usize;
            if label >= classes {
                return Err(EngineError::Input(format!(
                    "label {label} out of range for {classes} classes"
                )));
            }
            let mut arg = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[arg] {
                    arg = j;
                }
            }
            stats.correct += usize::from(arg == label);
            let max = row[arg] as f64;
            let lse = max
                + row
                    .iter()
                    .map(|v| (*v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            stats.loss_sum += lse - row[label] as f64;
        }
        Ok(stats)
    }

    /// Per selection: a train-mode forward at that selection, the loss, reads of the loss
    /// and the correct count, and the backward (gradients add up over the passes).
    /// Returns each pass's (loss, correct) read handles.
    fn record_passes<'a>(
        &'a self,
        rec: &mut Seg<'a>,
        sels: &'a [Vec<usize>],
    ) -> Vec<(usize, usize)> {
        let mut reads = Vec::with_capacity(sels.len());
        for sel in sels {
            self.record_forward(rec, true, sel);
            self.loss_op.record(rec.rec());
            let l = rec.read(&self.tensors[self.loss]);
            let c = rec.read(&self.tensors[self.correct]);
            reads.push((l, c));
            for s in &self.backward {
                self.step(s, rec, sel);
            }
        }
        reads
    }

    /// One optimizer step made of several passes on the same batch, ONE submission: clear
    /// every gradient, then per selection a train-mode forward with every quantized layer at
    /// its selected variant, the loss, the backward (gradients summed over the passes); then
    /// the SGD update of every parameter at `lr`. Returns each pass's loss and accuracy.
    pub fn train_passes(
        &mut self,
        x: &[f32],
        y: &[u32],
        lr: f32,
        sels: &[Vec<usize>],
    ) -> Result<Vec<StepStats>, EngineError> {
        for s in sels {
            self.check_sel(s)?;
        }
        self.set_lr(lr);
        self.upload(x, y)?;
        let mut rec = self.seg();
        for p in &self.params {
            rec.rec().clear(&self.tensors[p.grad]);
        }
        let reads = self.record_passes(&mut rec, sels);
        for op in &self.sgd {
            op.record(rec.rec());
        }
        let out = rec.submit()?;
        Ok(reads
            .into_iter()
            .map(|(l, c)| StepStats {
                loss: out.f32(l).first().copied().unwrap_or(f32::NAN),
                correct: out.f32(c).first().copied().unwrap_or(0.0).max(0.0).round() as usize,
            })
            .collect())
    }

    /// A data-parallel optimizer step: the work of [`Network::train_step`] (`sels` `None`:
    /// one pass at the current selection) or [`Network::train_passes`] (`Some`: one pass
    /// per selection, gradients summed) split in two submissions. The first runs the
    /// passes and reads back every parameter gradient; `sync` then replaces them (the mean
    /// over the job's ranks), they are written back, and the second submission runs the
    /// SGD update alone. With a `sync` that changes nothing the result is the one-submission
    /// step's, bit for bit (the same ops on the same values).
    pub fn train_step_synced(
        &mut self,
        x: &[f32],
        y: &[u32],
        lr: f32,
        sels: Option<&[Vec<usize>]>,
        sync: &mut dyn FnMut(&mut [Vec<f32>]),
    ) -> Result<Vec<StepStats>, EngineError> {
        let (sels, clear) = match sels {
            Some(s) => {
                for sel in s {
                    self.check_sel(sel)?;
                }
                (s.to_vec(), true)
            }
            None => (vec![self.sel.clone()], self.accumulate_grads),
        };
        self.set_lr(lr);
        self.upload(x, y)?;
        let (mut grads, stats) = {
            let mut rec = self.seg();
            if clear {
                for p in &self.params {
                    rec.rec().clear(&self.tensors[p.grad]);
                }
            }
            let reads = self.record_passes(&mut rec, &sels);
            let g: Vec<usize> = self
                .params
                .iter()
                .map(|p| rec.read(&self.tensors[p.grad]))
                .collect();
            let out = rec.submit()?;
            let stats: Vec<StepStats> = reads
                .into_iter()
                .map(|(l, c)| StepStats {
                    loss: out.f32(l).first().copied().unwrap_or(f32::NAN),
                    correct: out.f32(c).first().copied().unwrap_or(0.0).max(0.0).round() as usize,
                })
                .collect();
            let grads: Vec<Vec<f32>> = g.iter().map(|&i| out.f32(i).to_vec()).collect();
            (grads, stats)
        };
        sync(&mut grads);
        for (p, g) in self.params.iter().zip(&grads) {
            self.tensors[p.grad].write_f32(self.gpu, g)?;
        }
        let mut rec = self.seg();
        for op in &self.sgd {
            op.record(rec.rec());
        }
        rec.submit()?;
        Ok(stats)
    }

    /// Dispatches of a [`Network::train_passes`] submission with these selections.
    pub fn passes_dispatches(&self, sels: &[Vec<usize>]) -> usize {
        let mut rec = Seg::new(self.gpu, None);
        for sel in sels {
            self.record_forward(&mut rec, true, sel);
            self.loss_op.record(rec.rec());
            for s in &self.backward {
                self.step(s, &mut rec, sel);
            }
        }
        for op in &self.sgd {
            op.record(rec.rec());
        }
        rec.dispatches()
    }
}
