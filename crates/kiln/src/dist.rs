//! Data-parallel training across processes and machines over **MPI** (cargo feature `mpi`;
//! OpenMPI from Debian: `apt-get install -y openmpi-bin libopenmpi-dev libclang-dev`).
//!
//! [`Mpi`] is a [`Collective`]: give it to [`Sequential::distribute`](crate::Sequential::distribute)
//! and `fit` trains data-parallel over the ranks `mpirun` started (see
//! [`kiln_layers::train::distributed`] for what a step does).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kiln::{dist::Mpi, Sequential};
//! let group = Mpi::init()?; // once per process, before any other MPI use
//! let mut model = Sequential::new(kiln::native_device()).seed(1);
//! // ... add layers, compile: the same on every rank ...
//! model.distribute(Box::new(group));
//! // model.fit(&x, &y, fit)?  — every rank with the same data and options
//! # Ok(()) }
//! ```
//!
//! ## How the collectives run
//! Every collective is point-to-point messages between all pairs of ranks (an all-gather),
//! then each rank adds the contributions **in rank order**: the sum is the same bits on every
//! rank and from run to run, which MPI's own `MPI_Allreduce` does not promise. Each rank sends
//! `(size - 1) × bytes` per all-reduce: right for the few ranks of one machine or a small
//! cluster; docs/DISTRIBUTED.md has the plan for more.
//!
//! ## Failure
//! MPI itself ends the job when a rank exits or is killed (`mpirun` names the rank). A rank
//! that hangs is found by the others: a collective that has waited longer than the timeout
//! (`KILN_DIST_TIMEOUT`, seconds, default 300) fails with a [`CollectiveError`] naming the
//! ranks that did not answer, and the [`Mpi`] group, when dropped after such a failure,
//! aborts the whole job (`MPI_Abort`) instead of hanging in `MPI_Finalize`.

use kiln_layers::{Collective, CollectiveError};
use mpi::datatype::Equivalence;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{Destination, Source};
use std::time::{Duration, Instant};

/// The environment variable holding a collective's timeout in seconds.
pub const TIMEOUT_ENV: &str = "KILN_DIST_TIMEOUT";

/// A collective's default timeout: long enough for the first step of a large model to
/// compile its plans on every rank.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The ranks `mpirun` started, as a [`Collective`] over `MPI_COMM_WORLD`.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    timeout: Duration,
    sent: u64,
    calls: u64,
    failed: bool,
    // last: MPI_Finalize when dropped
    universe: Option<mpi::environment::Universe>,
}

impl Mpi {
    /// Initializes MPI (once per process) and joins `MPI_COMM_WORLD`; the timeout comes from
    /// [`TIMEOUT_ENV`] (default [`DEFAULT_TIMEOUT`]).
    pub fn init() -> Result<Mpi, CollectiveError> {
        let fail = |message: String| CollectiveError {
            rank: 0,
            size: 0,
            message,
        };
        let timeout = match std::env::var(TIMEOUT_ENV) {
            Ok(v) => match v.trim().parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                _ => {
                    return Err(fail(format!(
                        "{TIMEOUT_ENV}={v:?}: expected a number of seconds > 0"
                    )))
                }
            },
            Err(_) => DEFAULT_TIMEOUT,
        };
        // serialized: the group moves with its model between threads, used by one at a time
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| fail("MPI is already initialized in this process".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Mpi {
            world,
            rank,
            size,
            timeout,
            sent: 0,
            calls: 0,
            failed: false,
            universe: Some(universe),
        })
    }

    /// The same group with another collective timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The collective timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Ends every rank of the job now (`MPI_Abort`) with exit `code`.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    fn error(&mut self, message: String) -> CollectiveError {
        self.failed = true;
        CollectiveError {
            rank: self.rank,
            size: self.size,
            message,
        }
    }

    /// Every rank's `mine` (the same length everywhere), indexed by rank; with `root`, only
    /// `root` sends and every rank gets `root`'s.
    fn exchange<T>(
        &mut self,
        mine: &[T],
        root: Option<usize>,
        what: &str,
    ) -> Result<Vec<Vec<T>>, CollectiveError>
    where
        T: Equivalence + Copy + Default,
    {
        let (rank, size, n) = (self.rank, self.size, mine.len());
        let tag = (self.calls % 32_768) as i32;
        self.calls += 1;
        let call = self.calls;
        // owned copies: on a timeout they are leaked with the requests that use them, so
        // MPI never touches freed memory
        let send: Vec<T> = mine.to_vec();
        let mut bufs: Vec<Vec<T>> = (0..size)
            .map(|q| {
                let from_q = q != rank && root.is_none_or(|r| r == q);
                if from_q {
                    vec![T::default(); n]
                } else {
                    vec![]
                }
            })
            .collect();
        let sends_to: Vec<usize> = match root {
            Some(r) if r != rank => vec![],
            _ => (0..size).filter(|&q| q != rank).collect(),
        };
        let deadline = Instant::now() + self.timeout;
        let world = &self.world;
        let missing: Vec<usize> = mpi::request::scope(|scope| {
            let mut pending = vec![];
            for &q in &sends_to {
                let p = world.process_at_rank(q as i32);
                pending.push((q, false, p.immediate_send_with_tag(scope, &send[..], tag)));
            }
            for (q, buf) in bufs.iter_mut().enumerate() {
                if !buf.is_empty() {
                    let p = world.process_at_rank(q as i32);
                    pending.push((
                        q,
                        true,
                        p.immediate_receive_into_with_tag(scope, &mut buf[..], tag),
                    ));
                }
            }
            let mut polls = 0u64;
            loop {
                let mut still = vec![];
                for (q, recv, req) in pending {
                    if let Err(req) = req.test() {
                        still.push((q, recv, req));
                    }
                }
                pending = still;
                if pending.is_empty() {
                    return vec![];
                }
                if Instant::now() > deadline {
                    let mut missing: Vec<usize> = pending.iter().map(|p| p.0).collect();
                    missing.sort_unstable();
                    missing.dedup();
                    for (_, _, req) in pending {
                        // SAFETY: the request is never completed; its buffers (`send`,
                        // `bufs`) are leaked below, so they outlive it
                        let _ = unsafe { req.into_raw() };
                    }
                    return missing;
                }
                polls += 1;
                // spin briefly, then sleep: a rank waiting for slower ones leaves the CPU
                // to them (several ranks may share a machine's cores)
                if polls > 64 {
                    std::thread::sleep(Duration::from_micros(50));
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        if !missing.is_empty() {
            std::mem::forget(send);
            std::mem::forget(bufs);
            let names: Vec<String> = missing.iter().map(|q| format!("rank {q}")).collect();
            let msg = format!(
                "{what} (collective #{call}) waited {:.1} s for {}: {} died or hangs \
                 (timeout {TIMEOUT_ENV}={})",
                self.timeout.as_secs_f64(),
                names.join(", "),
                if missing.len() == 1 { "it" } else { "they" },
                self.timeout.as_secs_f64()
            );
            return Err(self.error(msg));
        }
        self.sent += (sends_to.len() * n * std::mem::size_of::<T>()) as u64;
        bufs[rank] = send;
        if let Some(r) = root {
            let from_root = std::mem::take(&mut bufs[r]);
            return Ok(vec![from_root]);
        }
        Ok(bufs)
    }
}

// SAFETY: MPI is initialized at `MPI_THREAD_SERIALIZED` or above, and every use of the
// communicator goes through `&mut self` (or `&self` for `abort`), so one thread at a time
// calls MPI.
unsafe impl Send for Mpi {}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&mut self, data: &mut [f32]) -> Result<(), CollectiveError> {
        if self.size == 1 {
            return Ok(());
        }
        let all = self.exchange(data, None, "gradient all-reduce")?;
        for (i, d) in data.iter_mut().enumerate() {
            let mut acc = all[0][i];
            for r in &all[1..] {
                acc += r[i];
            }
            *d = acc;
        }
        Ok(())
    }

    fn all_reduce_sum_f64(&mut self, data: &mut [f64]) -> Result<(), CollectiveError> {
        if self.size == 1 {
            return Ok(());
        }
        let all = self.exchange(data, None, "metric all-reduce")?;
        for (i, d) in data.iter_mut().enumerate() {
            *d = all.iter().map(|r| r[i]).sum();
        }
        Ok(())
    }

    fn broadcast(&mut self, root: usize, data: &mut [f32]) -> Result<(), CollectiveError> {
        if self.size == 1 {
            return Ok(());
        }
        if root >= self.size {
            return Err(self.error(format!(
                "broadcast from rank {root}: the group has {} ranks",
                self.size
            )));
        }
        let got = self.exchange(data, Some(root), "weight broadcast")?;
        data.copy_from_slice(&got[0]);
        Ok(())
    }

    fn bytes_sent(&self) -> u64 {
        self.sent
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        if self.failed {
            // requests to a dead or hung rank are still pending: MPI_Finalize would wait
            // for them forever. End the whole job instead (mpirun reports it).
            self.world.abort(1);
        }
        drop(self.universe.take());
    }
}

/// Whether this process was started by an MPI launcher (`mpirun`/`mpiexec` of OpenMPI, or a
/// PMI-based one): the CLI trains data-parallel then.
pub fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}
