//! The `Plan`: everything needed to run a compiled graph, with no device types in it.

use crate::kernel::Kernel;
use kiln_ir::{DType, Shape};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Version of the plan layout; bump on any change of the serialized types.
/// 2: `KernelOp::Elementwise::vector`. 4: register-blocked products of fewer than
/// [`crate::kernel::SMALL_PRODUCT_PATCHES`] patches launch 8-thread workgroups.
/// 5: [`Plan::kind`] (a train step is told from a predict plan by the plan itself) and
/// [`Slot::indices`] (index inputs carry their domain, checked by every entry point).
/// 6: [`PlanKind::Gradients`] and [`PlanKind::Update`] (data-parallel steps) and the
/// recurrence backward's adjoint window (`KernelOp::Recurrence::adjoint`).
/// 7: `KernelOp::MatMul::sums` (a bias gradient in its weight gradient's kernel).
/// 8: a scatter-add's `threads` are `cols` times its blocks of rows
/// ([`crate::kernel::KernelOp::ScatterAdd`]).
/// 9: [`crate::kernel::MatMulVariant::WorkgroupTiledWide`] (128x128 tiles for large GPU
/// products).
pub const PLAN_FORMAT_VERSION: u32 = 9;

/// What a plan computes, as its compiler was told ([`Plan::kind`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlanKind {
    /// One training step: forward, loss, gradients and the optimizer's updates of the
    /// params (a run changes the weights).
    Train,
    /// Loss and metrics of a batch; no weight changes.
    Evaluate,
    /// Forward pass only.
    Predict,
    /// A plain graph whose purpose the compiler was not told (the default).
    #[default]
    Graph,
    /// The first half of a data-parallel training step: forward, loss, metrics and the
    /// gradients, which are the plan's outputs (in buckets); no weight changes.
    Gradients,
    /// The second half of a data-parallel training step: the optimizer's update of the
    /// params from gradients given as the plan's inputs.
    Update,
}

impl PlanKind {
    /// The lower-case name (`train`, `evaluate`, `predict`, `graph`, `gradients`, `update`).
    pub fn name(self) -> &'static str {
        match self {
            PlanKind::Train => "train",
            PlanKind::Evaluate => "evaluate",
            PlanKind::Predict => "predict",
            PlanKind::Graph => "graph",
            PlanKind::Gradients => "gradients",
            PlanKind::Update => "update",
        }
    }
}

impl std::fmt::Display for PlanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Index of a buffer in [`Plan::buffers`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BufferId(pub u32);

/// Role of a buffer, which decides who owns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BufferKind {
    /// Written by the host before each run ([`Plan::inputs`]).
    Input,
    /// Read back by the host after each run ([`Plan::outputs`]).
    Output,
    /// A persistent variable owned by the backend's variable store, shared by every plan
    /// loaded on it that names the same param ([`Plan::params`]).
    Param,
    /// Scratch, live only during a run.
    Temp,
    /// Uploaded once at load time.
    Constant {
        /// Values (converted to the buffer dtype on upload).
        values: Vec<f32>,
    },
}

/// A device buffer of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BufferDesc {
    /// Debug name (the IR node it holds).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Number of elements (>= 1).
    pub len: usize,
    /// Role.
    pub kind: BufferKind,
}

impl BufferDesc {
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.len as u64 * self.dtype.size_bytes() as u64
    }
}

/// A named, typed tensor slot bound to a buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Feed / output / variable name.
    pub name: String,
    /// The buffer holding it.
    pub buffer: BufferId,
    /// Shape.
    pub shape: Shape,
    /// Element type.
    pub dtype: DType,
    /// For an input that holds indices (the rows an Embedding or OneHot picks): the size of
    /// the index domain. Every value fed must then be a whole number in `0..indices`
    /// (enforced by [`crate::check_inputs`], which every backend runs). `None` elsewhere.
    pub indices: Option<u32>,
}

/// One step of the schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Run kernel `kernel` with `buffers` bound to its args, on `workgroups` groups.
    Dispatch {
        /// Index into [`Plan::kernels`].
        kernel: u32,
        /// One buffer per kernel arg.
        buffers: Vec<BufferId>,
        /// Workgroup counts (x, y, z); threads are numbered `x + y * (groups_x * wg_size)`.
        workgroups: [u32; 3],
    },
    /// Copy `src` into `dst` (same length): param assignments at the end of a run.
    Copy {
        /// Source.
        src: BufferId,
        /// Destination.
        dst: BufferId,
    },
}

/// Compile statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanStats {
    /// IR nodes in the input graph.
    pub graph_nodes: usize,
    /// IR nodes after the passes.
    pub optimized_nodes: usize,
    /// Number of kernels.
    pub kernels: usize,
    /// Dispatches per run.
    pub dispatches: usize,
    /// Bytes of all temporaries as planned.
    pub temp_bytes: u64,
    /// Bytes of all buffers if every tensor had its own buffer.
    pub naive_bytes: u64,
    /// `(pass name, milliseconds)` in pipeline order (not stored in plan files, which are
    /// deterministic).
    #[serde(skip)]
    pub pass_ms: Vec<(String, f64)>,
    /// Total compile time in milliseconds (not stored in plan files).
    #[serde(skip)]
    pub compile_ms: f64,
    /// Where every temporary lives and when (the memory plan, for inspection and tests).
    pub allocations: Vec<Allocation>,
}

/// One temporary tensor of the memory plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// Tensor name (IR node scope path).
    pub name: String,
    /// Buffer holding it.
    pub buffer: u32,
    /// Element offset in that buffer.
    pub offset: usize,
    /// Elements.
    pub len: usize,
    /// Index of the first dispatch step that writes it.
    pub first: usize,
    /// Index of the last dispatch step that reads it.
    pub last: usize,
}

/// A compiled graph: buffers, kernels, schedule and named slots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`] at compile time.
    pub format_version: u32,
    /// What the plan computes (train step, evaluation, prediction or a plain graph).
    pub kind: PlanKind,
    /// All buffers.
    pub buffers: Vec<BufferDesc>,
    /// All kernels (referenced by dispatch steps).
    pub kernels: Vec<Kernel>,
    /// The schedule, run in order.
    pub steps: Vec<Step>,
    /// Feeds, in the order `run` takes them.
    pub inputs: Vec<Slot>,
    /// Outputs, in the order `run` returns them.
    pub outputs: Vec<Slot>,
    /// Persistent variables the plan reads or assigns.
    pub params: Vec<Slot>,
    /// Statistics.
    pub stats: PlanStats,
}

impl Plan {
    /// Number of dispatch steps per run.
    pub fn dispatch_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Dispatch { .. }))
            .count()
    }

    /// Whether a run writes any param (a train step's optimizer updates): a copy into, or a
    /// kernel arg with write access bound to, a param buffer.
    pub fn updates_params(&self) -> bool {
        let is_param = |b: &BufferId| {
            self.buffers
                .get(b.0 as usize)
                .is_some_and(|d| d.kind == BufferKind::Param)
        };
        self.steps.iter().any(|s| match s {
            Step::Copy { dst, .. } => is_param(dst),
            Step::Dispatch {
                kernel, buffers, ..
            } => self.kernels.get(*kernel as usize).is_some_and(|k| {
                k.args
                    .iter()
                    .zip(buffers)
                    .any(|(a, b)| a.access.writes() && is_param(b))
            }),
        })
    }

    /// A readable table of the plan's kernels and stats.
    pub fn summary(&self) -> String {
        use crate::kernel::KernelOp;
        let mut s = String::new();
        let st = &self.stats;
        let _ = writeln!(
            s,
            "plan: {} kernels, {} dispatches/run, {} buffers; arena {} B vs {} B one-buffer-per-tensor; compile {:.2} ms",
            st.kernels,
            self.dispatch_count(),
            self.buffers.len(),
            st.temp_bytes,
            st.naive_bytes,
            st.compile_ms
        );
        let passes: Vec<String> = st
            .pass_ms
            .iter()
            .map(|(n, ms)| format!("{n} {ms:.2}"))
            .collect();
        let _ = writeln!(s, "passes (ms): {}", passes.join(", "));
        let _ = writeln!(
            s,
            "  {:<5} {:<36} {:<34} {:>5} {:>6}",
            "", "label", "kind", "nodes", "binds"
        );
        for (i, k) in self.kernels.iter().enumerate() {
            let what = match &k.op {
                KernelOp::ScatterAdd {
                    rows, cols, count, ..
                } => format!("scatter-add {count} -> [{rows}, {cols}]"),
                KernelOp::Recurrence {
                    cell,
                    batch,
                    steps,
                    grad,
                    launch,
                    ..
                } => format!(
                    "{} {}{} [{batch}, {steps}, {}] persistent {}r{}",
                    cell.name(),
                    if grad.is_some() { "bptt" } else { "forward" },
                    if cell.masked { " masked" } else { "" },
                    cell.units,
                    launch.rows,
                    if launch.unroll { " unrolled" } else { "" },
                ),
                KernelOp::Elementwise {
                    shape,
                    body,
                    stores,
                    vector,
                } => {
                    format!(
                        "elementwise {shape:?} {}e {}w{}",
                        body.nodes.len(),
                        stores.len(),
                        if *vector > 1 {
                            format!(" x{vector}")
                        } else {
                            String::new()
                        }
                    )
                }
                KernelOp::Reduce {
                    in_shape,
                    axes,
                    stages,
                    ..
                } => {
                    let folds: usize = stages.iter().map(|st| st.folds.len()).sum();
                    format!("reduce {in_shape:?}/{axes:?} {}s {folds}f", stages.len())
                }
                KernelOp::MatMul {
                    batch,
                    m,
                    n,
                    k: kk,
                    epilogue,
                    sums,
                    ..
                } => {
                    let sums = sums
                        .as_ref()
                        .map(|s| format!(" +{}s", s.body.nodes.len()))
                        .unwrap_or_default();
                    format!(
                        "matmul {batch}x{m}x{kk}x{n} +{}e{sums}",
                        epilogue.nodes.len()
                    )
                }
            };
            let _ = writeln!(
                s,
                "  k{i:<4} {:<36} {what:<34} {:>5} {:>6}",
                truncate(&k.label, 36),
                k.nodes.len(),
                k.args.len()
            );
        }
        s
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}
