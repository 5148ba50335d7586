//! Stage 1: grouping nodes into kernels (see the module page of [`super`]).

use crate::kernel::{Body, Expr, ExprId, Fold, ReduceKind, View};
use crate::{DeviceLimits, OptError, Result};
use kiln_ir::{BinaryOp, Constant, DType, Graph, NodeId, Op, ReduceOp, Shape};

/// Index of a symbolic tensor.
pub type TensorId = u32;

/// Who owns a tensor's memory.
#[derive(Clone, Debug, PartialEq)]
pub enum Class {
    /// Scratch packed into an arena.
    Temp,
    /// Scratch in its own buffer (the source of an end-of-run param copy).
    Standalone,
    /// Fed by the host (input slot index).
    Input(usize),
    /// A persistent variable (param slot index).
    Param(usize),
    /// Read back by the host (output slot index).
    Output(usize),
    /// Uploaded at load.
    Constant(Vec<f32>),
}

/// A tensor in memory.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Name (the IR node's scope path or slot name).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Elements.
    pub len: usize,
    /// Owner.
    pub class: Class,
    /// First group that writes it (None for host-written tensors): its lifetime starts here.
    pub producer: Option<usize>,
    /// Last group that writes it (a concat's tensor is written by every group computing one
    /// of its parts): readers must come after it.
    pub last_write: Option<usize>,
    /// Last group that reads it.
    pub last_use: Option<usize>,
}

/// A phase of a group: the iteration space a body runs over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The body of an elementwise group, or fold pass `s` of a reduction.
    Stage(u16),
    /// Reduction epilogue (output shape) or matmul epilogue (`[batch, m, n]`).
    Epi,
    /// Reduction broadcast phase (input shape, after the fold).
    Bc,
}

/// A matmul operand in symbolic form.
#[derive(Clone, Debug)]
pub struct SymMat {
    /// Tensor read.
    pub tensor: TensorId,
    /// Element offset inside the tensor.
    pub offset: usize,
    /// Batch stride.
    pub batch_stride: usize,
    /// Row stride.
    pub row_stride: usize,
    /// Column stride.
    pub col_stride: usize,
}

/// What a group computes.
#[derive(Clone, Debug)]
pub enum GroupKind {
    /// Elementwise over `shape`.
    Elementwise {
        /// Iteration shape.
        shape: Vec<usize>,
    },
    /// Reductions over `axes` of `in_shape`, in stages (see [`Group::stages`]).
    Reduce {
        /// Input iteration shape.
        in_shape: Vec<usize>,
        /// Reduced axes.
        axes: Vec<usize>,
    },
    /// `dst[index[i], c] += src[i, c]` into a zeroed `[rows, cols]` tensor (dense operands).
    ScatterAdd {
        /// Rows of the output.
        rows: usize,
        /// Elements per row.
        cols: usize,
        /// Positions.
        count: usize,
        /// Indices: (tensor, element offset).
        index: (TensorId, usize),
        /// Updates: (tensor, element offset).
        src: (TensorId, usize),
        /// Output tensor.
        dst: TensorId,
    },
    /// Matrix product with an epilogue.
    MatMul {
        /// Batch count.
        batch: usize,
        /// Rows.
        m: usize,
        /// Columns.
        n: usize,
        /// Inner dimension.
        k: usize,
        /// Left operand.
        a: SymMat,
        /// Right operand.
        b: SymMat,
    },
}

/// A kernel under construction. Loads and stores name tensors (`arg` = [`TensorId`]).
#[derive(Clone, Debug)]
pub struct Group {
    /// What it computes.
    pub kind: GroupKind,
    /// Stage bodies with their folds: the one body of an elementwise group, or the fold
    /// passes of a reduction (a stage may read the accumulators of earlier stages).
    pub stages: Vec<(Body, Vec<Fold>)>,
    /// Epilogue body.
    pub epi: Body,
    /// Broadcast body.
    pub bc: Body,
    /// Stores per phase: `(phase, tensor, value, view)`; the view (over the phase shape,
    /// relative to the tensor's start) is `None` for a dense row-major store.
    pub stores: Vec<(Phase, TensorId, ExprId, Option<View>)>,
    /// IR nodes computed here (the fusion group).
    pub nodes: Vec<u32>,
}

impl Group {
    fn body(&mut self, p: Phase) -> &mut Body {
        match p {
            Phase::Stage(s) => &mut self.stages[s as usize].0,
            Phase::Epi => &mut self.epi,
            Phase::Bc => &mut self.bc,
        }
    }
    fn body_ref(&self, p: Phase) -> &Body {
        match p {
            Phase::Stage(s) => &self.stages[s as usize].0,
            Phase::Epi => &self.epi,
            Phase::Bc => &self.bc,
        }
    }
    /// Iteration shape of a phase.
    pub fn phase_shape(&self, p: Phase) -> Vec<usize> {
        match (&self.kind, p) {
            (GroupKind::Elementwise { shape }, _) => shape.clone(),
            (GroupKind::Reduce { in_shape, .. }, Phase::Stage(_) | Phase::Bc) => in_shape.clone(),
            (GroupKind::Reduce { in_shape, axes, .. }, Phase::Epi) => in_shape
                .iter()
                .enumerate()
                .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
                .collect(),
            (GroupKind::MatMul { batch, m, n, .. }, _) => vec![*batch, *m, *n],
            (GroupKind::ScatterAdd { rows, cols, .. }, _) => vec![*rows, *cols],
        }
    }
    /// True when nodes may still join phase `p`.
    fn open(&self, p: Phase) -> bool {
        matches!(
            (&self.kind, p),
            (GroupKind::Elementwise { .. }, Phase::Stage(0))
                | (GroupKind::Reduce { .. }, Phase::Epi | Phase::Bc)
                | (GroupKind::MatMul { .. }, Phase::Epi)
        )
    }
}

/// How a node's value is available.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// Every element equals this.
    Fill(f64),
    /// In memory, through a view over the node's shape.
    Mem {
        /// Tensor.
        t: TensorId,
        /// View (relative to the tensor's start).
        view: View,
    },
    /// An elementwise node all of whose operands are in memory, constant or lazy: computed
    /// inside whichever group consumes it (re-computed per consumer group).
    Lazy,
    /// Computed in group `g`, phase `phase`, as expression `e`. With `bcast`, the value is
    /// a reduction result seen broadcast over the reduction's input shape.
    Reg {
        /// Group.
        g: usize,
        /// Phase.
        phase: Phase,
        /// Expression.
        e: ExprId,
        /// Broadcast back over the reduced axes.
        bcast: bool,
    },
}

/// The result of stage 1.
#[derive(Debug)]
pub struct Fused {
    /// Groups in execution order.
    pub groups: Vec<Group>,
    /// Tensors.
    pub tensors: Vec<TensorInfo>,
    /// `(param tensor, source tensor)` copies at the end of the run.
    pub copies: Vec<(TensorId, TensorId)>,
    /// Input slots: (name, tensor, node).
    pub inputs: Vec<(String, TensorId, NodeId)>,
    /// Output slots: (name, tensor, node).
    pub outputs: Vec<(String, TensorId, NodeId)>,
    /// Param slots: (name, tensor, node).
    pub params: Vec<(String, TensorId, NodeId)>,
}

fn squeeze(s: &[usize]) -> Vec<usize> {
    s.iter().copied().filter(|&d| d != 1).collect()
}

/// Re-expresses a view over `from` as a view over `to` when both have the same dims once
/// size-1 axes are removed.
fn adapt_view(view: &View, from: &[usize], to: &[usize]) -> Option<View> {
    if from == to {
        return Some(view.clone());
    }
    if squeeze(from) != squeeze(to) {
        return None;
    }
    let strides_nz: Vec<usize> = from
        .iter()
        .zip(&view.strides)
        .filter(|(&d, _)| d != 1)
        .map(|(_, &s)| s)
        .collect();
    let mut it = strides_nz.into_iter();
    let strides = to
        .iter()
        .map(|&d| if d == 1 { 0 } else { it.next().unwrap_or(0) })
        .collect();
    Some(View {
        offset: view.offset,
        strides,
    })
}

struct Fuser<'a> {
    g: &'a Graph,
    limits: &'a DeviceLimits,
    groups: Vec<Group>,
    tensors: Vec<TensorInfo>,
    vals: Vec<Option<Val>>,
    /// Tensor a node's register value was stored to, and the view when that is a block of a
    /// concat (`None`: dense).
    stored: Vec<Option<(TensorId, Option<View>)>>,
    /// Non-temp tensors a lazy node's cone reads (its binding footprint).
    foot: Vec<Vec<TensorId>>,
    /// Loads per tensor: (group, phase, view contiguous over the phase shape).
    loads: Vec<Vec<(usize, Phase, bool)>>,
    /// For an operand of a concat: `(concat node, start on its axis)`: the node is stored
    /// straight into its block of the concat's tensor (no copy).
    home: Vec<Option<(NodeId, usize, NodeId)>>,
    /// The tensor of a concat node that has no home itself (allocated on first use).
    concat_tensor: Vec<Option<TensorId>>,
    /// Expressions a lazy node's cone re-computes in each consumer.
    lazy_cost: Vec<u32>,
    fused: Fused,
}

/// A lazy value whose cone grows past this many expressions is computed in a group of its
/// own instead (a recurrence such as an LSTM cell state would otherwise be re-computed from
/// the first step in every consumer).
const MAX_LAZY_COST: u32 = 48;

/// Runs stage 1.
pub fn fuse(g: &Graph, limits: &DeviceLimits) -> Result<Fused> {
    let mut f = Fuser {
        g,
        limits,
        groups: vec![],
        tensors: vec![],
        vals: vec![None; g.len()],
        stored: vec![None; g.len()],
        foot: vec![vec![]; g.len()],
        loads: vec![],
        home: vec![None; g.len()],
        concat_tensor: vec![None; g.len()],
        lazy_cost: vec![0; g.len()],
        fused: Fused {
            groups: vec![],
            tensors: vec![],
            copies: vec![],
            inputs: vec![],
            outputs: vec![],
            params: vec![],
        },
    };
    // operands of a concat computed by a kernel are stored straight into its tensor
    for (id, n) in g.iter() {
        if let Op::Concat { axis } = n.op {
            let mut start = 0;
            for &i in &n.inputs {
                // through reshapes that only add or remove size-1 axes
                let mut src = i;
                while let (Op::Reshape, Some(&x)) = (&g.node(src).op, g.node(src).inputs.first()) {
                    if squeeze(g.shape(x).dims()) != squeeze(g.shape(src).dims()) {
                        break;
                    }
                    src = x;
                }
                let computed = matches!(
                    g.node(src).op,
                    Op::Unary(_)
                        | Op::Binary(_)
                        | Op::Where
                        | Op::Cast
                        | Op::MatMul
                        | Op::Concat { .. }
                );
                if computed && f.home[src.index()].is_none() {
                    f.home[src.index()] = Some((id, start, i));
                }
                start += g.shape(i).dims()[axis];
            }
        }
    }
    for (id, _) in g.iter() {
        let v = f.node(id)?;
        f.vals[id.index()] = Some(v);
    }
    f.roots()?;
    let mut out = f.fused;
    out.groups = f.groups;
    out.tensors = f.tensors;
    Ok(out)
}

impl Fuser<'_> {
    fn val(&self, id: NodeId) -> Val {
        self.vals[id.index()]
            .clone()
            .expect("operands precede users")
    }

    fn tensor(
        &mut self,
        name: &str,
        dtype: DType,
        len: usize,
        class: Class,
        producer: Option<usize>,
    ) -> TensorId {
        self.tensors.push(TensorInfo {
            name: name.to_string(),
            dtype,
            len: len.max(1),
            class,
            producer,
            last_write: producer,
            last_use: None,
        });
        self.loads.push(vec![]);
        (self.tensors.len() - 1) as TensorId
    }

    /// Adds a store of `e` (phase `p` of group `g`) into tensor `t` through `view` (over the
    /// phase shape; `None`: dense), extending the tensor's write interval.
    fn add_store(&mut self, g: usize, p: Phase, t: TensorId, e: ExprId, view: Option<View>) {
        self.groups[g].stores.push((p, t, e, view));
        let ti = &mut self.tensors[t as usize];
        ti.producer = Some(ti.producer.map_or(g, |f| f.min(g)));
        ti.last_write = Some(ti.last_write.map_or(g, |l| l.max(g)));
    }

    /// The tensor and view (over the node's shape) of the block of a concat that node `id`
    /// is stored into, when it has one.
    fn region(&mut self, id: NodeId) -> Option<(TensorId, View)> {
        let (c, start, operand) = self.home[id.index()]?;
        let Op::Concat { axis } = self.g.node(c).op else {
            return None;
        };
        let (t, view) = self.concat_region(c);
        let block = View {
            offset: view.offset + start * view.strides[axis],
            strides: view.strides,
        };
        // seen over the node's own shape (it may differ from the operand's by size-1 axes)
        let view = adapt_view(
            &block,
            self.g.shape(operand).dims(),
            self.g.shape(id).dims(),
        )?;
        Some((t, view))
    }

    /// The tensor and view of concat node `c`: its block of an enclosing concat, or a tensor
    /// of its own.
    fn concat_region(&mut self, c: NodeId) -> (TensorId, View) {
        if let Some(r) = self.region(c) {
            return r;
        }
        let n = self.g.node(c);
        let dims = n.shape.dims().to_vec();
        let t = match self.concat_tensor[c.index()] {
            Some(t) => t,
            None => {
                let (name, dt, len) = (n.name.clone(), n.dtype, n.shape.numel());
                let t = self.tensor(&name, dt, len, Class::Temp, None);
                self.concat_tensor[c.index()] = Some(t);
                t
            }
        };
        (t, View::contiguous(&dims))
    }

    /// The store view for a value of node shape `shape` computed over phase shape `pshape`,
    /// written through `view`: `None` when the view is dense from the tensor's start.
    fn store_view(view: &View, shape: &[usize], pshape: &[usize]) -> Result<Option<View>> {
        let v = adapt_view(view, shape, pshape).ok_or_else(|| {
            OptError::Unsupported(format!(
                "store view over {shape:?} does not fit phase shape {pshape:?}"
            ))
        })?;
        Ok((!v.is_contiguous(pshape)).then_some(v))
    }

    fn new_group(&mut self, kind: GroupKind) -> usize {
        self.groups.push(Group {
            kind,
            stages: vec![(Body::default(), vec![])],
            epi: Body::default(),
            bc: Body::default(),
            stores: vec![],
            nodes: vec![],
        });
        self.groups.len() - 1
    }

    /// Distinct non-temp tensors group `g` binds (temps share arena buffers).
    fn bound_tensors(&self, g: usize) -> Vec<TensorId> {
        let gr = &self.groups[g];
        let mut v: Vec<TensorId> = vec![];
        let mut add = |t: TensorId| {
            if !v.contains(&t) {
                v.push(t)
            }
        };
        for b in gr.stages.iter().map(|s| &s.0).chain([&gr.epi, &gr.bc]) {
            for n in &b.nodes {
                if let Expr::Load { arg, .. } | Expr::Gather { arg, .. } = n.expr {
                    add(arg);
                }
            }
        }
        for (_, t, _, _) in &gr.stores {
            add(*t);
        }
        if let GroupKind::MatMul { a, b, .. } = &gr.kind {
            add(a.tensor);
            add(b.tensor);
        }
        if let GroupKind::ScatterAdd {
            index, src, dst, ..
        } = &gr.kind
        {
            add(index.0);
            add(src.0);
            add(*dst);
        }
        v.retain(|&t| self.tensors[t as usize].class != Class::Temp);
        v
    }

    /// Non-temp tensors that using node `id` as an operand binds.
    fn footprint(&self, id: NodeId) -> Vec<TensorId> {
        match self.val(id) {
            Val::Lazy => self.foot[id.index()].clone(),
            Val::Mem { t, .. } if self.tensors[t as usize].class != Class::Temp => vec![t],
            _ => vec![],
        }
    }

    /// Storage bindings a group may use: the device limit minus two for arena buffers.
    fn binding_budget(&self) -> usize {
        (self.limits.max_storage_buffers_per_shader_stage as usize)
            .saturating_sub(2)
            .max(1)
    }

    /// A new elementwise kernel that computes node `id` (whatever its value) over its shape
    /// and stores it densely into a new tensor of `class` named `name`; returns the tensor.
    fn copy_kernel(&mut self, id: NodeId, name: &str, class: Class) -> Result<TensorId> {
        let node = self.g.node(id).clone();
        let t = self.tensor(name, node.dtype, node.shape.numel(), class, None);
        self.copy_into(id, t, None)?;
        Ok(t)
    }

    /// A new elementwise kernel that computes node `id` over its shape and stores it into
    /// tensor `t` through `view` (`None`: dense).
    fn copy_into(&mut self, id: NodeId, t: TensorId, view: Option<View>) -> Result<()> {
        let shape = self.g.node(id).shape.dims().to_vec();
        let g = self.new_group(GroupKind::Elementwise {
            shape: shape.clone(),
        });
        let e = self.operand(id, g, Phase::Stage(0), &shape)?;
        let view = match view {
            Some(v) => Self::store_view(&v, &shape, &shape)?,
            None => None,
        };
        self.add_store(g, Phase::Stage(0), t, e, view);
        if !self.groups[g].nodes.contains(&id.0) {
            self.groups[g].nodes.push(id.0);
        }
        Ok(())
    }

    /// Stores register value `v` of node `id` to a new temp tensor (once) and returns it.
    fn materialize(&mut self, id: NodeId) -> Result<(TensorId, View)> {
        let node = self.g.node(id);
        let shape = node.shape.dims().to_vec();
        match self.val(id) {
            Val::Mem { t, view } => Ok((t, view)),
            Val::Lazy => {
                let name = node.name.clone();
                let (t, view) = match self.region(id) {
                    Some((t, view)) => {
                        self.copy_into(id, t, Some(view.clone()))?;
                        (t, view)
                    }
                    None => (
                        self.copy_kernel(id, &name, Class::Temp)?,
                        View::contiguous(&shape),
                    ),
                };
                self.vals[id.index()] = Some(Val::Mem {
                    t,
                    view: view.clone(),
                });
                Ok((t, view))
            }
            Val::Fill(v) => {
                // a broadcast constant becomes a tiny constant tensor
                let t = self.tensor(
                    &node.name,
                    node.dtype,
                    1,
                    Class::Constant(vec![v as f32]),
                    None,
                );
                Ok((
                    t,
                    View {
                        offset: 0,
                        strides: vec![0; shape.len()],
                    },
                ))
            }
            Val::Reg { g, phase, e, bcast } => {
                let base = if bcast {
                    self.reduced_source(id)
                } else {
                    self.reg_source(id)
                };
                let (t, home_view) = match self.stored[base.index()].clone() {
                    Some(s) => s,
                    None => {
                        let bn = self.g.node(base).clone();
                        let (ph, ex) = match self.val(base) {
                            Val::Reg { phase, e, .. } => (phase, e),
                            _ => (phase, e),
                        };
                        let s = match (bcast, self.region(base)) {
                            (false, Some((t, view))) => {
                                let pshape = self.groups[g].phase_shape(ph);
                                let sv = Self::store_view(&view, bn.shape.dims(), &pshape)?;
                                self.add_store(g, ph, t, ex, sv);
                                (t, Some(view))
                            }
                            _ => {
                                let len = bn.shape.numel();
                                let t = self.tensor(&bn.name, bn.dtype, len, Class::Temp, None);
                                self.add_store(g, ph, t, ex, None);
                                (t, None)
                            }
                        };
                        self.stored[base.index()] = Some(s.clone());
                        s
                    }
                };
                if let (Some(hv), false) = (home_view, bcast) {
                    let bshape = self.g.shape(base).dims().to_vec();
                    let view = adapt_view(&hv, &bshape, &shape).ok_or_else(|| {
                        OptError::Unsupported(format!(
                            "block view over {bshape:?} does not fit {shape:?}"
                        ))
                    })?;
                    self.vals[id.index()] = Some(Val::Mem {
                        t,
                        view: view.clone(),
                    });
                    return Ok((t, view));
                }
                let view = if bcast {
                    // the stored reduction output seen over the reduction's input shape
                    let out_shape = self.groups[g].phase_shape(Phase::Epi);
                    let in_shape = self.groups[g].phase_shape(Phase::Bc);
                    let cs = Shape::new(out_shape.clone()).strides();
                    let v = View {
                        offset: 0,
                        strides: out_shape
                            .iter()
                            .zip(cs)
                            .map(|(&d, s)| if d == 1 { 0 } else { s })
                            .collect(),
                    };
                    adapt_view(&v, &in_shape, &shape).ok_or_else(|| {
                        OptError::Unsupported(format!(
                            "broadcast view {in_shape:?} does not fit {shape:?}"
                        ))
                    })?
                } else {
                    View::contiguous(&shape)
                };
                let v = Val::Mem {
                    t,
                    view: view.clone(),
                };
                if !bcast {
                    self.vals[id.index()] = Some(v);
                }
                Ok((t, view))
            }
        }
    }

    /// The node that computes a (non-broadcast) register value: through reshapes that only
    /// add or remove size-1 axes, which share their operand's register value.
    fn reg_source(&self, id: NodeId) -> NodeId {
        let mut cur = id;
        loop {
            let n = self.g.node(cur);
            match (&n.op, n.inputs.first()) {
                (Op::Reshape, Some(&x))
                    if matches!(self.val(x), Val::Reg { bcast: false, .. })
                        && self.val(x) == self.val(cur) =>
                {
                    cur = x
                }
                _ => return cur,
            }
        }
    }

    /// The reduction node behind a broadcast register value.
    fn reduced_source(&self, id: NodeId) -> NodeId {
        let mut cur = id;
        loop {
            let n = self.g.node(cur);
            match (&n.op, self.val(cur)) {
                (Op::Expand | Op::Reshape, Val::Reg { .. }) => cur = n.inputs[0],
                _ => return cur,
            }
        }
    }

    /// Copies the expression cone of `e` from phase `from` to `to` of group `g`, turning
    /// load views over the source phase shape into views over the target phase shape.
    fn reemit(&mut self, g: usize, from: Phase, e: ExprId, to: Phase) -> ExprId {
        let src = self.groups[g].body_ref(from).clone();
        let fshape = self.groups[g].phase_shape(from);
        let mut map: Vec<Option<ExprId>> = vec![None; src.nodes.len()];
        let mut need = vec![false; src.nodes.len()];
        need[e as usize] = true;
        for i in (0..src.nodes.len()).rev() {
            if !need[i] {
                continue;
            }
            match &src.nodes[i].expr {
                Expr::Unary(_, a) | Expr::Cast(a) => need[*a as usize] = true,
                Expr::Gather { index, .. } => need[*index as usize] = true,
                Expr::Random { counter, .. } => need[*counter as usize] = true,
                Expr::Binary(_, a, b) => {
                    need[*a as usize] = true;
                    need[*b as usize] = true;
                }
                Expr::Select(c, a, b) => {
                    need[*c as usize] = true;
                    need[*a as usize] = true;
                    need[*b as usize] = true;
                }
                _ => {}
            }
        }
        let mut reloads = vec![];
        let dst = self.groups[g].body(to);
        for i in 0..src.nodes.len() {
            if !need[i] {
                continue;
            }
            let m = |x: &ExprId| map[*x as usize].expect("operands first");
            let n = &src.nodes[i];
            if let Expr::Load { arg, .. } | Expr::Gather { arg, .. } = &n.expr {
                // a re-emitted load reads after this group's earlier-phase stores: it blocks
                // in-place updates of that tensor in the earlier phase
                reloads.push(*arg);
            }
            // reduced axes have size 1 in the epilogue shape: index them with 0
            let restride = |view: &View| View {
                offset: view.offset,
                strides: view
                    .strides
                    .iter()
                    .zip(&fshape)
                    .map(|(&s, &d)| if d == 1 { 0 } else { s })
                    .collect(),
            };
            let ex = match &n.expr {
                Expr::Load { arg, view } => Expr::Load {
                    arg: *arg,
                    view: restride(view),
                },
                Expr::Gather {
                    arg,
                    view,
                    index,
                    rows,
                    row_stride,
                } => Expr::Gather {
                    arg: *arg,
                    view: restride(view),
                    index: m(index),
                    rows: *rows,
                    row_stride: *row_stride,
                },
                Expr::Random {
                    seed,
                    counter,
                    strides,
                } => Expr::Random {
                    seed: *seed,
                    counter: m(counter),
                    strides: restride(&View {
                        offset: 0,
                        strides: strides.clone(),
                    })
                    .strides,
                },
                Expr::Const(c) => Expr::Const(*c),
                Expr::Unary(op, a) => Expr::Unary(*op, m(a)),
                Expr::Binary(op, a, b) => Expr::Binary(*op, m(a), m(b)),
                Expr::Select(c, a, b) => Expr::Select(m(c), m(a), m(b)),
                Expr::Cast(a) => Expr::Cast(m(a)),
                Expr::Acc(j) => Expr::Acc(*j),
            };
            map[i] = Some(dst.push(ex, n.dtype));
        }
        for t in reloads {
            self.loads[t as usize].push((g, to, false));
        }
        map[e as usize].expect("target was emitted")
    }

    /// Can lazy node `id` be computed inside group `g` (all memory it reads is written by
    /// earlier groups)?
    fn lazy_ok(&self, id: NodeId, g: usize) -> bool {
        self.g.node(id).inputs.iter().all(|&i| match self.val(i) {
            Val::Fill(_) => true,
            Val::Lazy => self.lazy_ok(i, g),
            Val::Mem { t, .. } => self.tensors[t as usize].last_write.is_none_or(|pg| pg < g),
            Val::Reg { .. } => false,
        })
    }

    /// Can operand `id` with value `v` be used inside group `g` phase `p`?
    fn usable(&self, id: NodeId, v: &Val, g: usize, p: Phase) -> bool {
        match v {
            Val::Fill(_) => true,
            Val::Lazy => self.lazy_ok(id, g),
            Val::Mem { t, .. } => self.tensors[*t as usize].last_write.is_none_or(|pg| pg < g),
            Val::Reg {
                g: g2,
                phase,
                bcast,
                ..
            } => {
                if *g2 != g {
                    return *g2 < g;
                }
                match (phase, p, bcast) {
                    (a, b, false) if *a == b => true,
                    (Phase::Epi, Phase::Bc, true) => true,
                    (Phase::Stage(_), Phase::Bc, false) => {
                        matches!(self.groups[g].kind, GroupKind::Reduce { .. })
                    }
                    _ => false,
                }
            }
        }
    }

    /// Emits operand `id` into group `g`, phase `p` (the consumer has shape `shape`).
    fn operand(&mut self, id: NodeId, g: usize, p: Phase, shape: &[usize]) -> Result<ExprId> {
        let dt = self.g.dtype(id);
        let v = self.val(id);
        let pshape = self.groups[g].phase_shape(p);
        if let Val::Reg {
            g: g2,
            phase,
            e,
            bcast,
        } = v
        {
            if g2 == g {
                match (phase, p, bcast) {
                    (a, b, false) if a == b => return Ok(e),
                    (Phase::Epi, Phase::Bc, true) => {
                        return Ok(self.reemit(g, Phase::Epi, e, Phase::Bc))
                    }
                    (Phase::Stage(s), Phase::Bc, false) => {
                        return Ok(self.reemit(g, Phase::Stage(s), e, Phase::Bc))
                    }
                    _ => {}
                }
            }
        }
        if let Val::Fill(c) = v {
            return Ok(self.groups[g].body(p).push(Expr::Const(c), dt));
        }
        if let Val::Lazy = v {
            let map = squeeze_map(shape, &pshape);
            return self.lazy_expr(id, g, p, &map);
        }
        let (t, view) = self.materialize(id)?;
        let view = adapt_view(&view, shape, &pshape).ok_or_else(|| {
            OptError::Unsupported(format!(
                "operand view {shape:?} does not fit phase shape {pshape:?}"
            ))
        })?;
        let contiguous = view.is_contiguous(&pshape);
        self.loads[t as usize].push((g, p, contiguous));
        let tl = &mut self.tensors[t as usize];
        tl.last_use = Some(tl.last_use.map_or(g, |u| u.max(g)));
        Ok(self.groups[g].body(p).push(Expr::Load { arg: t, view }, dt))
    }

    /// Emits lazy node `id` into group `g` phase `p`; `map` sends each axis of the node to
    /// an axis of the phase's iteration shape (or to index 0).
    fn lazy_expr(
        &mut self,
        id: NodeId,
        g: usize,
        p: Phase,
        map: &[Option<usize>],
    ) -> Result<ExprId> {
        let n = self.g.node(id).clone();
        let rank = self.groups[g].phase_shape(p).len();
        if let Some(inner) = movement_map(self.g, id) {
            let x = n.inputs[0];
            let composed: Vec<Option<usize>> =
                inner.iter().map(|m| m.and_then(|d| map[d])).collect();
            return self.value_in(x, g, p, &composed, rank);
        }
        let mut args = vec![];
        for &i in &n.inputs {
            args.push(self.value_in(i, g, p, map, rank)?);
        }
        if !self.groups[g].nodes.contains(&id.0) {
            self.groups[g].nodes.push(id.0);
        }
        Ok(self.groups[g]
            .body(p)
            .push(elementwise_expr(&n.op, &args), n.dtype))
    }

    /// Emits the value of `id` (in memory, constant or lazy) through an axis map.
    fn value_in(
        &mut self,
        id: NodeId,
        g: usize,
        p: Phase,
        map: &[Option<usize>],
        rank: usize,
    ) -> Result<ExprId> {
        let dt = self.g.dtype(id);
        match self.val(id) {
            Val::Fill(c) => Ok(self.groups[g].body(p).push(Expr::Const(c), dt)),
            Val::Lazy => self.lazy_expr(id, g, p, map),
            Val::Mem { t, view } => {
                let mut strides = vec![0; rank];
                for (d, m) in map.iter().enumerate() {
                    if let Some(o) = m {
                        strides[*o] += view.strides[d];
                    }
                }
                let view = View {
                    offset: view.offset,
                    strides,
                };
                let pshape = self.groups[g].phase_shape(p);
                let contiguous = view.is_contiguous(&pshape);
                self.loads[t as usize].push((g, p, contiguous));
                let tl = &mut self.tensors[t as usize];
                tl.last_use = Some(tl.last_use.map_or(g, |u| u.max(g)));
                Ok(self.groups[g].body(p).push(Expr::Load { arg: t, view }, dt))
            }
            Val::Reg { .. } => Err(OptError::Unsupported(format!(
                "lazy value depends on register value {id} (fusion invariant broken)"
            ))),
        }
    }

    fn elementwise(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let shape = n.shape.dims().to_vec();
        let ops: Vec<Val> = n.inputs.iter().map(|&i| self.val(i)).collect();
        if let Some(c) = fold(&n.op, &ops, n.dtype) {
            return Ok(Val::Fill(c));
        }
        let cost = 1 + n
            .inputs
            .iter()
            .map(|&i| match self.val(i) {
                Val::Lazy => self.lazy_cost[i.index()],
                _ => 0,
            })
            .sum::<u32>();
        let lazy_ok = self.home[id.index()].is_none() && cost <= MAX_LAZY_COST;
        if lazy_ok && !ops.iter().any(|v| matches!(v, Val::Reg { .. })) {
            self.lazy_cost[id.index()] = cost;
            // lazy, unless its cone would bind too many buffers: then store the operand with
            // the largest footprint first
            loop {
                let mut fp: Vec<TensorId> = vec![];
                for &i in &n.inputs {
                    for t in self.footprint(i) {
                        if !fp.contains(&t) {
                            fp.push(t);
                        }
                    }
                }
                if fp.len() < self.binding_budget() {
                    self.foot[id.index()] = fp;
                    return Ok(Val::Lazy);
                }
                let big = n
                    .inputs
                    .iter()
                    .copied()
                    .filter(|&i| self.val(i) == Val::Lazy)
                    .max_by_key(|&i| self.foot[i.index()].len());
                match big {
                    Some(i) => {
                        self.materialize(i)?;
                    }
                    None => break,
                }
            }
        }
        // candidates: groups computing an operand in a phase whose shape matches
        let mut cands: Vec<(usize, Phase)> = vec![];
        for v in &ops {
            if let Val::Reg {
                g, phase, bcast, ..
            } = v
            {
                let p = if *bcast { Phase::Bc } else { *phase };
                cands.push((*g, p));
            }
        }
        cands.sort_by_key(|c| std::cmp::Reverse(c.0));
        cands.dedup();
        let mut chosen = None;
        for (g, p) in cands {
            let gr = &self.groups[g];
            if !gr.open(p) || squeeze(&gr.phase_shape(p)) != squeeze(&shape) {
                continue;
            }
            if !ops
                .iter()
                .zip(&n.inputs)
                .all(|(v, &i)| self.usable(i, v, g, p))
            {
                continue;
            }
            let mut bound = self.bound_tensors(g);
            for &i in &n.inputs {
                for t in self.footprint(i) {
                    if !bound.contains(&t) {
                        bound.push(t);
                    }
                }
            }
            if bound.len() + 1 > self.binding_budget() {
                continue;
            }
            chosen = Some((g, p));
            break;
        }
        let (g, p) = match chosen {
            Some(c) => c,
            None => (
                self.new_group(GroupKind::Elementwise {
                    shape: shape.clone(),
                }),
                Phase::Stage(0),
            ),
        };
        let mut args = vec![];
        for &i in &n.inputs {
            args.push(self.operand(i, g, p, &shape)?);
        }
        let e = self.groups[g]
            .body(p)
            .push(elementwise_expr(&n.op, &args), n.dtype);
        self.groups[g].nodes.push(id.0);
        Ok(Val::Reg {
            g,
            phase: p,
            e,
            bcast: false,
        })
    }

    /// True when group `g` reduces `axes` of `in_shape`.
    fn same_reduce(&self, g: usize, in_shape: &[usize], axes: &[usize]) -> bool {
        matches!(&self.groups[g].kind, GroupKind::Reduce { in_shape: s, axes: a } if s == in_shape && a == axes)
    }

    /// Adds fold `(kind, e)` to stage `s` of group `g`; returns its accumulator index.
    fn add_fold(&mut self, g: usize, s: usize, kind: ReduceKind, e: ExprId) -> u32 {
        let gr = &mut self.groups[g];
        let before: usize = gr.stages[..s].iter().map(|st| st.1.len()).sum();
        gr.stages[s].1.push(Fold { kind, value: e });
        (before + gr.stages[s].1.len() - 1) as u32
    }

    fn reduce(&mut self, id: NodeId, op: ReduceOp, axes: &[usize]) -> Result<Val> {
        let n = self.g.node(id).clone();
        let x = n.inputs[0];
        let in_shape = self.g.shape(x).dims().to_vec();
        let kind = if op == ReduceOp::Max {
            ReduceKind::Max
        } else {
            ReduceKind::Sum
        };
        let xv = self.val(x);
        let (g, acc) = match xv {
            // the elementwise group computing x becomes the reduction's first stage
            Val::Reg {
                g,
                phase: Phase::Stage(0),
                e,
                bcast: false,
            } if matches!(&self.groups[g].kind, GroupKind::Elementwise { shape } if *shape == in_shape) =>
            {
                self.groups[g].kind = GroupKind::Reduce {
                    in_shape: in_shape.clone(),
                    axes: axes.to_vec(),
                };
                (g, self.add_fold(g, 0, kind, e))
            }
            // a sibling of the reductions of the same (last) stage
            Val::Reg {
                g,
                phase: Phase::Stage(s),
                e,
                bcast: false,
            } if self.same_reduce(g, &in_shape, axes)
                && s as usize + 1 == self.groups[g].stages.len() =>
            {
                (g, self.add_fold(g, s as usize, kind, e))
            }
            // a value of the broadcast pass (it may read the accumulators): a new stage
            Val::Reg {
                g,
                phase: Phase::Bc,
                e,
                bcast: false,
            } if self.same_reduce(g, &in_shape, axes) => {
                self.groups[g].stages.push((Body::default(), vec![]));
                let s = self.groups[g].stages.len() - 1;
                let e2 = self.reemit(g, Phase::Bc, e, Phase::Stage(s as u16));
                (g, self.add_fold(g, s, kind, e2))
            }
            _ => {
                // a sibling reduction of an earlier group over the same shape and axes, or a
                // new group
                let fp = self.footprint(x);
                let host = (0..self.groups.len()).rev().find(|&g| {
                    if !self.same_reduce(g, &in_shape, axes) || !self.usable(x, &xv, g, Phase::Bc) {
                        return false;
                    }
                    if matches!(xv, Val::Reg { g: g2, .. } if g2 >= g) {
                        return false; // only values of earlier groups can be loaded
                    }
                    let mut bound = self.bound_tensors(g);
                    for t in &fp {
                        if !bound.contains(t) {
                            bound.push(*t);
                        }
                    }
                    bound.len() < self.binding_budget()
                });
                match host {
                    Some(g) => {
                        let s = self.groups[g].stages.len() - 1;
                        let e = self.operand(x, g, Phase::Stage(s as u16), &in_shape)?;
                        (g, self.add_fold(g, s, kind, e))
                    }
                    None => {
                        let g = self.new_group(GroupKind::Reduce {
                            in_shape: in_shape.clone(),
                            axes: axes.to_vec(),
                        });
                        let e = self.operand(x, g, Phase::Stage(0), &in_shape)?;
                        (g, self.add_fold(g, 0, kind, e))
                    }
                }
            }
        };
        let dt = n.dtype;
        let mut e = self.groups[g].epi.push(Expr::Acc(acc), dt);
        if op == ReduceOp::Mean {
            let cnt: usize = axes.iter().map(|&a| in_shape[a]).product();
            let c = self.groups[g].epi.push(Expr::Const(1.0 / cnt as f64), dt);
            e = self.groups[g]
                .epi
                .push(Expr::Binary(BinaryOp::Mul, e, c), dt);
        }
        self.groups[g].nodes.push(id.0);
        Ok(Val::Reg {
            g,
            phase: Phase::Epi,
            e,
            bcast: false,
        })
    }

    /// A matmul operand; copies it to a dense tensor first when its batch axes cannot share
    /// one stride.
    fn mat_operand(&mut self, id: NodeId) -> Result<SymMat> {
        let shape = self.g.shape(id).dims().to_vec();
        let r = shape.len();
        let (mut t, mut view) = self.materialize(id)?;
        let collapsible = |v: &View| {
            (0..r.saturating_sub(3))
                .all(|d| shape[d + 1] == 1 || v.strides[d] == v.strides[d + 1] * shape[d + 1])
        };
        if !collapsible(&view) {
            let name = self.g.node(id).name.clone();
            let nt = self.copy_kernel(id, &name, Class::Temp)?;
            t = nt;
            view = View::contiguous(&shape);
        }
        let batch_stride = (0..r - 2)
            .rev()
            .find(|&d| shape[d] != 1)
            .map(|d| view.strides[d])
            .unwrap_or(0);
        Ok(SymMat {
            tensor: t,
            offset: view.offset,
            batch_stride,
            row_stride: view.strides[r - 2],
            col_stride: view.strides[r - 1],
        })
    }

    fn matmul(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let dims = n.shape.dims().to_vec();
        let r = dims.len();
        let (m, nn) = (dims[r - 2], dims[r - 1]);
        let k = self.g.shape(n.inputs[0]).dims()[r - 1];
        let batch: usize = dims[..r - 2].iter().product();
        let a = self.mat_operand(n.inputs[0])?;
        let b = self.mat_operand(n.inputs[1])?;
        let g = self.new_group(GroupKind::MatMul {
            batch,
            m,
            n: nn,
            k,
            a: a.clone(),
            b: b.clone(),
        });
        for t in [a.tensor, b.tensor] {
            self.loads[t as usize].push((g, Phase::Epi, false));
            let tl = &mut self.tensors[t as usize];
            tl.last_use = Some(tl.last_use.map_or(g, |u| u.max(g)));
        }
        let e = self.groups[g].epi.push(Expr::Acc(0), DType::F32);
        self.groups[g].nodes.push(id.0);
        Ok(Val::Reg {
            g,
            phase: Phase::Epi,
            e,
            bcast: false,
        })
    }

    fn node(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let dims = n.shape.dims().to_vec();
        Ok(match &n.op {
            Op::Input { name } => {
                let slot = self.fused.inputs.len();
                let t = self.tensor(name, n.dtype, n.shape.numel(), Class::Input(slot), None);
                self.fused.inputs.push((name.clone(), t, id));
                Val::Mem {
                    t,
                    view: View::contiguous(&dims),
                }
            }
            Op::Param { name } => {
                let slot = self.fused.params.len();
                let t = self.tensor(name, n.dtype, n.shape.numel(), Class::Param(slot), None);
                self.fused.params.push((name.clone(), t, id));
                Val::Mem {
                    t,
                    view: View::contiguous(&dims),
                }
            }
            Op::Constant(Constant::Fill(v)) => Val::Fill(*v),
            Op::Constant(Constant::Data(d)) => {
                let values = d.iter().map(|&x| x as f32).collect();
                let t = self.tensor(&n.name, n.dtype, d.len(), Class::Constant(values), None);
                Val::Mem {
                    t,
                    view: View::contiguous(&dims),
                }
            }
            Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast => self.elementwise(id)?,
            Op::Reduce { op, axes } => self.reduce(id, *op, axes)?,
            Op::MatMul => self.matmul(id)?,
            Op::Reshape | Op::Permute { .. } | Op::Expand => self.movement(id)?,
            Op::Slice { axis, start } => self.slice(id, *axis, *start)?,
            Op::Concat { axis } => self.concat(id, *axis)?,
            Op::Gather => self.gather(id)?,
            Op::RandomUniform { seed } => self.random(id, *seed)?,
            Op::ScatterAdd => self.scatter_add(id)?,
            // the identity in every plan: gradients were already built
            Op::StopGradient => self.val(n.inputs[0]),
        })
    }

    fn movement(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let x = n.inputs[0];
        let src = self.g.shape(x).dims().to_vec();
        let dims = n.shape.dims().to_vec();
        let v = self.val(x);
        // register values: keep them when only size-1 axes change, or when a reduction result
        // is broadcast back over its input shape
        if let Val::Reg { g, phase, e, bcast } = v {
            match &n.op {
                Op::Reshape if squeeze(&src) == squeeze(&dims) => return Ok(v),
                Op::Expand if !bcast && phase == Phase::Epi => {
                    if let GroupKind::Reduce { in_shape, .. } = &self.groups[g].kind {
                        if *in_shape == dims && src == self.groups[g].phase_shape(Phase::Epi) {
                            return Ok(Val::Reg {
                                g,
                                phase,
                                e,
                                bcast: true,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        if v == Val::Lazy && movement_map(self.g, id).is_some() {
            return Ok(Val::Lazy);
        }
        let (t, view) = match v {
            Val::Fill(c) => return Ok(Val::Fill(c)),
            Val::Mem { t, view } => (t, view),
            Val::Reg { .. } | Val::Lazy => self.materialize(x)?,
        };
        if let (Op::Reshape, Some(v)) = (&n.op, adapt_view(&view, &src, &dims)) {
            return Ok(Val::Mem { t, view: v });
        }
        Ok(match &n.op {
            Op::Reshape => {
                let dense = View {
                    offset: 0,
                    strides: view.strides.clone(),
                }
                .is_contiguous(&src);
                if dense {
                    Val::Mem {
                        t,
                        view: View {
                            offset: view.offset,
                            strides: Shape::new(dims).strides(),
                        },
                    }
                } else {
                    // copy to dense memory first
                    let name = self.g.node(x).name.clone();
                    let nt = self.copy_kernel(x, &name, Class::Temp)?;
                    Val::Mem {
                        t: nt,
                        view: View::contiguous(&dims),
                    }
                }
            }
            Op::Permute { perm } => Val::Mem {
                t,
                view: View {
                    offset: view.offset,
                    strides: perm.iter().map(|&p| view.strides[p]).collect(),
                },
            },
            Op::Expand => Val::Mem {
                t,
                view: View {
                    offset: view.offset,
                    strides: (0..dims.len())
                        .map(|d| if src[d] == 1 { 0 } else { view.strides[d] })
                        .collect(),
                },
            },
            _ => unreachable!("movement ops only"),
        })
    }

    /// Records that group `g` reads tensor `t` (liveness and in-place legality).
    fn note_load(&mut self, t: TensorId, g: usize, p: Phase, contiguous: bool) {
        self.loads[t as usize].push((g, p, contiguous));
        let tl = &mut self.tensors[t as usize];
        tl.last_use = Some(tl.last_use.map_or(g, |u| u.max(g)));
    }

    /// Operand `id` as a dense tensor (copied first when its view is not dense):
    /// `(tensor, element offset)`.
    fn dense_operand(&mut self, id: NodeId) -> Result<(TensorId, usize)> {
        let dims = self.g.shape(id).dims().to_vec();
        let (t, view) = self.materialize(id)?;
        let dense = View {
            offset: 0,
            strides: view.strides.clone(),
        }
        .is_contiguous(&dims);
        if dense {
            return Ok((t, view.offset));
        }
        let name = self.g.node(id).name.clone();
        Ok((self.copy_kernel(id, &name, Class::Temp)?, 0))
    }

    /// A gather is an elementwise group over its output whose body reads the table at the
    /// row its index expression names.
    fn gather(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let (table, idx) = (n.inputs[0], n.inputs[1]);
        let shape = n.shape.dims().to_vec();
        let irank = self.g.shape(idx).rank();
        if let Val::Reg { .. } = self.val(idx) {
            self.materialize(idx)?;
        }
        let (t, tview) = self.materialize(table)?;
        let g = self.new_group(GroupKind::Elementwise {
            shape: shape.clone(),
        });
        let p = Phase::Stage(0);
        let map: Vec<Option<usize>> = (0..irank).map(Some).collect();
        let index = self.value_in(idx, g, p, &map, shape.len())?;
        let mut strides = vec![0; irank];
        strides.extend_from_slice(&tview.strides[1..]);
        self.note_load(t, g, p, false);
        let e = self.groups[g].body(p).push(
            Expr::Gather {
                arg: t,
                view: View {
                    offset: tview.offset,
                    strides,
                },
                index,
                rows: self.g.shape(table).dims()[0],
                row_stride: tview.strides[0],
            },
            n.dtype,
        );
        self.groups[g].nodes.push(id.0);
        Ok(Val::Reg {
            g,
            phase: p,
            e,
            bcast: false,
        })
    }

    /// Noise is computed in an elementwise group over its shape (consumers may join it).
    fn random(&mut self, id: NodeId, seed: u32) -> Result<Val> {
        let n = self.g.node(id).clone();
        let counter = n.inputs[0];
        let shape = n.shape.dims().to_vec();
        if let Val::Reg { .. } = self.val(counter) {
            self.materialize(counter)?;
        }
        let g = self.new_group(GroupKind::Elementwise {
            shape: shape.clone(),
        });
        let p = Phase::Stage(0);
        let map = vec![None; self.g.shape(counter).rank()];
        let c = self.value_in(counter, g, p, &map, shape.len())?;
        let e = self.groups[g].body(p).push(
            Expr::Random {
                seed,
                counter: c,
                strides: Shape::new(shape).strides(),
            },
            DType::F32,
        );
        self.groups[g].nodes.push(id.0);
        Ok(Val::Reg {
            g,
            phase: p,
            e,
            bcast: false,
        })
    }

    /// A scatter-add is a kernel of its own writing a new tensor.
    fn scatter_add(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let (idx, upd) = (n.inputs[0], n.inputs[1]);
        let index = self.dense_operand(idx)?;
        let src = self.dense_operand(upd)?;
        let dims = n.shape.dims().to_vec();
        let rows = dims[0];
        let cols: usize = dims[1..].iter().product();
        let count = self.g.shape(idx).numel();
        let dst = self.tensor(&n.name, n.dtype, n.shape.numel(), Class::Temp, None);
        let g = self.new_group(GroupKind::ScatterAdd {
            rows,
            cols,
            count,
            index,
            src,
            dst,
        });
        self.note_load(index.0, g, Phase::Epi, false);
        self.note_load(src.0, g, Phase::Epi, false);
        let ti = &mut self.tensors[dst as usize];
        ti.producer = Some(g);
        ti.last_write = Some(g);
        self.groups[g].nodes.push(id.0);
        Ok(Val::Mem {
            t: dst,
            view: View::contiguous(&dims),
        })
    }

    /// A slice is a view: its operand in memory with the offset moved.
    fn slice(&mut self, id: NodeId, axis: usize, start: usize) -> Result<Val> {
        let x = self.g.node(id).inputs[0];
        let (t, view) = match self.val(x) {
            Val::Fill(c) => return Ok(Val::Fill(c)),
            Val::Mem { t, view } => (t, view),
            Val::Reg { .. } | Val::Lazy => self.materialize(x)?,
        };
        Ok(Val::Mem {
            t,
            view: View {
                offset: view.offset + start * view.strides[axis],
                strides: view.strides,
            },
        })
    }

    /// A concat is a tensor whose blocks its operands were stored into (or are copied into
    /// now, when they could not be).
    fn concat(&mut self, id: NodeId, axis: usize) -> Result<Val> {
        let n = self.g.node(id).clone();
        let (t, view) = self.concat_region(id);
        let mut start = 0;
        for &i in &n.inputs {
            let block = View {
                offset: view.offset + start * view.strides[axis],
                strides: view.strides.clone(),
            };
            let at = start;
            start += self.g.shape(i).dims()[axis];
            let homed = self.home.contains(&Some((id, at, i)));
            if homed {
                match self.val(i) {
                    Val::Mem { t: ti, .. } if ti == t => continue, // already in place
                    Val::Reg { bcast: false, .. } | Val::Lazy => {
                        let (ti, _) = self.materialize(i)?;
                        if ti == t {
                            continue;
                        }
                    }
                    _ => {}
                }
            }
            self.copy_into(i, t, Some(block))?;
        }
        Ok(Val::Mem { t, view })
    }

    /// A dense tensor of its own holding the value of `v` (the source of a param copy).
    fn standalone_copy(&mut self, v: NodeId) -> Result<TensorId> {
        let vn = self.g.node(v).clone();
        let dims = vn.shape.dims().to_vec();
        if let Val::Mem { t, view } = self.val(v) {
            if self.tensors[t as usize].class == Class::Temp && view.is_contiguous(&dims) {
                self.tensors[t as usize].class = Class::Standalone;
                return Ok(t);
            }
        }
        self.copy_kernel(v, &vn.name, Class::Standalone)
    }

    fn roots(&mut self) -> Result<()> {
        let outputs = self.g.outputs().to_vec();
        for (name, id) in outputs {
            let n = self.g.node(id).clone();
            let dims = n.shape.dims().to_vec();
            let slot = self.fused.outputs.len();
            let v = self.val(id);
            let t = match v {
                Val::Reg {
                    g,
                    phase,
                    e,
                    bcast: false,
                } if self.stored[id.index()].is_none() => {
                    let t = self.tensor(&name, n.dtype, n.shape.numel(), Class::Output(slot), None);
                    self.add_store(g, phase, t, e, None);
                    t
                }
                Val::Mem { t, view }
                    if self.tensors[t as usize].class == Class::Temp
                        && view.is_contiguous(&dims)
                        && self.tensors[t as usize].len == n.shape.numel() =>
                {
                    self.tensors[t as usize].class = Class::Output(slot);
                    self.tensors[t as usize].name = name.clone();
                    t
                }
                _ => self.copy_kernel(id, &name, Class::Output(slot))?,
            };
            self.fused.outputs.push((name, t, id));
        }
        // Assignments. First every source that cannot be updated in place gets its own
        // tensor (this may create groups that load params); only then, with every load known,
        // decide which register values may overwrite their param in place.
        let assigns = self.g.assigns().to_vec();
        let mut deferred = vec![];
        for (p, v) in assigns {
            if p == v {
                continue;
            }
            let Val::Mem { t: pt, .. } = self.val(p) else {
                unreachable!("params are in memory")
            };
            if let Val::Reg {
                g,
                phase,
                e,
                bcast: false,
            } = self.val(v)
            {
                deferred.push((p, pt, v, g, phase, e));
                continue;
            }
            if self.val(v) == Val::Lazy {
                // compute it in a group of its own, which may then write the param in place
                // (the node stays lazy for any other consumer)
                let dims = self.g.shape(v).dims().to_vec();
                let g = self.new_group(GroupKind::Elementwise {
                    shape: dims.clone(),
                });
                let e = self.operand(v, g, Phase::Stage(0), &dims)?;
                deferred.push((p, pt, v, g, Phase::Stage(0), e));
                continue;
            }
            let src = self.standalone_copy(v)?;
            self.fused.copies.push((pt, src));
        }
        for (p, pt, v, g, phase, e) in deferred {
            let pshape = self.g.shape(p).dims().to_vec();
            let phase_ok = squeeze(&self.groups[g].phase_shape(phase)) == squeeze(&pshape);
            let readers_ok = self.loads[pt as usize]
                .iter()
                .all(|&(rg, rp, contiguous)| rg < g || (rg == g && rp == phase && contiguous));
            if phase_ok && readers_ok {
                // in place: the group that computes the new value writes the param
                self.add_store(g, phase, pt, e, None);
            } else {
                let vn = self.g.node(v);
                let (name, dt, len) = (vn.name.clone(), vn.dtype, vn.shape.numel());
                let t = self.tensor(&name, dt, len, Class::Standalone, None);
                self.add_store(g, phase, t, e, None);
                self.fused.copies.push((pt, t));
            }
        }
        Ok(())
    }
}

fn elementwise_expr(op: &Op, args: &[ExprId]) -> Expr {
    match op {
        Op::Unary(u) => Expr::Unary(*u, args[0]),
        Op::Binary(b) => Expr::Binary(*b, args[0], args[1]),
        Op::Where => Expr::Select(args[0], args[1], args[2]),
        Op::Cast => Expr::Cast(args[0]),
        _ => unreachable!("elementwise ops only"),
    }
}

/// Folds an elementwise op over constant fills (in f32 or i32, as the device would).
fn fold(op: &Op, ops: &[Val], dtype: DType) -> Option<f64> {
    let c: Vec<f64> = ops
        .iter()
        .map(|v| match v {
            Val::Fill(c) => Some(*c),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let r = match op {
        Op::Unary(u) => kiln_ir::eval::apply_unary(*u, c[0]),
        Op::Binary(b) => kiln_ir::eval::apply_binary(*b, c[0], c[1]),
        Op::Where => {
            if c[0] != 0.0 {
                c[1]
            } else {
                c[2]
            }
        }
        Op::Cast => c[0],
        _ => return None,
    };
    Some(match dtype {
        DType::F32 => r as f32 as f64,
        DType::I32 => r.trunc(),
    })
}

/// Maps the axes of `from` to the axes of `to` when both have the same dims once size-1
/// axes are removed (size-1 axes map to index 0).
fn squeeze_map(from: &[usize], to: &[usize]) -> Vec<Option<usize>> {
    let targets: Vec<usize> = (0..to.len()).filter(|&d| to[d] != 1).collect();
    let mut it = targets.into_iter();
    from.iter()
        .map(|&d| if d == 1 { None } else { it.next() })
        .collect()
}

/// For a movement node, the map from its input's axes to its own axes, when the movement
/// is an axis relabelling (expand, permute, or a reshape that only adds/removes size-1 axes).
fn movement_map(g: &Graph, id: NodeId) -> Option<Vec<Option<usize>>> {
    let n = g.node(id);
    let out = n.shape.dims();
    match &n.op {
        Op::Expand => {
            let src = g.shape(n.inputs[0]).dims();
            Some(
                (0..src.len())
                    .map(|d| if src[d] == 1 { None } else { Some(d) })
                    .collect(),
            )
        }
        Op::Permute { perm } => {
            let mut m = vec![None; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                m[p] = Some(i);
            }
            Some(m)
        }
        Op::Reshape => {
            let src = g.shape(n.inputs[0]).dims();
            (squeeze(src) == squeeze(out)).then(|| squeeze_map(src, out))
        }
        _ => None,
    }
}
