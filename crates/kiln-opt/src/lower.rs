//! Lowering: IR graph → kernels, buffers and schedule.
//!
//! Every IR node gets a [`Val`]: a buffer read through a [`View`], or a scalar fill that is
//! inlined into consumers as a literal. Movement ops only rewrite views; elementwise ops,
//! reductions and matmuls each become one kernel writing a fresh contiguous buffer. Outputs
//! that are not already a kernel's contiguous result get a copy kernel; assignments become
//! `Copy` steps at the end of the schedule.

use crate::kernel::{Access, Arg, Body, Expr, Kernel, KernelOp, MatOperand, ReduceKind, View};
use crate::plan::{
    BufferDesc, BufferId, BufferKind, Plan, PlanStats, Slot, Step, PLAN_FORMAT_VERSION,
};
use crate::{DeviceLimits, OptError, Result};
use kiln_ir::{Constant, DType, Graph, NodeId, Op, ReduceOp, Shape};

/// Threads per workgroup of generated kernels.
pub const WORKGROUP_SIZE: u32 = 64;
/// Register block of the matmul kernel (rows, cols per thread).
pub const MATMUL_TILE: [u32; 2] = [4, 4];

/// How an IR node's value is available after lowering.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// Elements of `buf` through `view` (over the node's shape).
    Buf {
        /// Buffer.
        buf: BufferId,
        /// Index map over the node's shape.
        view: View,
    },
    /// Every element equals this value.
    Fill(f64),
}

struct Lowering<'a> {
    g: &'a Graph,
    limits: &'a DeviceLimits,
    plan: Plan,
    vals: Vec<Option<Val>>,
    /// Buffer written by a kernel for node i (contiguous, offset 0), if any.
    produced: Vec<Option<BufferId>>,
}

/// Lowers a verified graph into a plan.
pub fn lower(g: &Graph, limits: &DeviceLimits) -> Result<Plan> {
    let mut l = Lowering {
        g,
        limits,
        plan: Plan {
            format_version: PLAN_FORMAT_VERSION,
            buffers: vec![],
            kernels: vec![],
            steps: vec![],
            inputs: vec![],
            outputs: vec![],
            params: vec![],
            stats: PlanStats::default(),
        },
        vals: vec![None; g.len()],
        produced: vec![None; g.len()],
    };
    for (id, _) in g.iter() {
        let v = l.lower_node(id)?;
        l.vals[id.index()] = Some(v);
    }
    l.finish_roots()?;
    let p = &mut l.plan;
    p.stats.kernels = p.kernels.len();
    p.stats.dispatches = p.dispatch_count();
    p.stats.temp_bytes = p
        .buffers
        .iter()
        .filter(|b| b.kind == BufferKind::Temp)
        .map(|b| b.bytes())
        .sum();
    p.stats.naive_bytes = p.buffers.iter().map(|b| b.bytes()).sum();
    Ok(l.plan)
}

impl Lowering<'_> {
    fn val(&self, id: NodeId) -> &Val {
        self.vals[id.index()]
            .as_ref()
            .expect("operands are lowered first")
    }

    fn new_buffer(
        &mut self,
        name: &str,
        dtype: DType,
        len: usize,
        kind: BufferKind,
    ) -> Result<BufferId> {
        let bytes = len.max(1) as u64 * dtype.size_bytes() as u64;
        let limit = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > limit {
            return Err(OptError::Limit {
                tensor: name.to_string(),
                bytes,
                limit,
                what: "storage binding",
                hint: "use a smaller batch size or split the layer".into(),
            });
        }
        self.plan.buffers.push(BufferDesc {
            name: name.to_string(),
            dtype,
            len: len.max(1),
            kind,
        });
        Ok(BufferId(self.plan.buffers.len() as u32 - 1))
    }

    fn dispatch(&mut self, kernel: Kernel, buffers: Vec<BufferId>) -> Result<()> {
        let groups = kernel.threads.div_ceil(kernel.workgroup_size as u64).max(1);
        let max = self.limits.max_compute_workgroups_per_dimension.max(1) as u64;
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
        self.plan.kernels.push(kernel);
        self.plan.steps.push(Step::Dispatch {
            kernel: self.plan.kernels.len() as u32 - 1,
            buffers,
            workgroups: [x as u32, y as u32, 1],
        });
        Ok(())
    }

    /// Adds a load (or literal) of `val` to `body`, binding its buffer in `args`.
    fn load(
        &self,
        body: &mut Body,
        args: &mut Vec<(BufferId, DType)>,
        val: &Val,
        dtype: DType,
    ) -> u32 {
        match val {
            Val::Fill(v) => body.push(Expr::Const(*v), dtype),
            Val::Buf { buf, view } => {
                let arg = match args.iter().position(|(b, _)| b == buf) {
                    Some(i) => i,
                    None => {
                        args.push((*buf, dtype));
                        args.len() - 1
                    }
                } as u32;
                body.push(
                    Expr::Load {
                        arg,
                        view: view.clone(),
                    },
                    dtype,
                )
            }
        }
    }

    /// Emits a kernel writing a new contiguous buffer for node `id`; returns its value.
    fn emit(
        &mut self,
        id: NodeId,
        op: KernelOp,
        threads: u64,
        mut args: Vec<(BufferId, DType)>,
        kind: BufferKind,
    ) -> Result<(BufferId, Val)> {
        let n = self.g.node(id);
        let out = self.new_buffer(&n.name, n.dtype, n.shape.numel(), kind)?;
        args.push((out, n.dtype));
        let nargs = args.len();
        let kernel = Kernel {
            label: n.name.clone(),
            op,
            args: args
                .iter()
                .enumerate()
                .map(|(i, (_, dt))| Arg {
                    dtype: *dt,
                    access: if i + 1 == nargs {
                        Access::Write
                    } else {
                        Access::Read
                    },
                })
                .collect(),
            workgroup_size: WORKGROUP_SIZE,
            threads,
            nodes: vec![id.0],
        };
        self.dispatch(kernel, args.iter().map(|a| a.0).collect())?;
        self.produced[id.index()] = Some(out);
        Ok((
            out,
            Val::Buf {
                buf: out,
                view: View::contiguous(n.shape.dims()),
            },
        ))
    }

    /// An elementwise kernel computing `f(loads)` for node `id` over its shape.
    fn elementwise(
        &mut self,
        id: NodeId,
        build: impl FnOnce(&Self, &mut Body, &mut Vec<(BufferId, DType)>),
    ) -> Result<Val> {
        let n = self.g.node(id);
        let mut body = Body::default();
        let mut args = vec![];
        build(self, &mut body, &mut args);
        let shape = n.shape.dims().to_vec();
        let threads = n.shape.numel() as u64;
        Ok(self
            .emit(
                id,
                KernelOp::Elementwise { shape, body },
                threads,
                args,
                BufferKind::Temp,
            )?
            .1)
    }

    /// Materializes `val` of node `id` into a new contiguous buffer of `kind`.
    fn materialize(&mut self, id: NodeId, val: &Val, kind: BufferKind) -> Result<BufferId> {
        let n = self.g.node(id);
        let dt = n.dtype;
        let mut body = Body::default();
        let mut args = vec![];
        self.load(&mut body, &mut args, val, dt);
        let shape = n.shape.dims().to_vec();
        let threads = n.shape.numel() as u64;
        Ok(self
            .emit(
                id,
                KernelOp::Elementwise { shape, body },
                threads,
                args,
                kind,
            )?
            .0)
    }

    fn lower_node(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let dims = n.shape.dims().to_vec();
        let arg = |i: usize| n.inputs[i];
        Ok(match &n.op {
            Op::Input { name } => {
                let buf = self.new_buffer(name, n.dtype, n.shape.numel(), BufferKind::Input)?;
                self.plan.inputs.push(Slot {
                    name: name.clone(),
                    buffer: buf,
                    shape: n.shape.clone(),
                    dtype: n.dtype,
                });
                Val::Buf {
                    buf,
                    view: View::contiguous(&dims),
                }
            }
            Op::Param { name } => {
                let buf = self.new_buffer(name, n.dtype, n.shape.numel(), BufferKind::Param)?;
                self.plan.params.push(Slot {
                    name: name.clone(),
                    buffer: buf,
                    shape: n.shape.clone(),
                    dtype: n.dtype,
                });
                Val::Buf {
                    buf,
                    view: View::contiguous(&dims),
                }
            }
            Op::Constant(Constant::Fill(v)) => Val::Fill(*v),
            Op::Constant(Constant::Data(d)) => {
                let values = d.iter().map(|&x| x as f32).collect();
                let buf =
                    self.new_buffer(&n.name, n.dtype, d.len(), BufferKind::Constant { values })?;
                Val::Buf {
                    buf,
                    view: View::contiguous(&dims),
                }
            }
            Op::Unary(u) => {
                let x = self.val(arg(0)).clone();
                let dt = n.dtype;
                self.elementwise(id, |l, body, args| {
                    let a = l.load(body, args, &x, dt);
                    body.push(Expr::Unary(*u, a), dt);
                })?
            }
            Op::Binary(b) => {
                let (x, y) = (self.val(arg(0)).clone(), self.val(arg(1)).clone());
                let dt = n.dtype;
                self.elementwise(id, |l, body, args| {
                    let a = l.load(body, args, &x, dt);
                    let c = l.load(body, args, &y, dt);
                    body.push(Expr::Binary(*b, a, c), dt);
                })?
            }
            Op::Where => {
                let c = self.val(arg(0)).clone();
                let (x, y) = (self.val(arg(1)).clone(), self.val(arg(2)).clone());
                let cdt = self.g.dtype(arg(0));
                let dt = n.dtype;
                self.elementwise(id, |l, body, args| {
                    let cc = l.load(body, args, &c, cdt);
                    let a = l.load(body, args, &x, dt);
                    let b = l.load(body, args, &y, dt);
                    body.push(Expr::Select(cc, a, b), dt);
                })?
            }
            Op::Cast => {
                let x = self.val(arg(0)).clone();
                let sdt = self.g.dtype(arg(0));
                let dt = n.dtype;
                self.elementwise(id, |l, body, args| {
                    let a = l.load(body, args, &x, sdt);
                    body.push(Expr::Cast(a), dt);
                })?
            }
            Op::Reshape => match self.val(arg(0)).clone() {
                Val::Fill(v) => Val::Fill(v),
                Val::Buf { buf, view } => {
                    let src = self.g.shape(arg(0)).clone();
                    if is_dense(&view, src.dims()) {
                        Val::Buf {
                            buf,
                            view: View {
                                offset: view.offset,
                                strides: Shape::new(dims.clone()).strides(),
                            },
                        }
                    } else {
                        let b =
                            self.materialize(arg(0), &Val::Buf { buf, view }, BufferKind::Temp)?;
                        Val::Buf {
                            buf: b,
                            view: View::contiguous(&dims),
                        }
                    }
                }
            },
            Op::Permute { perm } => match self.val(arg(0)).clone() {
                Val::Fill(v) => Val::Fill(v),
                Val::Buf { buf, view } => Val::Buf {
                    buf,
                    view: View {
                        offset: view.offset,
                        strides: perm.iter().map(|&p| view.strides[p]).collect(),
                    },
                },
            },
            Op::Expand => match self.val(arg(0)).clone() {
                Val::Fill(v) => Val::Fill(v),
                Val::Buf { buf, view } => {
                    let src = self.g.shape(arg(0)).clone();
                    Val::Buf {
                        buf,
                        view: View {
                            offset: view.offset,
                            strides: (0..dims.len())
                                .map(|d| if src.0[d] == 1 { 0 } else { view.strides[d] })
                                .collect(),
                        },
                    }
                }
            },
            Op::Reduce { op, axes } => {
                let x = self.val(arg(0)).clone();
                let src = self.g.shape(arg(0)).clone();
                let dt = n.dtype;
                let mut args = vec![];
                let mut prologue = Body::default();
                self.load(&mut prologue, &mut args, &x, dt);
                let mut epilogue = Body::default();
                let r = epilogue.push(Expr::Reduced, dt);
                if *op == ReduceOp::Mean {
                    let cnt: usize = axes.iter().map(|&a| src.0[a]).product();
                    let c = epilogue.push(Expr::Const(1.0 / cnt as f64), dt);
                    epilogue.push(Expr::Binary(kiln_ir::BinaryOp::Mul, r, c), dt);
                }
                let kind = if *op == ReduceOp::Max {
                    ReduceKind::Max
                } else {
                    ReduceKind::Sum
                };
                let kop = KernelOp::Reduce {
                    in_shape: src.dims().to_vec(),
                    axes: axes.clone(),
                    kind,
                    prologue,
                    epilogue,
                };
                self.emit(id, kop, n.shape.numel() as u64, args, BufferKind::Temp)?
                    .1
            }
            Op::MatMul => {
                let r = dims.len();
                let (m, nn) = (dims[r - 2], dims[r - 1]);
                let k = self.g.shape(arg(0)).0[r - 1];
                let batch: usize = dims[..r - 2].iter().product();
                let mut args = vec![];
                let a = self.mat_operand(arg(0), &mut args)?;
                let b = self.mat_operand(arg(1), &mut args)?;
                let [tm, tn] = MATMUL_TILE;
                let threads = (batch * m.div_ceil(tm as usize) * nn.div_ceil(tn as usize)) as u64;
                let kop = KernelOp::MatMul {
                    batch,
                    m,
                    n: nn,
                    k,
                    a,
                    b,
                    tile: MATMUL_TILE,
                };
                self.emit(id, kop, threads, args, BufferKind::Temp)?.1
            }
        })
    }

    /// A matmul operand over `[batch.., rows, cols]`; materializes it when its batch axes
    /// cannot be described by one stride.
    fn mat_operand(&mut self, id: NodeId, args: &mut Vec<(BufferId, DType)>) -> Result<MatOperand> {
        let shape = self.g.shape(id).clone();
        let r = shape.rank();
        let mut val = self.val(id).clone();
        let collapsible = |view: &View| {
            (0..r.saturating_sub(3)).all(|d| {
                shape.0[d + 1] == 1 || view.strides[d] == view.strides[d + 1] * shape.0[d + 1]
            })
        };
        let ok = matches!(&val, Val::Buf { view, .. } if collapsible(view));
        if !ok {
            let b = self.materialize(id, &val, BufferKind::Temp)?;
            val = Val::Buf {
                buf: b,
                view: View::contiguous(shape.dims()),
            };
        }
        let Val::Buf { buf, view } = val else {
            unreachable!("materialized above")
        };
        let arg = match args.iter().position(|(b, _)| *b == buf) {
            Some(i) => i,
            None => {
                args.push((buf, DType::F32));
                args.len() - 1
            }
        } as u32;
        let batch_stride = if r > 2 {
            // innermost non-trivial batch axis stride
            (0..r - 2)
                .rev()
                .find(|&d| shape.0[d] != 1)
                .map(|d| view.strides[d])
                .unwrap_or(0)
        } else {
            0
        };
        Ok(MatOperand {
            arg,
            offset: view.offset,
            batch_stride,
            row_stride: view.strides[r - 2],
            col_stride: view.strides[r - 1],
        })
    }

    fn finish_roots(&mut self) -> Result<()> {
        let outputs = self.g.outputs().to_vec();
        for (name, id) in outputs {
            let val = self.val(id).clone();
            let n = self.g.node(id);
            let reuse = match (&val, self.produced[id.index()]) {
                (Val::Buf { buf, .. }, Some(p))
                    if *buf == p && self.plan.buffers[p.0 as usize].kind == BufferKind::Temp =>
                {
                    Some(p)
                }
                _ => None,
            };
            let buf = match reuse {
                Some(b) => {
                    self.plan.buffers[b.0 as usize].kind = BufferKind::Output;
                    b
                }
                None => self.materialize(id, &val, BufferKind::Output)?,
            };
            self.plan.outputs.push(Slot {
                name,
                buffer: buf,
                shape: n.shape.clone(),
                dtype: n.dtype,
            });
        }
        let assigns = self.g.assigns().to_vec();
        let mut copies = vec![];
        for (p, v) in assigns {
            if p == v {
                continue;
            }
            let val = self.val(v).clone();
            let src = match (&val, self.produced[v.index()]) {
                (Val::Buf { buf, .. }, Some(b)) if *buf == b => b,
                _ => self.materialize(v, &val, BufferKind::Temp)?,
            };
            let Val::Buf { buf: dst, .. } = self.val(p).clone() else {
                unreachable!("params lower to buffers")
            };
            copies.push(Step::Copy { src, dst });
        }
        self.plan.steps.extend(copies);
        Ok(())
    }
}

/// True when `view` addresses a dense row-major block of `dims` starting at its offset.
fn is_dense(view: &View, dims: &[usize]) -> bool {
    View {
        offset: 0,
        strides: view.strides.clone(),
    }
    .is_contiguous(dims)
}
