//! Stage 1: grouping nodes into kernels (see the module page of [`super`]).
//!
//! The [`Fuser`] walks the graph once, in arena order, and gives every node a value
//! ([`values`]). Views and axis maps are in [`views`]; groups (kernels under construction)
//! in [`group`]; emitting an operand into a group's body in [`operands`]; then one module
//! per op family: [`elementwise`], [`reduce`], [`matmul`], [`gather`] (gather and
//! scatter-add), [`movement`] (movement ops and slices), [`concat`]; and [`roots`] for the
//! graph's outputs and assignments. A new op family is one new module here.

mod concat;
mod elementwise;
mod gather;
mod group;
mod matmul;
mod movement;
mod operands;
mod reduce;
mod roots;
mod values;
mod views;

pub use group::{Group, GroupKind, Phase, SymMat};

use crate::kernel::{ExprId, View};
use crate::{DeviceLimits, Result};
use concat::ConcatHomes;
use elementwise::LazyCones;
use kiln_ir::{Constant, DType, Graph, NodeId, Op};
use values::Val;

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

/// The symbolic tensors and who reads them (indexed by [`TensorId`]).
struct Tensors {
    /// What stage 1 hands on for each tensor.
    info: Vec<TensorInfo>,
    /// Loads per tensor: (group, phase, view contiguous over the phase shape).
    loads: Vec<Vec<(usize, Phase, bool)>>,
}

/// The state of stage 1.
struct Fuser<'a> {
    g: &'a Graph,
    limits: &'a DeviceLimits,
    groups: Vec<Group>,
    tensors: Tensors,
    /// Each node's value, once placed (indexed by node).
    vals: Vec<Option<Val>>,
    /// Tensor a node's register value was stored to, and the view when that is a block of a
    /// concat (`None`: dense).
    stored: Vec<Option<(TensorId, Option<View>)>>,
    lazy: LazyCones,
    concats: ConcatHomes,
    /// The slots and end-of-run copies found so far (its groups and tensors are filled in
    /// at the end).
    fused: Fused,
}

/// Runs stage 1.
pub fn fuse(g: &Graph, limits: &DeviceLimits) -> Result<Fused> {
    let mut f = Fuser {
        g,
        limits,
        groups: vec![],
        tensors: Tensors {
            info: vec![],
            loads: vec![],
        },
        vals: vec![None; g.len()],
        stored: vec![None; g.len()],
        lazy: LazyCones {
            foot: vec![vec![]; g.len()],
            cost: vec![0; g.len()],
        },
        concats: ConcatHomes::find(g),
        fused: Fused {
            groups: vec![],
            tensors: vec![],
            copies: vec![],
            inputs: vec![],
            outputs: vec![],
            params: vec![],
        },
    };
    for (id, _) in g.iter() {
        let v = f.node(id)?;
        f.vals[id.index()] = Some(v);
    }
    f.roots()?;
    let mut out = f.fused;
    out.groups = f.groups;
    out.tensors = f.tensors.info;
    Ok(out)
}

impl Fuser<'_> {
    /// The value of node `id`, placed by its op family's module.
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
            Op::Recurrence(_) | Op::RecurrenceGrad(_) => self.recurrence(id)?,
            // the identity in every plan: gradients were already built
            Op::StopGradient => self.val(n.inputs[0]),
        })
    }

    /// A new tensor (a producer, when given, starts its write interval).
    fn tensor(
        &mut self,
        name: &str,
        dtype: DType,
        len: usize,
        class: Class,
        producer: Option<usize>,
    ) -> TensorId {
        self.tensors.info.push(TensorInfo {
            name: name.to_string(),
            dtype,
            len: len.max(1),
            class,
            producer,
            last_write: producer,
            last_use: None,
        });
        self.tensors.loads.push(vec![]);
        (self.tensors.info.len() - 1) as TensorId
    }

    /// Adds a store of `e` (phase `p` of group `g`) into tensor `t` through `view` (over the
    /// phase shape; `None`: dense), extending the tensor's write interval.
    fn add_store(&mut self, g: usize, p: Phase, t: TensorId, e: ExprId, view: Option<View>) {
        self.groups[g].stores.push((p, t, e, view));
        let ti = &mut self.tensors.info[t as usize];
        ti.producer = Some(ti.producer.map_or(g, |f| f.min(g)));
        ti.last_write = Some(ti.last_write.map_or(g, |l| l.max(g)));
    }

    /// Records that group `g` reads tensor `t` (liveness and in-place legality).
    fn note_load(&mut self, t: TensorId, g: usize, p: Phase, contiguous: bool) {
        self.tensors.loads[t as usize].push((g, p, contiguous));
        let tl = &mut self.tensors.info[t as usize];
        tl.last_use = Some(tl.last_use.map_or(g, |u| u.max(g)));
    }
}
