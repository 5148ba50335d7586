//! Stage 3: groups + layout → kernels with concrete bindings, and the plan.

use super::fuse::{Fused, GroupKind, Phase, SymMat};
use super::memory::Layout;
use super::{ELEMENTWISE_WORKGROUP_SIZE, WORKGROUP_SIZE};

/// Threads per output element of a workgroup-tree reduction (GPUs).
pub const REDUCE_TREE: u32 = 64;
use crate::kernel::{
    elementwise_vector, Access, Arg, Body, Dense, Expr, Kernel, KernelOp, MatMulVariant,
    MatOperand, RecurrenceLaunch, ReduceStage, Store, View,
};
use crate::plan::{BufferDesc, BufferId, Plan, PlanStats, Slot, Step, PLAN_FORMAT_VERSION};
use crate::{DeviceLimits, OptError, Result};
use kiln_ir::{Graph, Op};

struct Binder<'a> {
    layout: &'a Layout,
    args: Vec<(usize, Access)>,
}

impl Binder<'_> {
    /// Binding index and base offset of tensor `t`, recording how it is accessed.
    fn bind(&mut self, t: u32, write: bool) -> (u32, usize) {
        let (buf, off) = self.layout.placement[t as usize];
        let i = match self.args.iter().position(|a| a.0 == buf) {
            Some(i) => {
                let a = &mut self.args[i].1;
                *a = match (*a, write) {
                    (Access::Read, true) | (Access::Write, false) => Access::ReadWrite,
                    (x, _) => x,
                };
                i
            }
            None => {
                self.args
                    .push((buf, if write { Access::Write } else { Access::Read }));
                self.args.len() - 1
            }
        };
        (i as u32, off)
    }

    fn body(&mut self, b: &Body) -> Body {
        let mut out = b.clone();
        for n in &mut out.nodes {
            if let Expr::Load { arg, view } | Expr::Gather { arg, view, .. } = &mut n.expr {
                let (i, off) = self.bind(*arg, false);
                *arg = i;
                view.offset += off;
            }
        }
        out
    }

    fn stores(&mut self, stores: &[(Phase, u32, u32, Option<View>)], phase: Phase) -> Vec<Store> {
        stores
            .iter()
            .filter(|s| s.0 == phase)
            .map(|(_, t, value, view)| {
                let (arg, offset) = self.bind(*t, true);
                match view {
                    None => Store::dense(arg, offset, *value),
                    Some(v) => Store {
                        arg,
                        offset: offset + v.offset,
                        value: *value,
                        strides: Some(v.strides.clone()),
                    },
                }
            })
            .collect()
    }

    /// A dense block at element `off` of tensor `t`, bound for reading or writing.
    fn dense(&mut self, (t, off): (u32, usize), write: bool) -> Dense {
        let (arg, base) = self.bind(t, write);
        Dense {
            arg,
            offset: base + off,
        }
    }

    fn mat(&mut self, m: &SymMat) -> MatOperand {
        let (arg, off) = self.bind(m.tensor, false);
        MatOperand {
            arg,
            offset: off + m.offset,
            batch_stride: m.batch_stride,
            row_stride: m.row_stride,
            col_stride: m.col_stride,
        }
    }
}

/// Threads per scatter-add column on a device with `limits`
/// ([`KernelOp::ScatterAdd`]: each thread walks every position, adding those of its block
/// of rows). On GPUs the blocks make `cols · J` threads, about
/// [`SCATTER_GPU_THREADS`], so a thread's chain of read-modify-writes is the positions
/// falling in its rows instead of all of them (IMDB's embedding gradient: 32,000
/// positions into `[5000, 400]`, 41 blocks of 122 rows). CPU adapters and the host
/// backends keep one block: a thread per column, as many as they run in parallel anyway.
fn scatter_row_blocks(limits: &DeviceLimits, rows: usize, cols: usize) -> u64 {
    match limits.adapter_class {
        crate::AdapterClass::Cpu => 1,
        _ => (SCATTER_GPU_THREADS.div_ceil(cols.max(1) as u64))
            .clamp(1, (rows as u64).clamp(1, SCATTER_MAX_ROW_BLOCKS)),
    }
}

/// The threads a GPU scatter-add aims at (blocks of rows times columns).
const SCATTER_GPU_THREADS: u64 = 16_384;

/// At most this many blocks of rows per scatter-add column (each block walks all positions).
const SCATTER_MAX_ROW_BLOCKS: u64 = 256;

/// Runs stage 3.
pub fn emit(g: &Graph, f: &Fused, layout: &Layout, limits: &DeviceLimits) -> Result<Plan> {
    let mut plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        kind: crate::PlanKind::Graph,
        buffers: layout
            .buffers
            .iter()
            .map(|b| BufferDesc {
                name: b.name.clone(),
                dtype: b.dtype,
                len: b.len.max(1),
                kind: b.kind.clone(),
            })
            .collect(),
        kernels: vec![],
        steps: vec![],
        inputs: vec![],
        outputs: vec![],
        params: vec![],
        stats: PlanStats::default(),
    };
    let mut step_of_group = vec![usize::MAX; f.groups.len()];
    for (gi, gr) in f.groups.iter().enumerate() {
        if gr.stores.is_empty()
            && !matches!(
                gr.kind,
                GroupKind::ScatterAdd { .. } | GroupKind::Recurrence { .. }
            )
        {
            continue; // nothing it computes is used
        }
        step_of_group[gi] = plan.steps.len();
        let mut b = Binder {
            layout,
            args: vec![],
        };
        let mut workgroup_size = WORKGROUP_SIZE;
        let (op, threads) = match &gr.kind {
            GroupKind::Elementwise { shape } => {
                let body = b.body(&gr.stages[0].0);
                let stores = b.stores(&gr.stores, Phase::Stage(0));
                let vector = elementwise_vector(shape, &body, &stores);
                let threads = (shape.iter().product::<usize>() / vector as usize) as u64;
                workgroup_size = ELEMENTWISE_WORKGROUP_SIZE
                    .min(limits.max_compute_invocations_per_workgroup)
                    .min(limits.max_compute_workgroup_size_x)
                    .max(1);
                (
                    KernelOp::Elementwise {
                        shape: shape.clone(),
                        body,
                        stores,
                        vector,
                    },
                    threads,
                )
            }
            GroupKind::Reduce { in_shape, axes } => {
                let stages = gr
                    .stages
                    .iter()
                    .enumerate()
                    .map(|(si, (body, folds))| ReduceStage {
                        body: b.body(body),
                        folds: folds.clone(),
                        stores: b.stores(&gr.stores, Phase::Stage(si as u16)),
                    })
                    .collect();
                let epilogue = b.body(&gr.epi);
                let stores = b.stores(&gr.stores, Phase::Epi);
                let broadcast = b.body(&gr.bc);
                let broadcast_stores = b.stores(&gr.stores, Phase::Bc);
                let outputs = gr.phase_shape(Phase::Epi).iter().product::<usize>() as u64;
                let count: usize = axes.iter().map(|&a| in_shape[a]).product();
                // GPUs: a workgroup tree per output element when there is enough to share
                let tree = match limits.adapter_class {
                    crate::AdapterClass::DiscreteGpu | crate::AdapterClass::IntegratedGpu
                        if count >= 2 * REDUCE_TREE as usize =>
                    {
                        REDUCE_TREE
                            .min(limits.max_compute_invocations_per_workgroup)
                            .min(limits.max_compute_workgroup_size_x)
                    }
                    _ => 1,
                };
                if tree > 1 {
                    workgroup_size = tree;
                }
                (
                    KernelOp::Reduce {
                        in_shape: in_shape.clone(),
                        axes: axes.clone(),
                        stages,
                        epilogue,
                        stores,
                        broadcast,
                        broadcast_stores,
                        tree,
                    },
                    outputs * tree as u64,
                )
            }
            GroupKind::ScatterAdd {
                rows,
                cols,
                count,
                index,
                src,
                dst,
            } => {
                let index = b.dense(*index, false);
                let src = b.dense(*src, false);
                let dst = b.dense((*dst, 0), true);
                (
                    KernelOp::ScatterAdd {
                        rows: *rows,
                        cols: *cols,
                        count: *count,
                        index,
                        src,
                        dst,
                    },
                    *cols as u64 * scatter_row_blocks(limits, *rows, *cols),
                )
            }
            GroupKind::Recurrence {
                cell,
                batch,
                steps,
                operands,
                backward,
                adjoint,
                out,
            } => {
                let ops: Vec<Dense> = operands.iter().map(|&o| b.dense(o, false)).collect();
                let out = b.dense((*out, 0), true);
                let Some((launch, wg)) =
                    RecurrenceLaunch::choose(cell, *backward, *batch, *steps, limits)
                else {
                    return Err(OptError::Limit {
                        tensor: g.nodes()[gr.nodes[0] as usize].name.clone(),
                        bytes: (2 * cell.gates() * cell.units * 4) as u64,
                        limit: limits.max_compute_workgroup_storage_size as u64,
                        what: "recurrence (workgroup memory per row, or loop iterations)",
                        hint: "the layer builds the unrolled graph when the fused recurrence does not fit; build it with the layer's graph, not Graph::recurrence".into(),
                    });
                };
                workgroup_size = wg;
                let threads = (batch.div_ceil(launch.rows as usize) as u64) * wg as u64;
                let (rb, mask) = (
                    cell.rb_operand().map(|i| ops[i].clone()),
                    cell.mask_operand().map(|i| ops[i].clone()),
                );
                let na = cell.forward_arity();
                (
                    KernelOp::Recurrence {
                        cell: *cell,
                        batch: *batch,
                        steps: *steps,
                        xp: ops[0].clone(),
                        r: ops[1].clone(),
                        rb,
                        mask,
                        grad: backward.then(|| [ops[na].clone(), ops[na + 1].clone()]),
                        adjoint: *adjoint,
                        out,
                        launch,
                    },
                    threads,
                )
            }
            GroupKind::MatMul {
                batch,
                m,
                n,
                k,
                a,
                b: bm,
            } => {
                let a = b.mat(a);
                let bm = b.mat(bm);
                let epilogue = b.body(&gr.epi);
                let stores = b.stores(&gr.stores, Phase::Epi);
                let variant = MatMulVariant::for_product(limits.adapter_class, *batch, *m, *n);
                let (tile, wg, threads) = variant.launch(*batch, *m, *n);
                workgroup_size = wg;
                (
                    KernelOp::MatMul {
                        batch: *batch,
                        m: *m,
                        n: *n,
                        k: *k,
                        a,
                        b: bm,
                        tile,
                        variant,
                        epilogue,
                        stores,
                        sums: None,
                    },
                    threads,
                )
            }
        };
        let label = gr
            .nodes
            .first()
            .map(|&n| g.nodes()[n as usize].name.clone())
            .unwrap_or_else(|| format!("group_{gi}"));
        // loops one invocation runs: never more than the device allows (llvmpipe would stop
        // them silently and compute a wrong result)
        let iterations: u64 = match &op {
            KernelOp::Reduce {
                in_shape,
                axes,
                stages,
                broadcast_stores,
                tree,
                ..
            } => {
                let count: u64 = axes.iter().map(|&a| in_shape[a] as u64).product();
                count.div_ceil((*tree).max(1) as u64)
                    * (stages.len() as u64 + u64::from(!broadcast_stores.is_empty()))
            }
            KernelOp::MatMul { k, .. } => *k as u64,
            KernelOp::Elementwise { .. } => 0,
            KernelOp::ScatterAdd { rows, count, .. } => (*rows).max(*count) as u64,
            KernelOp::Recurrence {
                cell,
                steps,
                grad,
                launch,
                ..
            } => launch.iterations(cell, grad.is_some(), *steps, workgroup_size),
        };
        if iterations > limits.max_loop_iterations {
            return Err(OptError::Limit {
                tensor: label,
                bytes: iterations,
                limit: limits.max_loop_iterations,
                what: "invocation (loop iterations)",
                hint: "the device stops longer loops; this reduction's length has no factor small enough to split it".into(),
            });
        }
        if b.args.len() > limits.max_storage_buffers_per_shader_stage as usize {
            return Err(OptError::Limit {
                tensor: label,
                bytes: b.args.len() as u64,
                limit: limits.max_storage_buffers_per_shader_stage as u64,
                what: "kernel (storage buffers bound)",
                hint: "the fusion heuristics should have split this kernel; please report it"
                    .into(),
            });
        }
        let kernel = Kernel {
            label,
            op,
            args: b
                .args
                .iter()
                .map(|&(buf, access)| Arg {
                    dtype: plan.buffers[buf].dtype,
                    access,
                })
                .collect(),
            workgroup_size,
            threads,
            nodes: gr.nodes.clone(),
        };
        let buffers = b
            .args
            .iter()
            .map(|&(buf, _)| BufferId(buf as u32))
            .collect();
        dispatch(&mut plan, kernel, buffers, limits)?;
    }
    for &(param, src) in &f.copies {
        plan.steps.push(Step::Copy {
            src: BufferId(layout.placement[src as usize].0 as u32),
            dst: BufferId(layout.placement[param as usize].0 as u32),
        });
    }
    let slot = |(name, t, node): &(String, u32, kiln_ir::NodeId)| Slot {
        name: name.clone(),
        buffer: BufferId(layout.placement[*t as usize].0 as u32),
        shape: g.shape(*node).clone(),
        dtype: g.dtype(*node),
        indices: None,
    };
    plan.inputs = f.inputs.iter().map(slot).collect();
    plan.outputs = f.outputs.iter().map(slot).collect();
    plan.params = f.params.iter().map(slot).collect();
    for (t, info) in f.tensors.iter().enumerate() {
        if info.class != super::fuse::Class::Temp {
            continue;
        }
        let (buffer, offset) = layout.placement[t];
        let first = info.producer.map_or(0, |g| step_of_group[g]);
        let last = info.last_use.map_or(first, |g| step_of_group[g]).max(first);
        plan.stats.allocations.push(crate::plan::Allocation {
            name: info.name.clone(),
            buffer: buffer as u32,
            offset,
            len: info.len,
            first,
            last,
        });
    }
    let st = &mut plan.stats;
    st.kernels = plan.kernels.len();
    st.dispatches = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Dispatch { .. }))
        .count();
    st.temp_bytes = layout.arena_bytes;
    // one buffer per computed tensor: what an unfused, unplanned lowering allocates
    st.naive_bytes = g
        .nodes()
        .iter()
        .filter(|n| {
            matches!(
                n.op,
                Op::Unary(_)
                    | Op::Binary(_)
                    | Op::Where
                    | Op::Cast
                    | Op::Reduce { .. }
                    | Op::MatMul
                    | Op::Concat { .. }
                    | Op::Gather
                    | Op::ScatterAdd
                    | Op::Recurrence(_)
                    | Op::RecurrenceGrad(_)
            )
        })
        .map(|n| n.shape.numel() as u64 * 4)
        .sum();
    Ok(plan)
}

fn dispatch(
    plan: &mut Plan,
    kernel: Kernel,
    buffers: Vec<BufferId>,
    limits: &DeviceLimits,
) -> Result<()> {
    let groups = kernel.threads.div_ceil(kernel.workgroup_size as u64).max(1);
    let max = limits.max_compute_workgroups_per_dimension.max(1) as u64;
    let x = groups.min(max);
    let y = groups.div_ceil(x);
    if y > max {
        return Err(OptError::Limit {
            tensor: kernel.label.clone(),
            bytes: kernel.threads,
            limit: max * max * kernel.workgroup_size as u64,
            what: "dispatch (threads)",
            hint: "the tensor is too large for one dispatch".into(),
        });
    }
    plan.kernels.push(kernel);
    plan.steps.push(Step::Dispatch {
        kernel: plan.kernels.len() as u32 - 1,
        buffers,
        workgroups: [x as u32, y as u32, 1],
    });
    Ok(())
}
