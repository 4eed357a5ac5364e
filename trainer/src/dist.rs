//! Data-parallel runs: the few collective operations a run needs from its peers, behind
//! [`Comm`], and the handle a run carries ([`Dist`]).
//!
//! A single process is the default ([`Dist::single`]): rank 0 of 1, every collective the
//! identity, so a run without peers takes exactly the path it always took. Built with the
//! `mpi` feature, `mpi::init` joins the job `mpirun` or `srun` started and returns the
//! MPI implementation.
//!
//! Sums are reproducible for a given number of ranks: the MPI implementation runs its own
//! ring all-reduce ([`ring_sum`]: a reduce-scatter then an all-gather between neighbours,
//! in f64), in which the part of the data in chunk `c` is always added up starting at rank
//! `c`, then `c + 1`, … around the ring. So the order of the additions never depends on
//! message timing or on MPI's choice of a reduction algorithm, every rank ends with the
//! same bits, and each rank sends and receives about 2·(N − 1)/N of the data whatever N is
//! (docs/SCALING.md). With two ranks the result is exactly the rank-order sum.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// What a data-parallel run needs from its peers. Every rank calls the collectives in the
/// same order with slices of the same length.
pub trait Comm: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of ranks in the job.
    fn size(&self) -> usize;
    /// Rank among the ranks on this node (picks the adapter).
    fn local_rank(&self) -> usize;
    /// Ranks on this node.
    fn local_size(&self) -> usize;
    /// Replaces `data` on every rank by the sum over ranks, added in f64 in an order fixed
    /// for a given number of ranks (module doc).
    fn sum_f64(&self, data: &mut [f64]);
    /// Replaces `data` on every rank by the mean over ranks: the sum in f64 (as
    /// [`Comm::sum_f64`]), divided by the number of ranks, rounded once to f32.
    fn mean_f32(&self, data: &mut [f32]);
    /// Every rank receives rank 0's `data`.
    fn broadcast_f32(&self, data: &mut [f32]);
    /// Returns once every rank has called it.
    fn barrier(&self);
    /// Ends every rank of the job with exit status `code` (after this rank has printed why).
    fn abort(&self, code: i32) -> !;
    /// Names the implementation in messages (`single process`, `MPI`).
    fn name(&self) -> &'static str;
}

/// One process, no peers: every collective leaves the data as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Comm for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn local_size(&self) -> usize {
        1
    }
    fn sum_f64(&self, _data: &mut [f64]) {}
    fn mean_f32(&self, _data: &mut [f32]) {}
    fn broadcast_f32(&self, _data: &mut [f32]) {}
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn name(&self) -> &'static str {
        "single process"
    }
}

/// The peers a run trains with; the default is a single process. Two handles compare equal
/// when they are the same communicator (or both single), so configs holding one stay
/// comparable.
#[derive(Clone, Default)]
pub struct Dist(Option<Arc<dyn Comm>>);

impl Dist {
    /// A single process: the run's ordinary path.
    pub fn single() -> Dist {
        Dist(None)
    }

    /// A run over `comm`'s ranks (a one-rank communicator behaves as [`Dist::single`]).
    pub fn new(comm: Arc<dyn Comm>) -> Dist {
        Dist(Some(comm))
    }

    /// The communicator of data-parallel runs, when there are peers (more than one rank).
    pub fn peers(&self) -> Option<&dyn Comm> {
        self.0.as_deref().filter(|c| c.size() > 1)
    }

    pub fn rank(&self) -> usize {
        self.0.as_ref().map_or(0, |c| c.rank())
    }

    pub fn size(&self) -> usize {
        self.0.as_ref().map_or(1, |c| c.size())
    }

    /// Whether this process writes the run's files (checkpoints, logs): rank 0.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// The process-wide handle [`Dist::set_global`] stored, else a single process (the
    /// command line sets it once at start under `mpirun`).
    pub fn global() -> Dist {
        GLOBAL.get().cloned().unwrap_or_default()
    }

    /// Stores the process-wide handle; only the first call counts (returns whether it did).
    pub fn set_global(d: Dist) -> bool {
        GLOBAL.set(d).is_ok()
    }
}

static GLOBAL: OnceLock<Dist> = OnceLock::new();

impl PartialEq for Dist {
    fn eq(&self, o: &Dist) -> bool {
        match (&self.0, &o.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl fmt::Debug for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Dist(single process)"),
            Some(c) => write!(f, "Dist({} rank {} of {})", c.name(), c.rank(), c.size()),
        }
    }
}

/// Sums `parts` (one slice per rank, in rank order) element by element in f64, in rank
/// order: the reduction every implementation uses, so results depend on the rank count only.
pub fn sum_in_rank_order(parts: &[&[f64]], out: &mut [f64]) {
    for (i, o) in out.iter_mut().enumerate() {
        let mut s = 0.0f64;
        for p in parts {
            s += p[i];
        }
        *o = s;
    }
}

/// The rank-order mean of `parts` (f32, one slice per rank), summed in f64, divided by
/// the number of parts and rounded once.
pub fn mean_in_rank_order(parts: &[&[f32]], out: &mut [f32]) {
    let n = parts.len().max(1) as f64;
    for (i, o) in out.iter_mut().enumerate() {
        let mut s = 0.0f64;
        for p in parts {
            s += p[i] as f64;
        }
        *o = (s / n) as f32;
    }
}

/// The elements of chunk `c` of `len` split into `n` chunks (sizes differ by at most one).
fn ring_chunk(c: usize, len: usize, n: usize) -> std::ops::Range<usize> {
    c * len / n..(c + 1) * len / n
}

/// One rank's side of a ring all-reduce (sum) over `n` ranks: on return `acc` holds, on
/// every rank, the sum of every rank's `acc`. `exchange(send, recv)` sends `send` to rank
/// `rank + 1` and fills `recv` from rank `rank − 1` (mod `n`), both at once.
///
/// Reduce-scatter: in step `s` (0 ≤ s < n − 1) rank `r` passes its partial sum of chunk
/// `r − s` on and adds its own values to the partial sum of chunk `r − s − 1` it receives
/// (received + own, so chunk `c` is added up from rank `c` onward). Rank `r` then holds
/// the whole sum of chunk `r + 1`; the all-gather passes the finished chunks around.
pub fn ring_sum(
    rank: usize,
    n: usize,
    acc: &mut [f64],
    exchange: &mut dyn FnMut(&[f64], &mut [f64]),
) {
    if n < 2 {
        return;
    }
    let len = acc.len();
    let mut recv = vec![0.0f64; len / n + 1];
    let mut send = Vec::with_capacity(len / n + 1);
    for s in 0..n - 1 {
        let out = ring_chunk((rank + n - s) % n, len, n);
        let into = ring_chunk((rank + 2 * n - s - 1) % n, len, n);
        send.clear();
        send.extend_from_slice(&acc[out]);
        let got = &mut recv[..into.len()];
        exchange(&send, got);
        for (a, p) in acc[into].iter_mut().zip(got.iter()) {
            *a += *p;
        }
    }
    for s in 0..n - 1 {
        let out = ring_chunk((rank + 1 + n - s) % n, len, n);
        let into = ring_chunk((rank + n - s) % n, len, n);
        send.clear();
        send.extend_from_slice(&acc[out]);
        exchange(&send, &mut acc[into]);
    }
}

#[cfg(feature = "mpi")]
pub mod mpi;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_process_collectives_leave_data_alone() {
        let d = Dist::single();
        assert_eq!((d.rank(), d.size(), d.is_root()), (0, 1, true));
        assert!(d.peers().is_none());
        let one = Dist::new(Arc::new(Single));
        assert!(one.peers().is_none(), "one rank has no peers");
        let mut x = [1.5f32, -2.0];
        Single.mean_f32(&mut x);
        assert_eq!(x, [1.5, -2.0]);
        assert_eq!(Dist::single(), Dist::default());
        assert_ne!(one, Dist::single());
        assert_eq!(one.clone(), one);
    }

    /// `n` ranks on threads, each sending to the next through a channel.
    fn ring_on_threads(data: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
        use std::sync::mpsc;
        let n = data.len();
        let (tx, rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<Vec<f64>>()).unzip();
        let mut rx: Vec<Option<mpsc::Receiver<Vec<f64>>>> = rx.into_iter().map(Some).collect();
        let handles: Vec<_> = data
            .into_iter()
            .enumerate()
            .map(|(r, mut acc)| {
                let to_next = tx[(r + 1) % n].clone();
                let from_prev = rx[r].take().unwrap();
                std::thread::spawn(move || {
                    ring_sum(r, n, &mut acc, &mut |send, recv| {
                        to_next.send(send.to_vec()).unwrap();
                        let got = from_prev.recv().unwrap();
                        recv.copy_from_slice(&got);
                    });
                    acc
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn ring_sum_adds_each_chunk_from_its_rank_onward_and_agrees_everywhere() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        for (n, len) in [(2, 7), (3, 10), (4, 3), (5, 23), (3, 0)] {
            let data: Vec<Vec<f64>> = (0..n)
                .map(|_| (0..len).map(|_| next() * 1e3).collect())
                .collect();
            let out = ring_on_threads(data.clone());
            // The documented order: chunk c from rank c around the ring.
            let mut want = vec![0.0f64; len];
            for c in 0..n {
                for i in ring_chunk(c, len, n) {
                    let mut s = data[c][i];
                    for k in 1..n {
                        s += data[(c + k) % n][i];
                    }
                    want[i] = s;
                }
            }
            let parts: Vec<&[f64]> = data.iter().map(|v| v.as_slice()).collect();
            let mut rank_order = vec![0.0f64; len];
            sum_in_rank_order(&parts, &mut rank_order);
            for (r, o) in out.iter().enumerate() {
                assert_eq!(o, &want, "n {n}, rank {r}");
                for (a, b) in o.iter().zip(&rank_order) {
                    assert!(
                        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                        "n {n}: {a} vs {b}"
                    );
                }
                if n == 2 {
                    assert_eq!(o, &rank_order, "two ranks: exactly the rank-order sum");
                }
            }
        }
    }

    #[test]
    fn rank_order_mean_rounds_once() {
        // 1 + 2^-24 is not an f32; summing in f32 loses the small part, f64 keeps it until
        // the single rounding of the mean.
        let a = [1.0f32, 3.0];
        let b = [f32::EPSILON / 2.0, 5.0];
        let mut out = [0.0f32; 2];
        mean_in_rank_order(&[&a, &b], &mut out);
        assert_eq!(out[1], 4.0);
        assert_eq!(
            out[0],
            ((1.0f64 + (f32::EPSILON / 2.0) as f64) / 2.0) as f32
        );
        let mut s = [0.0f64; 2];
        sum_in_rank_order(&[&[1.0, 2.0], &[3.0, 4.0], &[5.0, 6.0]], &mut s);
        assert_eq!(s, [9.0, 12.0]);
    }
}
