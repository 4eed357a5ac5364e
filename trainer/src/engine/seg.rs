//! Recording a pass that may have to stop halfway: synchronised BN needs the ranks' partial
//! sums combined on the host between a BN layer's partial kernel and the rest of it. A
//! [`Seg`] records into one [`Recorder`] and, at each such point (only when the network has
//! peers to synchronise BN with), submits what it has, reads the partials back, combines
//! them through the communicator, writes them back and goes on in a new submission. Without
//! peers it is one recorder and one submission, exactly as before.

use crate::dist::Comm;
use crate::gpu::recorder::Pending;
use crate::gpu::{Gpu, GpuError};
use crate::kernels::norm::{combine_stats, BatchNorm2d, BatchNorm2dBackward};
use crate::kernels::{Readbacks, Recorder, Tensor};

pub(crate) struct Seg<'a> {
    gpu: &'a Gpu,
    rec: Recorder<'a>,
    /// The communicator of synchronised BN (peers only).
    sync: Option<&'a dyn Comm>,
    done: Vec<Readbacks>,
    /// Read handle → (submission, read index in it).
    handles: Vec<(usize, usize)>,
    /// The first error of an intermediate submission; the rest of the pass is skipped.
    err: Option<GpuError>,
    dispatches: usize,
}

/// What a [`Seg`]'s submissions read back, by the handles [`Seg::read`] returned.
pub(crate) struct SegOut {
    done: Vec<Readbacks>,
    handles: Vec<(usize, usize)>,
}

impl SegOut {
    pub(crate) fn f32(&self, h: usize) -> &[f32] {
        match self.handles.get(h) {
            Some(&(s, i)) => self.done.get(s).map_or(&[], |r| r.f32(i)),
            None => &[],
        }
    }
}

/// A submitted, uncut [`Seg`] whose reads are not mapped yet ([`Seg::submit_pending`]).
pub(crate) struct SegPending<'a> {
    pending: Pending<'a>,
    handles: Vec<(usize, usize)>,
}

impl SegPending<'_> {
    pub(crate) fn wait(self) -> Result<SegOut, GpuError> {
        Ok(SegOut {
            done: vec![self.pending.wait()?],
            handles: self.handles,
        })
    }
}

impl<'a> Seg<'a> {
    pub(crate) fn new(gpu: &'a Gpu, sync: Option<&'a dyn Comm>) -> Seg<'a> {
        Seg {
            gpu,
            rec: Recorder::new(gpu),
            sync,
            done: Vec::new(),
            handles: Vec::new(),
            err: None,
            dispatches: 0,
        }
    }

    /// The recorder of the current submission.
    pub(crate) fn rec(&mut self) -> &mut Recorder<'a> {
        &mut self.rec
    }

    pub(crate) fn read(&mut self, t: &'a Tensor) -> usize {
        let i = self.rec.read(t);
        self.handles.push((self.done.len(), i));
        self.handles.len() - 1
    }

    /// Dispatches recorded so far (every submission).
    pub(crate) fn dispatches(&self) -> usize {
        self.dispatches + self.rec.dispatches()
    }

    /// Submits what is recorded, reading `t` back at its end; the next ops go to a new
    /// submission.
    fn cut(&mut self, t: &'a Tensor) -> Option<Vec<f32>> {
        if self.err.is_some() {
            return None;
        }
        let i = self.rec.read(t);
        let rec = std::mem::replace(&mut self.rec, Recorder::new(self.gpu));
        self.dispatches += rec.dispatches();
        match rec.submit() {
            Ok(out) => {
                let data = out.f32(i).to_vec();
                self.done.push(out);
                Some(data)
            }
            Err(e) => {
                self.err = Some(e);
                None
            }
        }
    }

    fn write_back(&mut self, t: &'a Tensor, data: &[f32]) {
        if let Err(e) = t.write_f32(self.gpu, data) {
            self.err.get_or_insert(e);
        }
    }

    /// A train-mode BN forward; with peers, its statistics over every rank's part.
    pub(crate) fn bn_train(&mut self, op: &'a BatchNorm2d) {
        let (Some(c), Some(p)) = (self.sync, op.partials()) else {
            op.record(&mut self.rec);
            return;
        };
        op.record_partial(&mut self.rec);
        let Some(mut data) = self.cut(p) else {
            return;
        };
        let (rank, ranks) = (c.rank(), c.size());
        combine_stats(op.shape, rank, ranks, &mut data, &mut |t| c.sum_f64(t));
        self.write_back(p, &data);
        op.record_rest(&mut self.rec);
    }

    /// A BN backward; with peers, Σdy and Σdy·x̂ averaged over the ranks' parts (see
    /// [`BatchNorm2dBackward::partials`]).
    pub(crate) fn bn_backward(&mut self, op: &'a BatchNorm2dBackward) {
        let Some(c) = self.sync else {
            op.record(&mut self.rec);
            return;
        };
        op.record_partial(&mut self.rec);
        let Some(mut data) = self.cut(op.partials()) else {
            return;
        };
        c.mean_f32(&mut data);
        self.write_back(op.partials(), &data);
        op.record_rest(&mut self.rec);
    }

    /// Submits without waiting (a pass that was never cut: no synchronised BN); the
    /// returned [`SegPending`] waits for this submission alone, on any thread.
    pub(crate) fn submit_pending(self) -> Result<SegPending<'a>, GpuError> {
        if let Some(e) = self.err {
            return Err(e);
        }
        if !self.done.is_empty() {
            return Err(GpuError::Internal(
                "a pass cut for synchronised BN cannot be left pending".into(),
            ));
        }
        Ok(SegPending {
            pending: self.rec.submit_pending()?,
            handles: self.handles,
        })
    }

    /// Submits the last part and returns everything read.
    pub(crate) fn submit(self) -> Result<SegOut, GpuError> {
        if let Some(e) = self.err {
            return Err(e);
        }
        let mut done = self.done;
        done.push(self.rec.submit()?);
        Ok(SegOut {
            done,
            handles: self.handles,
        })
    }
}
