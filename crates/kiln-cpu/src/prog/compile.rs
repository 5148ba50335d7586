//! Compiling a phase: the body's expressions become register operations, its loads, stores,
//! gathers and random indices become accesses, and the iterated axes are coalesced.

use super::{max_index, operands, Access, Op, Phase, RawAccess, Reg, StoreOp};
use kiln_ir::DType;
use kiln_plan::kernel::{Arg, Body, Expr, Store};
use kiln_plan::{Error, PlanError, Result};

struct Builder<'a> {
    args: &'a [Arg],
    raw: Vec<RawAccess>,
    access_arg: Vec<Option<(u32, usize)>>,
    ops: Vec<Op>,
    nf: u32,
    ni: u32,
    free_f: Vec<u32>,
    free_i: Vec<u32>,
    consts_f: Vec<(u32, f32)>,
    consts_i: Vec<(u32, i32)>,
    uni: Vec<bool>,
}

impl Builder<'_> {
    fn alloc(&mut self, int: bool) -> Reg {
        let (free, n) = if int {
            (&mut self.free_i, &mut self.ni)
        } else {
            (&mut self.free_f, &mut self.nf)
        };
        let i = free.pop().unwrap_or_else(|| {
            *n += 1;
            *n - 1
        });
        Reg { int, i }
    }
    /// A register no other value ever uses (constants are filled once per scratch).
    fn alloc_fresh(&mut self, int: bool) -> Reg {
        let n = if int { &mut self.ni } else { &mut self.nf };
        *n += 1;
        Reg { int, i: *n - 1 }
    }
    fn release(&mut self, r: Reg) {
        if r.int {
            self.free_i.push(r.i)
        } else {
            self.free_f.push(r.i)
        }
    }
    fn access(&mut self, a: RawAccess, arg: Option<(u32, usize)>) -> u32 {
        self.raw.push(a);
        self.access_arg.push(arg);
        (self.raw.len() - 1) as u32
    }
    fn arg_int(&self, arg: u32) -> Result<bool> {
        self.args
            .get(arg as usize)
            .map(|a| a.dtype == DType::I32)
            .ok_or_else(|| bad(format!("arg {arg} does not exist")))
    }
}

fn bad(msg: String) -> Error {
    Error::Plan(PlanError::new(format!("kernel: {msg}")))
}

/// The full-shape strides of a store (row-major over `shape` when it has none).
pub fn store_access(st: &Store, shape: &[usize]) -> RawAccess {
    RawAccess {
        offset: st.offset,
        strides: st
            .strides
            .clone()
            .unwrap_or_else(|| kiln_ir::Shape::new(shape.to_vec()).strides()),
    }
}

/// What a phase computes and over what: the input of [`Phase::new`].
#[derive(Copy, Clone, Debug)]
pub struct PhaseSpec<'a> {
    /// The SSA body.
    pub body: &'a Body,
    /// Its stores; dense ones are row-major over `shape`.
    pub stores: &'a [Store],
    /// The kernel's args (their dtypes type the loads and stores).
    pub args: &'a [Arg],
    /// The full shape every access is indexed over.
    pub shape: &'a [usize],
    /// The axes of `shape` the phase iterates (sorted); the others are fixed per task.
    pub iter_axes: &'a [usize],
    /// Expressions read after the body (fold values): their registers are kept.
    pub keep: &'a [u32],
    /// The accumulators the body reads are the same at every element (stage and broadcast
    /// bodies), so reading one is a uniform fill.
    pub accs_uniform: bool,
}

impl<'a> PhaseSpec<'a> {
    /// A phase of `body` and `stores` over `shape`, iterating `iter_axes`, keeping no values
    /// and with per-element accumulators.
    pub fn new(
        body: &'a Body,
        stores: &'a [Store],
        args: &'a [Arg],
        shape: &'a [usize],
        iter_axes: &'a [usize],
    ) -> PhaseSpec<'a> {
        PhaseSpec {
            body,
            stores,
            args,
            shape,
            iter_axes,
            keep: &[],
            accs_uniform: false,
        }
    }

    /// The same phase, keeping the registers of `keep` (fold values).
    pub fn keep(self, keep: &'a [u32]) -> PhaseSpec<'a> {
        PhaseSpec { keep, ..self }
    }

    /// The same phase with accumulators uniform over the block.
    pub fn uniform_accs(self) -> PhaseSpec<'a> {
        PhaseSpec {
            accs_uniform: true,
            ..self
        }
    }
}

impl Phase {
    /// Compiles a phase ([`PhaseSpec`]): register program, coalesced accesses, stores, and the
    /// extent of every access for the load-time bounds check.
    pub fn new(spec: &PhaseSpec) -> Result<Phase> {
        let PhaseSpec {
            body,
            stores,
            args,
            shape,
            iter_axes,
            keep,
            accs_uniform,
        } = *spec;
        let rank = shape.len();
        let fit = |s: &[usize]| -> Result<Vec<usize>> {
            if s.len() < rank {
                return Err(bad(format!("rank {} view over rank {rank}", s.len())));
            }
            Ok(s[..rank].to_vec())
        };
        let mut b = Builder {
            args,
            raw: vec![],
            access_arg: vec![],
            ops: vec![],
            nf: 0,
            ni: 0,
            free_f: vec![],
            free_i: vec![],
            consts_f: vec![],
            consts_i: vec![],
            uni: vec![],
        };
        // last use of every expression (stores and folds keep theirs to the end)
        let n = body.nodes.len();
        let mut last = vec![0usize; n];
        for (k, node) in body.nodes.iter().enumerate() {
            for o in operands(&node.expr) {
                let o = o as usize;
                if o >= k {
                    return Err(bad(format!("expression {k} reads a later one")));
                }
                last[o] = k;
            }
        }
        // values read after the body (stores, folds) stay in their registers
        let mut pinned = vec![false; n];
        for &v in keep.iter().chain(stores.iter().map(|s| &s.value)) {
            if let Some(p) = pinned.get_mut(v as usize) {
                *p = true;
            }
        }
        let mut regs: Vec<Reg> = Vec::with_capacity(n);
        let mut is_const = vec![false; n];
        // uniform: the same value at every element of a task (constants, loads and
        // accumulators that do not move over the iterated axes, and what only they feed)
        let mut uni: Vec<bool> = Vec::with_capacity(n);
        let still = |st: &[usize]| iter_axes.iter().all(|&d| st.get(d).is_none_or(|&x| x == 0));
        for (k, node) in body.nodes.iter().enumerate() {
            let int = node.dtype == DType::I32;
            // converted operands: a cast into a fresh register where types differ
            let mut temps = vec![];
            let mut conv = |b: &mut Builder, r: Reg, to_int: bool| -> Reg {
                if r.int == to_int {
                    return r;
                }
                let t = b.alloc(to_int);
                b.ops.push(Op::Cast { src: r, dst: t });
                temps.push(t);
                t
            };
            let dst;
            let u = match &node.expr {
                Expr::Const(_) => true,
                Expr::Load { view, .. } => still(&view.strides),
                Expr::Acc(_) => accs_uniform,
                Expr::Random { .. } => false,
                Expr::Gather { view, index, .. } => {
                    still(&view.strides) && uni.get(*index as usize) == Some(&true)
                }
                e => operands(e)
                    .iter()
                    .all(|&o| uni.get(o as usize) == Some(&true)),
            };
            uni.push(u);
            let ops_before = b.ops.len();
            match &node.expr {
                Expr::Const(c) => {
                    dst = b.alloc_fresh(int);
                    if int {
                        b.consts_i.push((dst.i, *c as i32));
                    } else {
                        b.consts_f.push((dst.i, *c as f32));
                    }
                    is_const[k] = true;
                }
                Expr::Load { arg, view } => {
                    let a = b.access(
                        RawAccess {
                            offset: view.offset,
                            strides: fit(&view.strides)?,
                        },
                        Some((*arg, 0)),
                    );
                    b.arg_int(*arg)?;
                    dst = b.alloc(int);
                    b.ops.push(Op::Load {
                        access: a,
                        arg: *arg,
                        dst,
                    });
                }
                Expr::Gather {
                    arg,
                    view,
                    index,
                    rows,
                    row_stride,
                } => {
                    let extra = rows.saturating_sub(1).saturating_mul(*row_stride);
                    let a = b.access(
                        RawAccess {
                            offset: view.offset,
                            strides: fit(&view.strides)?,
                        },
                        Some((*arg, extra)),
                    );
                    b.arg_int(*arg)?;
                    let index = conv(&mut b, regs[*index as usize], true);
                    dst = b.alloc(int);
                    b.ops.push(Op::Gather {
                        access: a,
                        arg: *arg,
                        index,
                        rows: *rows,
                        row_stride: *row_stride,
                        dst,
                    });
                }
                Expr::Random {
                    seed,
                    counter,
                    strides,
                } => {
                    let a = b.access(
                        RawAccess {
                            offset: 0,
                            strides: fit(strides)?,
                        },
                        None,
                    );
                    let counter = conv(&mut b, regs[*counter as usize], true);
                    let f = b.alloc(false);
                    b.ops.push(Op::Random {
                        access: a,
                        seed: *seed,
                        counter,
                        dst: f,
                    });
                    if int {
                        dst = b.alloc(true);
                        b.ops.push(Op::Cast { src: f, dst });
                        b.release(f);
                    } else {
                        dst = f;
                    }
                }
                Expr::Unary(op, x) => {
                    let src = conv(&mut b, regs[*x as usize], int);
                    dst = b.alloc(int);
                    b.ops.push(Op::Un { op: *op, src, dst });
                }
                Expr::Binary(op, x, y) => {
                    let a = conv(&mut b, regs[*x as usize], int);
                    let c = conv(&mut b, regs[*y as usize], int);
                    dst = b.alloc(int);
                    b.ops.push(Op::Bin {
                        op: *op,
                        a,
                        b: c,
                        dst,
                    });
                }
                Expr::Select(c, x, y) => {
                    let c = regs[*c as usize];
                    let a = conv(&mut b, regs[*x as usize], int);
                    let e = conv(&mut b, regs[*y as usize], int);
                    dst = b.alloc(int);
                    b.ops.push(Op::Select { c, a, b: e, dst });
                }
                Expr::Cast(x) => {
                    let src = regs[*x as usize];
                    dst = b.alloc(int);
                    b.ops.push(Op::Cast { src, dst });
                }
                Expr::Acc(j) => {
                    dst = b.alloc(int);
                    b.ops.push(Op::Acc { j: *j, dst });
                }
            }
            for t in temps {
                b.release(t);
            }
            // every op of a uniform expression (its casts too) computes one element
            while b.uni.len() < b.ops.len() {
                b.uni.push(u);
            }
            let _ = ops_before;
            regs.push(dst);
            // free operands whose last use is this expression (each once: `x * x`)
            let mut ops = operands(&node.expr);
            ops.sort_unstable();
            ops.dedup();
            for o in ops {
                let o = o as usize;
                if last[o] == k && !pinned[o] && !is_const[o] {
                    b.release(regs[o]);
                }
            }
        }
        let mut stores_out = vec![];
        for st in stores {
            let src = *regs
                .get(st.value as usize)
                .ok_or_else(|| bad(format!("store of missing value {}", st.value)))?;
            b.arg_int(st.arg)?;
            let mut ra = store_access(st, shape);
            ra.strides = fit(&ra.strides)?;
            let access = b.access(ra, Some((st.arg, 0)));
            stores_out.push(StoreOp {
                arg: st.arg,
                access,
                src,
            });
        }
        // coalesce the iterated axes over every access
        let mut axes: Vec<usize> = iter_axes
            .iter()
            .copied()
            .filter(|&d| d < rank && shape[d] != 1)
            .collect();
        let mut dims: Vec<usize> = axes.iter().map(|&d| shape[d]).collect();
        let mut strides: Vec<Vec<usize>> = b
            .raw
            .iter()
            .map(|a| axes.iter().map(|&d| a.strides[d]).collect())
            .collect();
        let mut k = dims.len();
        while k >= 2 {
            let (o, i) = (k - 2, k - 1);
            if strides.iter().all(|s| s[o] == s[i] * dims[i]) {
                dims[o] *= dims[i];
                dims.remove(i);
                axes.remove(i);
                for s in &mut strides {
                    s[o] = s[i];
                    s.remove(i);
                }
            }
            k -= 1;
        }
        if dims.is_empty() {
            dims.push(1);
            for s in &mut strides {
                s.push(0);
            }
        }
        let accesses = b
            .raw
            .iter()
            .zip(strides)
            .map(|(a, s)| Access {
                offset: a.offset,
                fixed: (0..rank)
                    .filter(|d| !iter_axes.contains(d))
                    .map(|d| (d, a.strides[d]))
                    .collect(),
                strides: s,
            })
            .collect();
        let mut extents = vec![];
        for (a, arg) in b.raw.iter().zip(&b.access_arg) {
            if let Some((arg, extra)) = arg {
                let m = max_index(a.offset, &a.strides, shape)
                    .and_then(|m| m.checked_add(*extra))
                    .ok_or_else(|| bad("an access overflows".into()))?;
                extents.push((*arg, m));
            }
        }
        let numel = dims.iter().product();
        Ok(Phase {
            dims,
            numel,
            accesses,
            ops: b.ops,
            uniform: b.uni,
            consts_f: b.consts_f,
            consts_i: b.consts_i,
            stores: stores_out,
            nf: b.nf as usize,
            ni: b.ni as usize,
            values: regs,
            extents,
        })
    }
}
