//! The kernel graph of a plan and the static checks of its schedule and memory plan.
//!
//! Every dispatch's reads and writes are computed as element ranges per buffer (from its
//! views, stores and matmul operands). From them: the kernel dependency graph (a petgraph
//! `DiGraph`, edges from the last writer of a range to its readers), its DOT rendering, and
//! [`check_plan`], which proves for a plan that (1) every temporary range a kernel reads was
//! written by an earlier kernel and is still live, (2) no two temporaries that are live at
//! the same time share memory, and (3) the kernel graph is acyclic.

use crate::kernel::{Body, Expr, KernelOp, View};
use crate::plan::{BufferKind, Plan, Step};
use petgraph::graph::{DiGraph, NodeIndex};
use std::fmt::Write as _;

/// An element range `[start, end)` of buffer `buffer`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// Buffer index.
    pub buffer: u32,
    /// First element.
    pub start: usize,
    /// One past the last element.
    pub end: usize,
}

fn view_range(view: &View, shape: &[usize]) -> (usize, usize) {
    // saturating: a corrupt plan must be rejected by range checks, never overflow
    let span = view
        .strides
        .iter()
        .zip(shape)
        .fold(0usize, |acc, (&s, &d)| {
            acc.saturating_add(s.saturating_mul(d.saturating_sub(1)))
        });
    (
        view.offset,
        view.offset.saturating_add(span).saturating_add(1),
    )
}

fn body_reads(body: &Body, shape: &[usize], bufs: &[u32], out: &mut Vec<Range>) {
    for n in &body.nodes {
        match &n.expr {
            Expr::Load { arg, view } => {
                let (start, end) = view_range(view, shape);
                out.push(Range {
                    buffer: bufs.get(*arg as usize).copied().unwrap_or(u32::MAX),
                    start,
                    end,
                });
            }
            Expr::Gather {
                arg,
                view,
                rows,
                row_stride,
                ..
            } => {
                // any row may be read
                let (start, end) = view_range(view, shape);
                let span = row_stride.saturating_mul(rows.saturating_sub(1));
                out.push(Range {
                    buffer: bufs.get(*arg as usize).copied().unwrap_or(u32::MAX),
                    start,
                    end: end.saturating_add(span),
                });
            }
            _ => {}
        }
    }
}

/// `(reads, writes)` of dispatch step `step` as buffer ranges (copies read and write whole
/// buffers).
pub fn step_ranges(plan: &Plan, step: &Step) -> (Vec<Range>, Vec<Range>) {
    let whole = |b: u32| Range {
        buffer: b,
        start: 0,
        end: plan.buffers[b as usize].len,
    };
    let (kernel, buffers) = match step {
        Step::Copy { src, dst } => return (vec![whole(src.0)], vec![whole(dst.0)]),
        Step::Dispatch {
            kernel, buffers, ..
        } => (&plan.kernels[*kernel as usize], buffers),
    };
    let bufs: Vec<u32> = buffers.iter().map(|b| b.0).collect();
    let mut reads = vec![];
    let mut writes = vec![];
    let stores = |stores: &[crate::kernel::Store], shape: &[usize], writes: &mut Vec<Range>| {
        for s in stores {
            let (start, end) = s.range(shape);
            writes.push(Range {
                buffer: bufs.get(s.arg as usize).copied().unwrap_or(u32::MAX),
                start,
                end,
            });
        }
    };
    match &kernel.op {
        KernelOp::Elementwise {
            shape,
            body,
            stores: st,
            ..
        } => {
            body_reads(body, shape, &bufs, &mut reads);
            stores(st, shape, &mut writes);
        }
        KernelOp::Reduce {
            in_shape,
            axes,
            stages,
            epilogue,
            stores: st,
            broadcast,
            broadcast_stores,
            ..
        } => {
            let out: Vec<usize> = in_shape
                .iter()
                .enumerate()
                .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
                .collect();
            for stage in stages {
                body_reads(&stage.body, in_shape, &bufs, &mut reads);
                stores(&stage.stores, in_shape, &mut writes);
            }
            body_reads(epilogue, &out, &bufs, &mut reads);
            body_reads(broadcast, in_shape, &bufs, &mut reads);
            stores(st, &out, &mut writes);
            stores(broadcast_stores, in_shape, &mut writes);
        }
        KernelOp::MatMul {
            batch,
            m,
            n,
            k,
            a,
            b,
            epilogue,
            stores: st,
            sums,
            ..
        } => {
            for (op, rows, cols) in [(a, *m, *k), (b, *k, *n)] {
                if *batch == 0 || rows == 0 || cols == 0 {
                    continue; // an empty operand reads nothing
                }
                let span = op
                    .batch_stride
                    .saturating_mul(batch.saturating_sub(1))
                    .saturating_add(op.row_stride.saturating_mul(rows.saturating_sub(1)))
                    .saturating_add(op.col_stride.saturating_mul(cols.saturating_sub(1)));
                reads.push(Range {
                    buffer: bufs.get(op.arg as usize).copied().unwrap_or(u32::MAX),
                    start: op.offset,
                    end: op.offset.saturating_add(span).saturating_add(1),
                });
            }
            let shape = [*batch, *m, *n];
            body_reads(epilogue, &shape, &bufs, &mut reads);
            stores(st, &shape, &mut writes);
            if let Some(sums) = sums {
                body_reads(&sums.body, &sums.shape, &bufs, &mut reads);
                stores(&sums.stores, &sums.shape, &mut writes);
            }
        }
        KernelOp::ScatterAdd {
            rows,
            cols,
            count,
            index,
            src,
            dst,
        } => {
            let range = |d: &crate::kernel::Dense, n: usize| Range {
                buffer: bufs.get(d.arg as usize).copied().unwrap_or(u32::MAX),
                start: d.offset,
                end: d.offset.saturating_add(n),
            };
            reads.push(range(index, *count));
            reads.push(range(src, count.saturating_mul(*cols)));
            writes.push(range(dst, rows.saturating_mul(*cols)));
        }
        KernelOp::Recurrence { .. } => {
            for (d, n, written) in kernel.op.recurrence_blocks().unwrap_or_default() {
                let range = Range {
                    buffer: bufs.get(d.arg as usize).copied().unwrap_or(u32::MAX),
                    start: d.offset,
                    end: d.offset.saturating_add(n),
                };
                if written {
                    writes.push(range);
                } else {
                    reads.push(range);
                }
            }
        }
    }
    (reads, writes)
}

fn overlaps(a: &Range, b: &Range) -> bool {
    a.buffer == b.buffer && a.start < b.end && b.start < a.end
}

/// The kernel dependency graph: one node per step (weight = step index), an edge from the
/// last earlier writer of every range a step reads.
pub fn kernel_graph(plan: &Plan) -> DiGraph<usize, ()> {
    let mut g = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..plan.steps.len()).map(|i| g.add_node(i)).collect();
    let mut written: Vec<(Range, usize)> = vec![];
    for (i, step) in plan.steps.iter().enumerate() {
        let (reads, writes) = step_ranges(plan, step);
        for r in &reads {
            if let Some((_, w)) = written.iter().rev().find(|(wr, _)| overlaps(wr, r)) {
                if *w != i && !g.contains_edge(nodes[*w], nodes[i]) {
                    g.add_edge(nodes[*w], nodes[i], ());
                }
            }
        }
        for w in writes {
            written.push((w, i));
        }
    }
    g
}

impl Plan {
    /// The kernel graph in Graphviz DOT: one box per step (kernel label and kind), edges
    /// from producers to consumers.
    pub fn to_dot(&self) -> String {
        let g = kernel_graph(self);
        let mut s = String::from(
            "digraph plan {\n  rankdir=TB;\n  node [shape=box, fontname=monospace];\n",
        );
        for idx in g.node_indices() {
            let i = g[idx];
            let label = match &self.steps[i] {
                Step::Copy { src, dst } => format!("copy b{} -> b{}", src.0, dst.0),
                Step::Dispatch { kernel, .. } => {
                    let k = &self.kernels[*kernel as usize];
                    let kind = match &k.op {
                        KernelOp::Elementwise { .. } => "elementwise",
                        KernelOp::Reduce { .. } => "reduce",
                        KernelOp::MatMul { .. } => "matmul",
                        KernelOp::ScatterAdd { .. } => "scatter-add",
                        KernelOp::Recurrence { .. } => "recurrence",
                    };
                    format!(
                        "k{kernel} {kind}\\n{}\\n{} nodes",
                        k.label.replace('"', "'"),
                        k.nodes.len()
                    )
                }
            };
            let _ = writeln!(s, "  s{i} [label=\"{label}\"];");
        }
        for e in g.edge_indices() {
            if let Some((a, b)) = g.edge_endpoints(e) {
                let _ = writeln!(s, "  s{} -> s{};", g[a], g[b]);
            }
        }
        s.push_str("}\n");
        s
    }
}

/// Statically checks a plan's schedule and memory plan (see the module page).
pub fn check_plan(plan: &Plan) -> Result<(), String> {
    let temp = |b: u32| plan.buffers[b as usize].kind == BufferKind::Temp;
    let allocs = &plan.stats.allocations;
    for (i, a) in allocs.iter().enumerate() {
        for b in &allocs[i + 1..] {
            let mem =
                a.buffer == b.buffer && a.offset < b.offset + b.len && b.offset < a.offset + a.len;
            let time = a.first <= b.last && b.first <= a.last;
            if mem && time {
                return Err(format!(
                    "temporaries `{}` (steps {}..={}) and `{}` (steps {}..={}) share memory in buffer {}",
                    a.name, a.first, a.last, b.name, b.first, b.last, a.buffer
                ));
            }
        }
    }
    let in_arena = |b: u32| allocs.iter().any(|a| a.buffer == b);
    for (i, step) in plan.steps.iter().enumerate() {
        let (reads, _) = step_ranges(plan, step);
        for r in reads
            .iter()
            .filter(|r| temp(r.buffer) && in_arena(r.buffer))
        {
            let ok = allocs.iter().any(|a| {
                a.buffer == r.buffer
                    && a.offset <= r.start
                    && r.end <= a.offset + a.len
                    && a.first < i
                    && i <= a.last
            });
            if !ok {
                return Err(format!(
                    "step {i} reads buffer {} [{}, {}) which no live temporary written earlier covers",
                    r.buffer, r.start, r.end
                ));
            }
        }
    }
    if petgraph::algo::is_cyclic_directed(&kernel_graph(plan)) {
        return Err("the kernel graph has a cycle".into());
    }
    Ok(())
}
