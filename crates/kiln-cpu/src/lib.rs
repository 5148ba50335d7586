//! # kiln-cpu: the native CPU backend
//!
//! Runs a [`Plan`] on the host at native speed. It is the default device when there is no
//! real GPU (`kiln::default_device`), and `KILN_DEVICE=cpu` (or `native`) chooses it.
//!
//! ## Model
//! At [`Backend::load`] the plan goes through [`Plan::validate`] with this backend's
//! [`DeviceLimits`] (the one structural check every executor runs: a bad plan is a typed
//! [`Error::Plan`], never a panic), then every kernel is prepared ([`exec::prepare`]):
//! - matmuls become tiled GEMM calls ([`gemm`]: the `gemm` crate, AVX-512 where the CPU has
//!   it, one thread per tile, arbitrary strides, so
//!   transposed operands are read in place) with the epilogue applied to each output tile
//!   right after its product, while it is in cache;
//! - elementwise, reduce (stages, epilogue, broadcast), gather and random bodies become
//!   register programs ([`prog::Phase`]) evaluated over blocks of [`prog::BLOCK`] elements
//!   with loops the compiler vectorises (an AVX2 build of the same loop where the CPU has
//!   it);
//! - scatter-adds run sequentially, in the interpreter's order;
//! - recurrences ([`recurrence`]: a whole LSTM, GRU or SimpleRNN layer over time, forward or
//!   BPTT) run in blocks of [`recurrence::ROWS`] rows of the batch, one task each looping
//!   over all the steps: per step one GEMM call for the block's `h_in · r` (backward
//!   `d rec · rᵀ`, `rᵀ` copied row-major once per run) and the cell as vectorised loops
//!   over the units.
//!
//! Every element any kernel touches is then checked against the buffers its steps bind, so
//! the unchecked accesses of a run stay in bounds. A run checks its inputs with
//! [`kiln_plan::check_inputs`] — count, shape, dtype and, for index inputs
//! ([`kiln_plan::Slot::indices`]), every value a whole number in its domain
//! ([`Error::IndexOutOfRange`]) — exactly as the interpreter and kiln-wgpu do.
//!
//! It supports every kernel of the plan contract (f32 and i32, all five kernel families,
//! any view strides, vector hints ignored) and no device types: the crate depends on
//! `kiln-plan` (and `kiln-ir`'s scalar types) only, never on the compiler.
//!
//! ## Invariants
//! - **The interpreter's semantics** (`kiln_plan::interp`): f32 arithmetic in f32, i32
//!   wrapping, i32 division by zero giving 0; `relu`, `maximum`, `minimum`, `tanh` and
//!   max-reductions propagate NaN (IEEE 754-2019, Keras), in bodies and GEMM epilogues alike
//!   (the shared NaN table of `kiln_opt::testing` runs on it). Products and transcendental
//!   functions may differ from the interpreter in rounding only.
//! - **Subnormals are flushed** (MXCSR FTZ/DAZ on x86-64, set on each worker thread while a
//!   kernel runs and restored after): as GPUs and lavapipe do. A subnormal operand costs a
//!   microcode assist per instruction, which made LSTM gradient products 20-50x slower; a
//!   result that would be subnormal is 0.
//! - **Deterministic for any thread count**: work is split into tasks whose size depends on
//!   the kernel's shape only (a fixed partition); each reduction output is folded
//!   sequentially by one task in the interpreter's order, each product's `k` sum is done by
//!   one GEMM call. The same plan and inputs give the same bits on 1 or N threads (rayon's
//!   current pool is used: run inside `ThreadPool::install` to choose it).
//! - Variables (params) live in the backend's store by name, shared by every plan loaded on
//!   it, as in the interpreter. During a run their storage is moved into the plan's buffers
//!   (no copy) and moved back after; the store stays locked for the run.
//! - Errors are the plan contract's: [`Error::Plan`] for a plan it cannot run,
//!   [`Error::Input`] / [`Error::IndexOutOfRange`] / [`Error::Param`] for bad feeds and
//!   variables, [`Error::Device`] for an internal failure (a poisoned variable store).
//!
//! `KILN_CPU_PROFILE=1` times every dispatch and prints, when an executable is dropped, the
//! kernels grouped by label (kind, calls, total milliseconds), slowest first.

#![warn(missing_docs)]

pub mod exec;
pub mod gemm;
mod isa;
mod math;
pub mod prog;
pub mod recurrence;

use kiln_ir::DType;
use kiln_plan::backend::{check_inputs, AdapterClass, DeviceLimits, HostData};
use kiln_plan::plan::{BufferKind, Step};
use kiln_plan::{
    Backend, DeviceError, DeviceErrorKind, Error, Executable, HostTensor, Plan, PlanError, Result,
};
use prog::RawBuf;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

type VarStore = Arc<Mutex<BTreeMap<String, HostTensor>>>;

fn lock(s: &VarStore) -> Result<MutexGuard<'_, BTreeMap<String, HostTensor>>> {
    s.lock().map_err(|_| {
        Error::Device(DeviceError::new(
            DeviceErrorKind::Internal,
            "variable store",
            "lock poisoned: an earlier run panicked while holding it",
        ))
    })
}

/// The native CPU backend: variables in host memory, plans run natively on rayon threads.
#[derive(Default)]
pub struct NativeBackend {
    params: VarStore,
    limits: Option<DeviceLimits>,
}

impl NativeBackend {
    /// A backend with no variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend that reports `limits` to the compiler (to run plans made for small devices).
    pub fn with_limits(limits: DeviceLimits) -> Self {
        NativeBackend {
            params: VarStore::default(),
            limits: Some(limits),
        }
    }
}

impl Backend for NativeBackend {
    fn describe(&self) -> String {
        format!(
            "native cpu ({} threads, kiln-cpu)",
            rayon::current_num_threads()
        )
    }

    fn fingerprint(&self) -> String {
        format!("kiln native cpu {}", kiln_plan::codec::KILN_VERSION)
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
            // no workgroup memory here: a recurrence of any width runs fused
            max_compute_workgroup_storage_size: u32::MAX,
            adapter_class: AdapterClass::Cpu,
            ..DeviceLimits::default()
        }
    }

    fn load(&mut self, plan: Arc<Plan>) -> Result<Box<dyn Executable>> {
        plan.validate(&self.limits())?;
        let kernels = plan
            .kernels
            .iter()
            .map(exec::prepare)
            .collect::<Result<Vec<_>>>()?;
        for (si, step) in plan.steps.iter().enumerate() {
            if let Step::Dispatch {
                kernel, buffers, ..
            } = step
            {
                let k = &kernels[*kernel as usize];
                let kd = &plan.kernels[*kernel as usize];
                for &(arg, max) in &k.extents {
                    let ok = buffers.get(arg as usize).is_some_and(|b| {
                        plan.buffers.get(b.0 as usize).is_some_and(|d| {
                            max < d.len
                                && Some(&d.dtype) == kd.args.get(arg as usize).map(|a| &a.dtype)
                        })
                    });
                    if !ok {
                        return Err(Error::Plan(PlanError::new(format!(
                            "step {si} (`{}`) reaches element {max} of arg {arg}, outside its buffer",
                            kd.label
                        ))));
                    }
                }
            }
        }
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
        drop(store);
        let bufs = plan
            .buffers
            .iter()
            .map(|b| match (&b.kind, b.dtype) {
                (BufferKind::Constant { values }, DType::F32) => Buf::F(values.clone()),
                (BufferKind::Constant { values }, DType::I32) => {
                    Buf::I(values.iter().map(|&v| v as i32).collect())
                }
                // params are moved in at run time
                (BufferKind::Param, _) => Buf::F(vec![]),
                (_, DType::F32) => Buf::F(vec![0.0; b.len]),
                (_, DType::I32) => Buf::I(vec![0; b.len]),
            })
            .collect();
        let profile = std::env::var("KILN_CPU_PROFILE").is_ok_and(|v| v == "1");
        Ok(Box::new(NativeExecutable {
            plan,
            kernels,
            bufs,
            params: self.params.clone(),
            profile: profile.then(BTreeMap::new),
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

/// A buffer's contents.
#[derive(Debug)]
enum Buf {
    F(Vec<f32>),
    I(Vec<i32>),
}

impl Buf {
    fn raw(&mut self) -> RawBuf {
        match self {
            Buf::F(v) => RawBuf {
                ptr: v.as_mut_ptr(),
                len: v.len(),
                dtype: DType::F32,
            },
            Buf::I(v) => RawBuf {
                ptr: v.as_mut_ptr() as *mut f32,
                len: v.len(),
                dtype: DType::I32,
            },
        }
    }
    fn to_host(&self, shape: kiln_ir::Shape) -> HostTensor {
        let n = shape.numel();
        let data = match self {
            Buf::F(v) => HostData::F32(v[..n].to_vec()),
            Buf::I(v) => HostData::I32(v[..n].to_vec()),
        };
        HostTensor { shape, data }
    }
}

struct NativeExecutable {
    plan: Arc<Plan>,
    kernels: Vec<exec::Compiled>,
    bufs: Vec<Buf>,
    params: VarStore,
    /// `KILN_CPU_PROFILE=1`: `label -> (kind, calls, seconds)`.
    profile: Option<BTreeMap<String, (&'static str, u64, f64)>>,
}

impl Drop for NativeExecutable {
    fn drop(&mut self) {
        let Some(p) = self.profile.take() else {
            return;
        };
        let mut rows: Vec<_> = p.into_iter().collect();
        rows.sort_by(|a, b| b.1 .2.total_cmp(&a.1 .2));
        let total: f64 = rows.iter().map(|r| r.1 .2).sum();
        eprintln!(
            "kiln-cpu profile: {} kernels, {:.1} ms in dispatches",
            rows.len(),
            total * 1e3
        );
        for (label, (kind, calls, secs)) in rows.iter().take(25) {
            eprintln!(
                "  {:>9.2} ms {:>5.1}% {:>7} x  {kind:<11} {label}",
                secs * 1e3,
                100.0 * secs / total.max(1e-12),
                calls
            );
        }
    }
}

/// Moves a param's storage between the store and a plan buffer of `len` elements: swapped
/// when the sizes match, else copied (and padded with zeros).
fn param_in(t: &mut HostTensor, len: usize) -> Buf {
    match &mut t.data {
        HostData::F32(v) if v.len() == len => Buf::F(std::mem::take(v)),
        HostData::I32(v) if v.len() == len => Buf::I(std::mem::take(v)),
        HostData::F32(v) => {
            let mut b = v.clone();
            b.resize(len, 0.0);
            Buf::F(b)
        }
        HostData::I32(v) => {
            let mut b = v.clone();
            b.resize(len, 0);
            Buf::I(b)
        }
    }
}

fn param_out(t: &mut HostTensor, buf: &mut Buf) {
    let n = t.shape.numel();
    match (&mut t.data, buf) {
        (HostData::F32(v), Buf::F(b)) if v.is_empty() && b.len() == n => std::mem::swap(v, b),
        (HostData::I32(v), Buf::I(b)) if v.is_empty() && b.len() == n => std::mem::swap(v, b),
        (HostData::F32(v), Buf::F(b)) => {
            v.clear();
            v.extend_from_slice(&b[..n]);
        }
        (HostData::I32(v), Buf::I(b)) => {
            v.clear();
            v.extend_from_slice(&b[..n]);
        }
        _ => {}
    }
}

impl Executable for NativeExecutable {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn run(&mut self, inputs: &[&HostTensor]) -> Result<Vec<HostTensor>> {
        let plan = self.plan.clone();
        check_inputs(&plan, inputs)?;
        for (slot, t) in plan.inputs.iter().zip(inputs) {
            match (&mut self.bufs[slot.buffer.0 as usize], &t.data) {
                (Buf::F(b), HostData::F32(v)) => b[..v.len()].copy_from_slice(v),
                (Buf::I(b), HostData::I32(v)) => b[..v.len()].copy_from_slice(v),
                _ => return Err(Error::Input(format!("input `{}` dtype", slot.name))),
            }
        }
        // the store stays locked for the run: its params' storage is inside the plan
        let params = self.params.clone();
        let mut store = lock(&params)?;
        if let Some(slot) = plan.params.iter().find(|s| !store.contains_key(&s.name)) {
            return Err(Error::Param {
                name: slot.name.clone(),
                message: "missing from the variable store".into(),
            });
        }
        // `moved[i]`: slot i holds the param's own storage (the first slot of each name)
        let mut moved: Vec<bool> = Vec::with_capacity(plan.params.len());
        for (i, slot) in plan.params.iter().enumerate() {
            let len = plan.buffers[slot.buffer.0 as usize].len;
            let first = plan.params.iter().position(|s| s.name == slot.name);
            let b = match (first, store.get_mut(&slot.name)) {
                (Some(f), Some(t)) if f == i => param_in(t, len),
                (Some(f), _) => match &self.bufs[plan.params[f].buffer.0 as usize] {
                    // a second slot of the same param: a copy of the first
                    Buf::F(v) => Buf::F(v.clone()),
                    Buf::I(v) => Buf::I(v.clone()),
                },
                _ => {
                    moved.push(false);
                    continue;
                }
            };
            self.bufs[slot.buffer.0 as usize] = b;
            moved.push(first == Some(i));
        }
        let mut raw: Vec<RawBuf> = vec![];
        for step in &plan.steps {
            match step {
                Step::Dispatch {
                    kernel, buffers, ..
                } => {
                    raw.clear();
                    for b in buffers {
                        raw.push(self.bufs[b.0 as usize].raw());
                    }
                    let t = self.profile.is_some().then(std::time::Instant::now);
                    // SAFETY: load checked every extent of this kernel against these
                    // buffers, and their dtypes against the kernel's args.
                    unsafe { self.kernels[*kernel as usize].prepared.run(&raw) };
                    if let (Some(t), Some(p)) = (t, self.profile.as_mut()) {
                        let k = &plan.kernels[*kernel as usize];
                        let kind = match k.op {
                            kiln_plan::kernel::KernelOp::Elementwise { .. } => "elementwise",
                            kiln_plan::kernel::KernelOp::Reduce { .. } => "reduce",
                            kiln_plan::kernel::KernelOp::MatMul { .. } => "matmul",
                            kiln_plan::kernel::KernelOp::ScatterAdd { .. } => "scatter-add",
                            kiln_plan::kernel::KernelOp::Recurrence { .. } => "recurrence",
                        };
                        // unrolled timesteps share a label up to their step number
                        let mut label: String =
                            k.label.chars().filter(|c| !c.is_ascii_digit()).collect();
                        match &k.op {
                            kiln_plan::kernel::KernelOp::Reduce { in_shape, axes, .. } => {
                                label += &format!(" {in_shape:?} over {axes:?}")
                            }
                            kiln_plan::kernel::KernelOp::MatMul {
                                batch,
                                m,
                                n,
                                k,
                                a,
                                b,
                                ..
                            } => {
                                label += &format!(
                                    " [{batch}x{m}x{k}]·[{k}x{n}] a({},{}) b({},{})",
                                    a.row_stride, a.col_stride, b.row_stride, b.col_stride
                                )
                            }
                            kiln_plan::kernel::KernelOp::Recurrence {
                                cell,
                                batch,
                                steps,
                                grad,
                                ..
                            } => {
                                label += &format!(
                                    " {} {} [{batch}, {steps}] U={}",
                                    cell.name(),
                                    if grad.is_some() { "bptt" } else { "forward" },
                                    cell.units
                                )
                            }
                            _ => {}
                        }
                        let e = p.entry(label).or_insert((kind, 0, 0.0));
                        e.1 += 1;
                        e.2 += t.elapsed().as_secs_f64();
                    }
                }
                Step::Copy { src, dst } => {
                    let (s, d) = (src.0 as usize, dst.0 as usize);
                    let tmp = std::mem::replace(&mut self.bufs[s], Buf::F(vec![]));
                    match (&tmp, &mut self.bufs[d]) {
                        (Buf::F(a), Buf::F(b)) => b.copy_from_slice(a),
                        (Buf::I(a), Buf::I(b)) => b.copy_from_slice(a),
                        _ => {}
                    }
                    self.bufs[s] = tmp;
                }
            }
        }
        let outputs = plan
            .outputs
            .iter()
            .map(|s| self.bufs[s.buffer.0 as usize].to_host(s.shape.clone()))
            .collect();
        for (slot, &m) in plan.params.iter().zip(&moved) {
            if m {
                if let Some(t) = store.get_mut(&slot.name) {
                    param_out(t, &mut self.bufs[slot.buffer.0 as usize]);
                }
            }
        }
        Ok(outputs)
    }
}
