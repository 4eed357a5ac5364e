//! Running a built [`Network`]: the op lists recorded into one submission per training step,
//! pass set or evaluation batch, and the few numbers read back.

use super::ops::Step;
use super::seg::{Seg, SegOut, SegPending};
use super::{EngineError, EvalStats, Fwd, Network, StepStats};
use crate::dist::Dist;
use crate::gpu::GpuError;

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
            self.clear_grads(rec);
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
        EvalStats::of_logits(&logits, y, self.model.classes)
    }

    /// Zeroes every parameter gradient (the backward ops of quantization-aware networks
    /// add to them).
    fn clear_grads<'a>(&'a self, rec: &mut Seg<'a>) {
        for p in &self.params {
            rec.rec().clear(&self.tensors[p.grad]);
        }
    }

    /// A train-mode forward at `sel` and the loss; returns the (loss, correct) read handles.
    fn record_forward_loss<'a>(&'a self, rec: &mut Seg<'a>, sel: &[usize]) -> (usize, usize) {
        self.record_forward(rec, true, sel);
        self.loss_op.record(rec.rec());
        let l = rec.read(&self.tensors[self.loss]);
        let c = rec.read(&self.tensors[self.correct]);
        (l, c)
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
            reads.push(self.record_forward_loss(rec, sel));
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
        self.clear_grads(&mut rec);
        let reads = self.record_passes(&mut rec, sels);
        for op in &self.sgd {
            op.record(rec.rec());
        }
        let out = rec.submit()?;
        Ok(pass_stats(&out, reads))
    }

    /// A data-parallel optimizer step: the work of [`Network::train_step`] (`sels` `None`:
    /// one pass at the current selection) or [`Network::train_passes`] (`Some`: one pass
    /// per selection, gradients summed), with every parameter gradient read back, replaced
    /// by `sync` (the mean over the job's ranks) and written back before the SGD update,
    /// which runs in a submission of its own.
    ///
    /// `sync` takes gradients flattened in parameter order. With buckets
    /// ([`Network::set_grad_bucket_bytes`], not with synchronised BN) it is called once per
    /// bucket, on a thread of its own, as soon as the bucket's gradients are complete
    /// (a bucket holds the parameters of consecutive layers in backward order), while the GPU
    /// runs the rest of the last pass's backward; otherwise once on every gradient after the
    /// backward. Either way each gradient goes through `sync` once, in a fixed order, and
    /// with a `sync` that changes nothing the result is the one-submission step's, bit for
    /// bit (the same ops on the same values).
    pub fn train_step_synced(
        &mut self,
        x: &[f32],
        y: &[u32],
        lr: f32,
        sels: Option<&[Vec<usize>]>,
        sync: &(dyn Fn(&mut [f32]) + Sync),
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
        let stats = if self.overlaps() {
            self.passes_overlapped(&sels, clear, sync)?
        } else {
            self.passes_then_sync(&sels, clear, sync)?
        };
        let mut rec = self.seg();
        for op in &self.sgd {
            op.record(rec.rec());
        }
        rec.submit()?;
        Ok(stats)
    }

    /// The size of the gradient buckets of [`Network::train_step_synced`] (bytes; the
    /// default [`super::GRAD_BUCKET_BYTES`] or [`super::GRAD_BUCKET_ENV`]); 0: no buckets,
    /// every gradient exchanged after the backward.
    pub fn set_grad_bucket_bytes(&mut self, bytes: usize) {
        self.grad_bucket_bytes = bytes;
    }

    /// The bytes of gradients in each bucket of a data-parallel step, in the order they are
    /// exchanged (one entry: no overlap).
    pub fn grad_bucket_sizes(&self) -> Vec<usize> {
        if !self.overlaps() {
            return vec![self.params.iter().map(|p| p.info.len * 4).sum()];
        }
        self.grad_buckets()
            .iter()
            .map(|(_, ps)| ps.iter().map(|&p| self.params[p].info.len * 4).sum())
            .collect()
    }

    /// Whether a data-parallel step exchanges its gradients in buckets during the backward:
    /// buckets are on, and BN is not synchronised (its cuts' exchanges would interleave
    /// with the buckets').
    fn overlaps(&self) -> bool {
        self.grad_bucket_bytes > 0 && self.bn_sync.peers().is_none()
    }

    /// The parameters in buckets of about `grad_bucket_bytes`, in the backward's order: per
    /// bucket, the end of its last layer's backward ops in `backward` and its parameters.
    /// The last bucket ends with the backward.
    pub(super) fn grad_buckets(&self) -> Vec<(usize, Vec<usize>)> {
        let mut by_node: Vec<Vec<usize>> = vec![Vec::new(); self.bw_end.len()];
        for (k, p) in self.params.iter().enumerate() {
            if let Some(v) = by_node.get_mut(p.info.node) {
                v.push(k);
            }
        }
        let mut buckets = Vec::new();
        let (mut cur, mut bytes) = (Vec::new(), 0usize);
        for node in (0..by_node.len()).rev() {
            for &k in &by_node[node] {
                cur.push(k);
                bytes += self.params[k].info.len * 4;
            }
            if !cur.is_empty() && bytes >= self.grad_bucket_bytes {
                buckets.push((self.bw_end[node], std::mem::take(&mut cur)));
                bytes = 0;
            }
        }
        if !cur.is_empty() {
            buckets.push((self.backward.len(), cur));
        }
        if let Some(last) = buckets.last_mut() {
            last.0 = self.backward.len();
        }
        buckets
    }

    /// Every pass in one submission, every gradient read back at its end, `sync` once on
    /// all of them (flattened in parameter order), written back.
    fn passes_then_sync(
        &self,
        sels: &[Vec<usize>],
        clear: bool,
        sync: &(dyn Fn(&mut [f32]) + Sync),
    ) -> Result<Vec<StepStats>, EngineError> {
        let mut rec = self.seg();
        if clear {
            self.clear_grads(&mut rec);
        }
        let reads = self.record_passes(&mut rec, sels);
        let g: Vec<usize> = self
            .params
            .iter()
            .map(|p| rec.read(&self.tensors[p.grad]))
            .collect();
        let out = rec.submit()?;
        let mut flat = concat_reads(&out, &g);
        sync(&mut flat);
        self.write_grads(self.params.iter().map(|p| p.grad), &flat)?;
        Ok(pass_stats(&out, reads))
    }

    /// Writes `flat` back into the gradient tensors `grads`, in order.
    fn write_grads(
        &self,
        grads: impl Iterator<Item = usize>,
        flat: &[f32],
    ) -> Result<(), EngineError> {
        let mut at = 0;
        for g in grads {
            let t = &self.tensors[g];
            let part = flat.get(at..at + t.len()).ok_or_else(|| {
                EngineError::Input(format!(
                    "gradient sync returned {} values, fewer than the gradients hold",
                    flat.len()
                ))
            })?;
            t.write_f32(self.gpu, part)?;
            at += t.len();
        }
        Ok(())
    }

    /// The passes with the last one's backward cut at the end of each gradient bucket:
    /// each part is submitted without waiting and handed to a thread that waits for it,
    /// reads the bucket's gradients back, runs `sync` on them and writes them back, while
    /// this thread records and submits the next part. Queue order guarantees the write-back
    /// lands before anything submitted later, and nothing later touches a finished bucket.
    fn passes_overlapped(
        &self,
        sels: &[Vec<usize>],
        clear: bool,
        sync: &(dyn Fn(&mut [f32]) + Sync),
    ) -> Result<Vec<StepStats>, EngineError> {
        let Some((last, first)) = sels.split_last() else {
            return Ok(Vec::new());
        };
        let buckets = self.grad_buckets();
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel::<(usize, SegPending<'_>, Vec<usize>)>();
            let buckets = &buckets;
            let worker = scope.spawn(move || -> Result<(), EngineError> {
                for (k, pending, handles) in rx {
                    let ps = &buckets[k].1;
                    let mut flat = concat_reads(&pending.wait()?, &handles);
                    sync(&mut flat);
                    self.write_grads(ps.iter().map(|&p| self.params[p].grad), &flat)?;
                }
                Ok(())
            });
            let submitted = (|| -> Result<(SegPending<'_>, Vec<(usize, usize)>), EngineError> {
                // Every pass but the last, and the last one's forward and loss.
                let mut rec = self.seg();
                if clear {
                    self.clear_grads(&mut rec);
                }
                let mut reads = self.record_passes(&mut rec, first);
                reads.push(self.record_forward_loss(&mut rec, last));
                let head = rec.submit_pending()?;
                let mut start = 0;
                for (k, (end, ps)) in buckets.iter().enumerate() {
                    let mut rec = self.seg();
                    for s in &self.backward[start..*end] {
                        self.step(s, &mut rec, last);
                    }
                    start = *end;
                    let handles: Vec<usize> = ps
                        .iter()
                        .map(|&p| rec.read(&self.tensors[self.params[p].grad]))
                        .collect();
                    if tx.send((k, rec.submit_pending()?, handles)).is_err() {
                        break; // the thread stopped on an error; join() returns it
                    }
                }
                Ok((head, reads))
            })();
            drop(tx);
            let joined = worker.join().unwrap_or_else(|_| {
                Err(EngineError::Gpu(GpuError::Internal(
                    "the gradient exchange thread panicked".into(),
                )))
            });
            let (head, reads) = submitted?;
            joined?;
            let out = head.wait()?;
            Ok(pass_stats(&out, reads))
        })
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

/// The values of the reads `handles`, one after another (gradients flattened for `sync`).
fn concat_reads(out: &SegOut, handles: &[usize]) -> Vec<f32> {
    let mut flat = Vec::with_capacity(handles.iter().map(|&h| out.f32(h).len()).sum());
    for &h in handles {
        flat.extend_from_slice(out.f32(h));
    }
    flat
}

/// Each pass's loss and correct count from the (loss, correct) read handles.
fn pass_stats(out: &SegOut, reads: Vec<(usize, usize)>) -> Vec<StepStats> {
    reads
        .into_iter()
        .map(|(l, c)| StepStats {
            loss: out.f32(l).first().copied().unwrap_or(f32::NAN),
            correct: out.f32(c).first().copied().unwrap_or(0.0).max(0.0).round() as usize,
        })
        .collect()
}
