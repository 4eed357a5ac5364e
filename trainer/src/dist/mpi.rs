//! [`Comm`] over MPI (the `mpi` crate on the system's MPI library), for jobs started by
//! `mpirun` or Slurm's `srun`.

use std::sync::{Arc, Mutex, MutexGuard};

use ::mpi::environment::Universe;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::*;
use ::mpi::Threading;

use ::mpi::point_to_point::send_receive_into;

use super::{ring_sum, Comm};

/// Whether this process was started by an MPI launcher (`mpirun`/`mpiexec` of Open MPI or
/// MPICH, `srun` with PMI or PMIx): the variables those launchers set in every rank.
pub fn launched() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Keeps MPI initialised; dropping it finalises MPI (after every collective of the run).
pub struct Session {
    _universe: Universe,
}

/// The MPI world of this job.
pub struct Mpi {
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
    /// MPI is initialised at `MPI_THREAD_SERIALIZED` or better: this lock makes the calls
    /// of different threads take turns, which is what that level requires.
    lock: Mutex<()>,
}

/// Joins the MPI job: the world's size and this rank, and the ranks sharing this node
/// (`MPI_Comm_split_type` shared memory). Call once, from the main thread, before other
/// threads use MPI; keep the [`Session`] until the end of `main`. Errors when MPI was
/// already initialised or cannot give serialised calls from several threads.
pub fn init() -> Result<(Arc<Mpi>, Session), String> {
    let (universe, provided) = ::mpi::initialize_with_threading(Threading::Serialized)
        .ok_or_else(|| "MPI is already initialised in this process".to_string())?;
    if matches!(provided, Threading::Single | Threading::Funneled) {
        return Err(format!(
            "the MPI library gives {provided:?} threading; limpq needs Serialized or Multiple \
             (its run loop calls MPI from a worker thread)"
        ));
    }
    let world = universe.world();
    let local = world.split_shared(world.rank());
    let m = Mpi {
        rank: usize::try_from(world.rank()).unwrap_or(0),
        size: usize::try_from(world.size()).unwrap_or(1),
        local_rank: usize::try_from(local.rank()).unwrap_or(0),
        local_size: usize::try_from(local.size()).unwrap_or(1),
        lock: Mutex::new(()),
    };
    drop(local);
    Ok((
        Arc::new(m),
        Session {
            _universe: universe,
        },
    ))
}

impl Mpi {
    fn turn(&self) -> MutexGuard<'_, ()> {
        // A poisoned lock only means another thread panicked while holding it; the MPI
        // state it guards has no Rust invariants to break.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sum of `acc` over every rank, on every rank: [`ring_sum`] with each step's
    /// exchange one `MPI_Sendrecv` with the ring's neighbours.
    fn ring(&self, acc: &mut [f64]) {
        let _turn = self.turn();
        let n = self.size;
        if n < 2 {
            return;
        }
        let world = SimpleCommunicator::world();
        let rank_of = |r: usize| i32::try_from(r).unwrap_or(0);
        let next = world.process_at_rank(rank_of((self.rank + 1) % n));
        let prev = world.process_at_rank(rank_of((self.rank + n - 1) % n));
        ring_sum(self.rank, n, acc, &mut |send, recv| {
            send_receive_into(send, &next, recv, &prev);
        });
    }
}

impl Comm for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn local_size(&self) -> usize {
        self.local_size
    }
    fn sum_f64(&self, data: &mut [f64]) {
        self.ring(data);
    }
    fn mean_f32(&self, data: &mut [f32]) {
        let mut acc: Vec<f64> = data.iter().map(|&x| f64::from(x)).collect();
        self.ring(&mut acc);
        let n = self.size.max(1) as f64;
        for (d, s) in data.iter_mut().zip(&acc) {
            *d = (s / n) as f32;
        }
    }
    fn broadcast_f32(&self, data: &mut [f32]) {
        let _turn = self.turn();
        SimpleCommunicator::world()
            .process_at_rank(0)
            .broadcast_into(data);
    }
    fn barrier(&self) {
        let _turn = self.turn();
        SimpleCommunicator::world().barrier();
    }
    fn abort(&self, code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }
    fn name(&self) -> &'static str {
        "MPI"
    }
}
