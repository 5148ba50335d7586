//! The CPU plan interpreter: runs a [`Plan`] on the host in f32/i32, implementing the
//! [`KernelIr`](crate::kernel) semantics directly. It is the fallback when no GPU adapter
//! exists and a second, independent implementation of the kernel semantics for tests.

use crate::backend::{
    check_inputs, AdapterClass, Backend, DeviceLimits, Executable, HostData, HostTensor,
};
use crate::kernel::{Body, Expr, KernelOp, ReduceKind, Store};
use crate::plan::{BufferKind, Plan, Step};
use crate::{Error, Result};
use kiln_ir::eval::{apply_binary, apply_unary};
use kiln_ir::{unravel, BinaryOp, DType, Shape};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A buffer's contents on the host.
#[derive(Clone, Debug)]
enum Buf {
    F(Vec<f32>),
    I(Vec<i32>),
}

impl Buf {
    fn zeros(dt: DType, n: usize) -> Buf {
        match dt {
            DType::F32 => Buf::F(vec![0.0; n]),
            DType::I32 => Buf::I(vec![0; n]),
        }
    }
    fn from_host(t: &HostTensor) -> Buf {
        match &t.data {
            HostData::F32(v) => Buf::F(v.clone()),
            HostData::I32(v) => Buf::I(v.clone()),
        }
    }
    /// Copies `t` into the start of this buffer (which is at least as long).
    fn fill_from(&mut self, t: &HostTensor) {
        match (self, &t.data) {
            (Buf::F(v), HostData::F32(x)) => {
                let n = x.len().min(v.len());
                v[..n].copy_from_slice(&x[..n]);
            }
            (Buf::I(v), HostData::I32(x)) => {
                let n = x.len().min(v.len());
                v[..n].copy_from_slice(&x[..n]);
            }
            (b, _) => *b = Buf::from_host(t),
        }
    }
    fn to_host(&self, shape: Shape) -> HostTensor {
        let data = match self {
            Buf::F(v) => HostData::F32(v[..shape.numel()].to_vec()),
            Buf::I(v) => HostData::I32(v[..shape.numel()].to_vec()),
        };
        HostTensor { shape, data }
    }
    fn get(&self, i: usize) -> V {
        match self {
            Buf::F(v) => V::F(v[i]),
            Buf::I(v) => V::I(v[i]),
        }
    }
    fn set(&mut self, i: usize, x: V) {
        match (self, x) {
            (Buf::F(v), x) => v[i] = x.f(),
            (Buf::I(v), x) => v[i] = x.i(),
        }
    }
}

/// A scalar during interpretation.
#[derive(Copy, Clone, Debug)]
enum V {
    F(f32),
    I(i32),
}

impl V {
    fn f(self) -> f32 {
        match self {
            V::F(x) => x,
            V::I(x) => x as f32,
        }
    }
    fn i(self) -> i32 {
        match self {
            V::F(x) => x as i32,
            V::I(x) => x,
        }
    }
    fn of(dt: DType, x: f64) -> V {
        match dt {
            DType::F32 => V::F(x as f32),
            DType::I32 => V::I(x as i32),
        }
    }
}

fn eval_body(body: &Body, bufs: &[Buf], idx: &[usize], accs: &[V], scratch: &mut Vec<V>) {
    scratch.clear();
    for n in &body.nodes {
        let v = match &n.expr {
            Expr::Load { arg, view } => bufs[*arg as usize].get(view.index(idx)),
            Expr::Gather {
                arg,
                view,
                index,
                rows,
                row_stride,
            } => {
                let r = scratch[*index as usize].i();
                if r >= 0 && (r as usize) < *rows {
                    bufs[*arg as usize].get(view.index(idx) + r as usize * row_stride)
                } else {
                    V::of(n.dtype, 0.0)
                }
            }
            Expr::Random {
                seed,
                counter,
                strides,
            } => {
                let i: usize = idx.iter().zip(strides).map(|(i, s)| i * s).sum();
                let c = scratch[*counter as usize].i() as u32;
                V::F(kiln_ir::random::device_uniform(*seed, c, i as u32))
            }
            Expr::Const(c) => V::of(n.dtype, *c),
            Expr::Unary(op, a) => match (n.dtype, scratch[*a as usize]) {
                (DType::F32, x) => V::F(apply_unary(*op, x.f() as f64) as f32),
                (DType::I32, x) => V::I(apply_unary(*op, x.i() as f64) as i32),
            },
            Expr::Binary(op, a, b) => {
                let (x, y) = (scratch[*a as usize], scratch[*b as usize]);
                match n.dtype {
                    DType::F32 => V::F(f32_binary(*op, x.f(), y.f())),
                    DType::I32 => V::I(i32_binary(*op, x.i(), y.i())),
                }
            }
            Expr::Select(c, a, b) => {
                let cond = match scratch[*c as usize] {
                    V::F(x) => x != 0.0,
                    V::I(x) => x != 0,
                };
                scratch[if cond { *a } else { *b } as usize]
            }
            Expr::Cast(a) => match n.dtype {
                DType::F32 => V::F(scratch[*a as usize].f()),
                DType::I32 => V::I(scratch[*a as usize].i()),
            },
            Expr::Acc(j) => accs.get(*j as usize).copied().unwrap_or(V::F(f32::NAN)),
        };
        scratch.push(v);
    }
}

fn do_stores(stores: &[Store], bufs: &mut [Buf], idx: &[usize], flat: usize, scratch: &[V]) {
    for st in stores {
        bufs[st.arg as usize].set(st.index(idx, flat), scratch[st.value as usize]);
    }
}

fn f32_binary(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        // NaN-propagating, like the f64 evaluator and the shaders
        BinaryOp::Max | BinaryOp::Min if a.is_nan() || b.is_nan() => f32::NAN,
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Pow => a.powf(b),
        _ => apply_binary(op, a as f64, b as f64) as f32,
    }
}

fn i32_binary(op: BinaryOp, a: i32, b: i32) -> i32 {
    match op {
        BinaryOp::Add => a.wrapping_add(b),
        BinaryOp::Sub => a.wrapping_sub(b),
        BinaryOp::Mul => a.wrapping_mul(b),
        BinaryOp::Div => a.checked_div(b).unwrap_or(0),
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Pow => (a as f64).powf(b as f64) as i32,
        _ => apply_binary(op, a as f64, b as f64) as i32,
    }
}

fn run_kernel(op: &KernelOp, bufs: &mut [Buf]) {
    let mut scratch = Vec::new();
    match op {
        KernelOp::Elementwise {
            shape,
            body,
            stores,
            vector: _, // the width changes how a backend evaluates, not what
        } => {
            let n: usize = shape.iter().product();
            let mut idx = vec![0; shape.len()];
            for i in 0..n {
                unravel(i, shape, &mut idx);
                eval_body(body, bufs, &idx, &[], &mut scratch);
                do_stores(stores, bufs, &idx, i, &scratch);
            }
        }
        KernelOp::Reduce {
            in_shape,
            axes,
            stages,
            epilogue,
            stores,
            broadcast,
            broadcast_stores,
            ..
        } => {
            let out_shape: Vec<usize> = in_shape
                .iter()
                .enumerate()
                .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
                .collect();
            let in_strides = Shape::new(in_shape.clone()).strides();
            let red_dims: Vec<usize> = axes.iter().map(|&a| in_shape[a]).collect();
            let red_n: usize = red_dims.iter().product();
            let n: usize = out_shape.iter().product();
            let mut oidx = vec![0; out_shape.len()];
            let mut ridx = vec![0; red_dims.len()];
            let mut accs: Vec<V> = vec![];
            for o in 0..n {
                unravel(o, &out_shape, &mut oidx);
                accs.clear();
                let mut idx = oidx.clone();
                for stage in stages {
                    let first = accs.len();
                    for f in &stage.folds {
                        let dt = stage.body.nodes[f.value as usize].dtype;
                        accs.push(match (f.kind, dt) {
                            (ReduceKind::Sum, _) => V::of(dt, 0.0),
                            (ReduceKind::Max, DType::F32) => V::F(f32::NEG_INFINITY),
                            (ReduceKind::Max, DType::I32) => V::I(i32::MIN),
                        });
                    }
                    for r in 0..red_n {
                        unravel(r, &red_dims, &mut ridx);
                        for (k, &a) in axes.iter().enumerate() {
                            idx[a] = ridx[k];
                        }
                        eval_body(&stage.body, bufs, &idx, &accs[..first], &mut scratch);
                        let flat: usize = idx.iter().zip(&in_strides).map(|(i, s)| i * s).sum();
                        do_stores(&stage.stores, bufs, &idx, flat, &scratch);
                        for (k, f) in stage.folds.iter().enumerate() {
                            let v = scratch[f.value as usize];
                            let a = &mut accs[first + k];
                            *a = match (f.kind, *a) {
                                (ReduceKind::Sum, V::F(a)) => V::F(a + v.f()),
                                (ReduceKind::Sum, V::I(a)) => V::I(a.wrapping_add(v.i())),
                                (ReduceKind::Max, V::F(a)) => {
                                    V::F(f32_binary(BinaryOp::Max, a, v.f()))
                                }
                                (ReduceKind::Max, V::I(a)) => V::I(a.max(v.i())),
                            };
                        }
                    }
                }
                eval_body(epilogue, bufs, &oidx, &accs, &mut scratch);
                do_stores(stores, bufs, &oidx, o, &scratch);
                if !broadcast_stores.is_empty() {
                    for r in 0..red_n {
                        unravel(r, &red_dims, &mut ridx);
                        for (k, &a) in axes.iter().enumerate() {
                            idx[a] = ridx[k];
                        }
                        eval_body(broadcast, bufs, &idx, &accs, &mut scratch);
                        let flat: usize = idx.iter().zip(&in_strides).map(|(i, s)| i * s).sum();
                        do_stores(broadcast_stores, bufs, &idx, flat, &scratch);
                    }
                }
            }
        }
        KernelOp::Recurrence {
            cell,
            batch,
            steps,
            xp,
            r,
            rb,
            mask,
            grad,
            adjoint,
            out,
            ..
        } => {
            use kiln_ir::recurrence::{backward, forward, Operands};
            // operands copied out (they may share a buffer with `out`)
            let (u, ku) = (cell.units, cell.gates() * cell.units);
            let (b, t) = (*batch, *steps);
            let read = |bufs: &[Buf], d: &crate::kernel::Dense, n: usize| -> Vec<f32> {
                (0..n)
                    .map(|i| bufs[d.arg as usize].get(d.offset + i).f())
                    .collect()
            };
            let xpv = read(bufs, xp, b * t * ku);
            let rv = read(bufs, r, u * ku);
            let rbv = rb.as_ref().map(|d| read(bufs, d, ku));
            let mv = mask.as_ref().map(|d| read(bufs, d, b * u));
            let ops = Operands {
                xp: &xpv,
                r: &rv,
                rb: rbv.as_deref(),
                mask: mv.as_deref(),
            };
            let res = match grad {
                None => {
                    let mut o = vec![0.0f32; b * t * cell.trace_width()];
                    forward(cell, t, 0..b, ops, &mut o);
                    o
                }
                Some([tr, dtr]) => {
                    let trv = read(bufs, tr, b * t * cell.trace_width());
                    let dtrv = read(bufs, dtr, adjoint.len(b));
                    let mut o = vec![0.0f32; b * t * cell.grad_width()];
                    backward(cell, t, 0..b, ops, &trv, (&dtrv, *adjoint), &mut o);
                    o
                }
            };
            for (i, v) in res.into_iter().enumerate() {
                bufs[out.arg as usize].set(out.offset + i, V::F(v));
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
            let idx: Vec<i32> = (0..*count)
                .map(|i| bufs[index.arg as usize].get(index.offset + i).i())
                .collect();
            for c in 0..*cols {
                for r in 0..*rows {
                    bufs[dst.arg as usize].set(dst.offset + r * cols + c, V::F(0.0));
                }
                for (i, &r) in idx.iter().enumerate() {
                    if r >= 0 && (r as usize) < *rows {
                        let at = dst.offset + r as usize * cols + c;
                        let sum = bufs[dst.arg as usize].get(at).f()
                            + bufs[src.arg as usize].get(src.offset + i * cols + c).f();
                        bufs[dst.arg as usize].set(at, V::F(sum));
                    }
                }
            }
        }
        KernelOp::MatMul {
            batch,
            m,
            n,
            k,
            a,
            b,
            epilogue,
            stores,
            sums,
            ..
        } => {
            let mut idx = [0usize; 3];
            for bi in 0..*batch {
                for i in 0..*m {
                    for j in 0..*n {
                        let mut s = 0.0f32;
                        if let (Buf::F(av), Buf::F(bv)) =
                            (&bufs[a.arg as usize], &bufs[b.arg as usize])
                        {
                            for p in 0..*k {
                                let x = av[a.offset
                                    + bi * a.batch_stride
                                    + i * a.row_stride
                                    + p * a.col_stride];
                                let y = bv[b.offset
                                    + bi * b.batch_stride
                                    + p * b.row_stride
                                    + j * b.col_stride];
                                s += x * y;
                            }
                        }
                        idx[0] = bi;
                        idx[1] = i;
                        idx[2] = j;
                        eval_body(epilogue, bufs, &idx, &[V::F(s)], &mut scratch);
                        do_stores(stores, bufs, &idx, (bi * m + i) * n + j, &scratch);
                    }
                }
            }
            // the right operand's column sums (batch 1), each over p in increasing order
            if let Some(cs) = sums {
                let mut at = vec![0usize; cs.shape.len()];
                for j in 0..*n {
                    let mut s = 0.0f32;
                    if let Buf::F(bv) = &bufs[b.arg as usize] {
                        for p in 0..*k {
                            s += bv[b.offset + p * b.row_stride + j * b.col_stride];
                        }
                    }
                    kiln_ir::unravel(j, &cs.shape, &mut at);
                    eval_body(&cs.body, bufs, &at, &[V::F(s)], &mut scratch);
                    do_stores(&cs.stores, bufs, &at, j, &scratch);
                }
            }
        }
    }
}

type VarStore = Arc<Mutex<BTreeMap<String, HostTensor>>>;

/// The CPU backend: variables in host memory, plans run by the interpreter.
#[derive(Default)]
pub struct CpuBackend {
    params: VarStore,
    limits: Option<DeviceLimits>,
}

impl CpuBackend {
    /// A backend with no variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend that reports `limits` to the compiler (to test plans made for small devices,
    /// e.g. WebGPU's default of 8 storage buffers per stage).
    pub fn with_limits(limits: DeviceLimits) -> Self {
        CpuBackend {
            params: VarStore::default(),
            limits: Some(limits),
        }
    }
}

fn lock(s: &VarStore) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, HostTensor>>> {
    s.lock()
        .map_err(|_| Error::Backend("variable store lock poisoned".into()))
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        "cpu (kiln plan interpreter)".into()
    }

    fn fingerprint(&self) -> String {
        format!("kiln cpu interpreter {}", crate::codec::KILN_VERSION)
    }

    fn limits(&self) -> DeviceLimits {
        if let Some(l) = &self.limits {
            return l.clone();
        }
        DeviceLimits {
            max_storage_buffers_per_shader_stage: 32,
            max_storage_buffer_binding_size: 1 << 32,
            max_buffer_size: 1 << 32,
            max_compute_workgroups_per_dimension: u32::MAX,
            // no workgroups: a recurrence of any width runs fused
            max_compute_workgroup_storage_size: u32::MAX,
            adapter_class: AdapterClass::Cpu,
            ..DeviceLimits::default()
        }
    }

    fn load(&mut self, plan: Arc<Plan>) -> Result<Box<dyn Executable>> {
        plan.validate(&self.limits())?;
        let mut store = lock(&self.params)?;
        for slot in &plan.params {
            match store.get(&slot.name) {
                Some(t) if t.shape != slot.shape || t.dtype() != slot.dtype => {
                    return Err(Error::Param {
                        name: slot.name.clone(),
                        message: format!(
                            "exists as {}{} but the plan declares {}{}",
                            t.dtype(),
                            t.shape,
                            slot.dtype,
                            slot.shape
                        ),
                    })
                }
                Some(_) => {}
                None => {
                    store.insert(
                        slot.name.clone(),
                        HostTensor::zeros(slot.shape.clone(), slot.dtype),
                    );
                }
            }
        }
        let bufs = plan
            .buffers
            .iter()
            .map(|b| match &b.kind {
                BufferKind::Constant { values } => match b.dtype {
                    DType::F32 => Buf::F(values.clone()),
                    DType::I32 => Buf::I(values.iter().map(|&v| v as i32).collect()),
                },
                _ => Buf::zeros(b.dtype, b.len),
            })
            .collect();
        drop(store);
        Ok(Box::new(CpuExecutable {
            plan,
            bufs,
            params: self.params.clone(),
        }))
    }

    fn write_param(&mut self, name: &str, value: &HostTensor) -> Result<()> {
        let mut store = lock(&self.params)?;
        if let Some(t) = store.get(name) {
            if t.shape != value.shape || t.dtype() != value.dtype() {
                return Err(Error::Param {
                    name: name.into(),
                    message: format!(
                        "is {}{}, cannot write {}{}",
                        t.dtype(),
                        t.shape,
                        value.dtype(),
                        value.shape
                    ),
                });
            }
        }
        store.insert(name.to_string(), value.clone());
        Ok(())
    }

    fn read_param(&mut self, name: &str) -> Result<HostTensor> {
        lock(&self.params)?
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Param {
                name: name.into(),
                message: "no such variable".into(),
            })
    }

    fn param_names(&self) -> Vec<String> {
        self.params
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }
}

struct CpuExecutable {
    plan: Arc<Plan>,
    bufs: Vec<Buf>,
    params: VarStore,
}

impl Executable for CpuExecutable {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn run(&mut self, inputs: &[&HostTensor]) -> Result<Vec<HostTensor>> {
        let plan = self.plan.clone();
        check_inputs(&plan, inputs)?;
        for (slot, t) in plan.inputs.iter().zip(inputs) {
            // a slot may be smaller than its buffer: keep the buffer's length
            let b = &plan.buffers[slot.buffer.0 as usize];
            let mut buf = Buf::zeros(b.dtype, b.len);
            buf.fill_from(t);
            self.bufs[slot.buffer.0 as usize] = buf;
        }
        {
            let store = lock(&self.params)?;
            for slot in &plan.params {
                let t = store.get(&slot.name).ok_or_else(|| Error::Param {
                    name: slot.name.clone(),
                    message: "missing from the variable store".into(),
                })?;
                self.bufs[slot.buffer.0 as usize] = Buf::from_host(t);
            }
        }
        for step in &plan.steps {
            match step {
                Step::Dispatch {
                    kernel, buffers, ..
                } => {
                    let k = &plan.kernels[*kernel as usize];
                    // args are moved out and back; a buffer bound twice (read-only, as
                    // the validator allows) is cloned for its later args
                    let mut args: Vec<Buf> = Vec::with_capacity(buffers.len());
                    for (i, b) in buffers.iter().enumerate() {
                        args.push(match buffers[..i].iter().position(|x| x == b) {
                            Some(j) => args[j].clone(),
                            None => std::mem::replace(&mut self.bufs[b.0 as usize], Buf::F(vec![])),
                        });
                    }
                    run_kernel(&k.op, &mut args);
                    for (i, (b, v)) in buffers.iter().zip(args).enumerate() {
                        if !buffers[..i].contains(b) {
                            self.bufs[b.0 as usize] = v;
                        }
                    }
                }
                Step::Copy { src, dst } => {
                    self.bufs[dst.0 as usize] = self.bufs[src.0 as usize].clone();
                }
            }
        }
        let mut store = lock(&self.params)?;
        for slot in &plan.params {
            if written_buffers(&plan).contains(&slot.buffer) {
                store.insert(
                    slot.name.clone(),
                    self.bufs[slot.buffer.0 as usize].to_host(slot.shape.clone()),
                );
            }
        }
        Ok(plan
            .outputs
            .iter()
            .map(|s| self.bufs[s.buffer.0 as usize].to_host(s.shape.clone()))
            .collect())
    }
}

/// Buffers a run writes (by a kernel store or a copy).
pub fn written_buffers(plan: &Plan) -> Vec<crate::BufferId> {
    let mut v = vec![];
    for step in &plan.steps {
        match step {
            Step::Dispatch {
                kernel, buffers, ..
            } => {
                let k = &plan.kernels[*kernel as usize];
                for (a, b) in k.args.iter().zip(buffers) {
                    if a.access.writes() && !v.contains(b) {
                        v.push(*b);
                    }
                }
            }
            Step::Copy { dst, .. } => {
                if !v.contains(dst) {
                    v.push(*dst)
                }
            }
        }
    }
    v
}
