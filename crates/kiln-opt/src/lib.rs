//! # kiln-opt: the compiler
//!
//! Takes a [`kiln_ir::Graph`] and *fires* it into a [`Plan`]: kernels described as data
//! ([`kernel`]), buffers, a dispatch schedule and named input/output/param slots. It is
//! device-agnostic: it sees a device only through [`DeviceLimits`] and never names wgpu.
//!
//! ## Data flow
//! `compile` is straight-line code: `verify` → passes (each followed by `verify`; the text
//! dump of a pass is printed when `KILN_DUMP` names it or is `all`) → lowering
//! ([`lower`]) → `Plan`. A plan runs through the [`Backend`] trait: the CPU plan interpreter
//! ([`interp::CpuBackend`]) here, the wgpu executor in `kiln-wgpu`.
//!
//! ## Invariants
//! - A `Plan` contains no device types and fully describes a run: re-emitting a kernel's
//!   shader from its `KernelIr` is deterministic.
//! - Movement ops (reshape of contiguous data, permute, expand) lower to [`kernel::View`]s,
//!   never to copies, except where a consumer needs contiguous data.
//! - Every plan computes what the f64 reference evaluator computes, within f32 tolerance.
//! - Param assignments take effect after every output of the run is computed.
//! - No buffer exceeds the device's storage binding limit (checked before any dispatch).

#![warn(missing_docs)]

pub mod cache;
pub mod gather_matmul;
pub mod lower;
pub mod passes;
pub mod scatter_matmul;
pub mod split_matmul;
pub mod testing;

// The plan contract lives in `kiln-plan`; the compiler re-exports it so that a user of the
// compiler needs one crate, and `crate::kernel` etc. read the same inside the compiler.
/// The compiler's error: the one error enum of the plan contract.
pub use kiln_plan::Error as OptError;
pub use kiln_plan::{backend, codec, env, files, interp, kernel, plan, schedule, validate};
pub use kiln_plan::{
    check_indices, check_inputs, AdapterClass, Backend, BufferDesc, BufferId, BufferKind,
    DeviceError, DeviceErrorKind, DeviceLimits, EnvError, Executable, HostData, HostTensor, Plan,
    PlanError, PlanKind, PlanStats, Result, Slot, Step, PLAN_FORMAT_VERSION,
};

use kiln_ir::Graph;
use passes::Pass;
use std::time::Instant;

/// Options of a compilation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    /// Run `verify` after every pass (on by default; cheap).
    pub verify_each_pass: bool,
    /// Pack temporaries into shared arenas by liveness (on by default). Off, every
    /// temporary gets its own region — the reference the planned layout is tested against.
    pub plan_memory: bool,
    /// What the graph computes, stored as [`Plan::kind`] (default [`PlanKind::Graph`]):
    /// entry points use it to refuse, e.g., training on a predict plan.
    pub kind: PlanKind,
    /// Inputs that hold indices, with the size of their domain, stored as
    /// [`Slot::indices`] (checked on every run). Inputs that feed only gather indices
    /// (through casts) get theirs inferred; a declaration here wins.
    pub index_inputs: Vec<(String, u32)>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            verify_each_pass: true,
            plan_memory: true,
            kind: PlanKind::Graph,
            index_inputs: vec![],
        }
    }
}

fn dump(dump: &[String], when: &str, pass: &str, g: &Graph) {
    if dump.iter().any(|p| p == pass) {
        eprintln!("=== KILN_DUMP {when} {pass} ===\n{g}");
    }
}

/// The index domain of every input that is used only as gather or scatter indices, through
/// casts: the smallest number of table rows it indexes.
pub fn inferred_index_inputs(graph: &Graph) -> Vec<(String, u32)> {
    use kiln_ir::{NodeId, Op};
    let mut users: Vec<Vec<(NodeId, usize)>> = vec![vec![]; graph.len()];
    for (id, n) in graph.iter() {
        for (i, x) in n.inputs.iter().enumerate() {
            if let Some(u) = users.get_mut(x.index()) {
                u.push((id, i));
            }
        }
    }
    let rooted: std::collections::HashSet<NodeId> = graph
        .outputs()
        .iter()
        .map(|(_, n)| *n)
        .chain(graph.assigns().iter().flat_map(|(p, v)| [*p, *v]))
        .collect();
    let mut out = vec![];
    for (id, n) in graph.iter() {
        let Op::Input { name } = &n.op else { continue };
        let mut rows: Option<u64> = None;
        let mut ok = true;
        let mut stack = vec![id];
        while let Some(x) = stack.pop() {
            if rooted.contains(&x) {
                ok = false;
                break;
            }
            for &(u, operand) in &users[x.index()] {
                let un = graph.node(u);
                let r = match (&un.op, operand) {
                    (Op::Cast, _) => {
                        stack.push(u);
                        continue;
                    }
                    (Op::Gather, 1) => graph.shape(un.inputs[0]).dims().first().copied(),
                    (Op::ScatterAdd, 0) => un.shape.dims().first().copied(),
                    _ => None,
                };
                match r {
                    Some(r) => rows = Some(rows.map_or(r as u64, |m| m.min(r as u64))),
                    None => ok = false,
                }
            }
            if !ok {
                break;
            }
        }
        if let (true, Some(r)) = (ok, rows) {
            out.push((name.clone(), r.min(u32::MAX as u64) as u32));
        }
    }
    out
}

/// Compiles `graph` (its outputs and assignments) into a plan for a device with `limits`.
pub fn compile(graph: &Graph, options: &CompileOptions, limits: &DeviceLimits) -> Result<Plan> {
    let t0 = Instant::now();
    kiln_ir::verify(graph)?;
    let mut pass_ms = Vec::new();
    // at most 4 passes over the reduced elements per kernel (3 fold stages + broadcast)
    let split = passes::SplitLongReductions {
        max_count: (limits.max_loop_iterations / 4).clamp(1, usize::MAX as u64) as usize,
    };
    // a matmul loops over its contraction axis once per output block
    let split_matmuls = split_matmul::SplitLongMatMuls {
        max_k: (limits.max_loop_iterations / 4).clamp(1, usize::MAX as u64) as usize,
    };
    let scatter_first = scatter_matmul::ScatterBeforeMatMul::for_device(limits);
    let gathered_rows = gather_matmul::GatheredRowsMatMul::for_device(limits);
    let pipeline: [&dyn Pass; 10] = [
        &passes::FoldConstants,
        &passes::EliminateCommonSubexpressions,
        &passes::RewriteLogSoftmax,
        &scatter_first,
        // after the scatter-first rewrite, whose scatter-add it shares (merged by the
        // elimination that follows)
        &gathered_rows,
        &passes::EliminateCommonSubexpressions,
        &split,
        &split_matmuls,
        &passes::EliminateDeadNodes,
        &passes::FoldConstants,
    ];
    let names: Vec<&str> = pipeline.iter().map(|p| p.name()).collect();
    let dumped = kiln_plan::env::dump(&names)?;
    let indices = inferred_index_inputs(graph);
    let mut g = graph.clone();
    for pass in pipeline {
        let t = Instant::now();
        dump(&dumped, "before", pass.name(), &g);
        g = pass.run(&g)?;
        dump(&dumped, "after", pass.name(), &g);
        if options.verify_each_pass {
            kiln_ir::verify(&g)?;
        }
        pass_ms.push((pass.name().to_string(), t.elapsed().as_secs_f64() * 1e3));
    }
    let t = Instant::now();
    let mut plan = lower::lower(&g, limits, options.plan_memory)?;
    plan.kind = options.kind;
    for slot in &mut plan.inputs {
        let domain =
            |list: &[(String, u32)]| list.iter().find(|(n, _)| *n == slot.name).map(|&(_, r)| r);
        slot.indices = domain(&options.index_inputs).or_else(|| domain(&indices));
    }
    pass_ms.push(("Lower".to_string(), t.elapsed().as_secs_f64() * 1e3));
    plan.stats.graph_nodes = graph.len();
    plan.stats.optimized_nodes = g.len();
    plan.stats.pass_ms = pass_ms;
    if options.verify_each_pass {
        plan.validate(limits)
            .map_err(|e| OptError::Unsupported(format!("internal: {e}")))?;
    }
    plan.stats.compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok(plan)
}
