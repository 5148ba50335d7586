//! The `Backend` trait: how plans are loaded and run on a device, and how persistent
//! variables (params) live there.

use crate::{Error, Plan, Result};
use kiln_ir::{DType, Shape};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Host-side tensor data.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    /// f32 values.
    F32(Vec<f32>),
    /// i32 values.
    I32(Vec<i32>),
}

/// A host tensor passed to and from backends.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Shape.
    pub shape: Shape,
    /// Row-major values.
    pub data: HostData,
}

impl HostTensor {
    /// An f32 tensor; errors if `data` does not fill `shape`.
    pub fn f32(shape: impl Into<Shape>, data: Vec<f32>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(Error::Input(format!(
                "{} values cannot fill shape {shape}",
                data.len()
            )));
        }
        Ok(HostTensor {
            shape,
            data: HostData::F32(data),
        })
    }
    /// An i32 tensor; errors if `data` does not fill `shape`.
    pub fn i32(shape: impl Into<Shape>, data: Vec<i32>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(Error::Input(format!(
                "{} values cannot fill shape {shape}",
                data.len()
            )));
        }
        Ok(HostTensor {
            shape,
            data: HostData::I32(data),
        })
    }
    /// A zero tensor.
    pub fn zeros(shape: impl Into<Shape>, dtype: DType) -> Self {
        let shape = shape.into();
        let n = shape.numel();
        let data = match dtype {
            DType::F32 => HostData::F32(vec![0.0; n]),
            DType::I32 => HostData::I32(vec![0; n]),
        };
        HostTensor { shape, data }
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            HostData::F32(_) => DType::F32,
            HostData::I32(_) => DType::I32,
        }
    }
    /// Values as f32 (i32 converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I32(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// Values as f64 (for comparisons against the reference evaluator).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::I32(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
    /// Raw little-endian 32-bit words (f32 bits or i32), for upload.
    pub fn to_bits(&self) -> Vec<u32> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
            HostData::I32(v) => v.iter().map(|&x| x as u32).collect(),
        }
    }
    /// Rebuilds a tensor from raw 32-bit words.
    pub fn from_bits(shape: Shape, dtype: DType, bits: &[u32]) -> Self {
        let data = match dtype {
            DType::F32 => HostData::F32(bits.iter().map(|&b| f32::from_bits(b)).collect()),
            DType::I32 => HostData::I32(bits.iter().map(|&b| b as i32).collect()),
        };
        HostTensor { shape, data }
    }
}

/// Class of adapter, which selects kernel variants at compile time.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AdapterClass {
    /// A CPU rasterizer (lavapipe, SwiftShader, WARP) or the CPU interpreter: barriers and
    /// dispatches are expensive; prefer register blocking.
    Cpu,
    /// Integrated GPU.
    IntegratedGpu,
    /// Discrete GPU: prefer workgroup-memory tiles.
    DiscreteGpu,
    /// Anything else.
    Other,
}

/// The device limits the compiler must respect. Defaults are WebGPU's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceLimits {
    /// Storage buffers one shader stage may bind.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Largest storage binding in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer in bytes.
    pub max_buffer_size: u64,
    /// Alignment of storage buffer binding offsets.
    pub min_storage_buffer_offset_alignment: u32,
    /// Largest workgroup size in x.
    pub max_compute_workgroup_size_x: u32,
    /// Largest number of invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Largest workgroup count per dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Bytes of workgroup memory one workgroup may use.
    pub max_compute_workgroup_storage_size: u32,
    /// Most loop iterations one invocation may run (all its loops together). Mesa's
    /// llvmpipe/lavapipe silently stops loops after 65,535 iterations, which would truncate a
    /// long reduction; the compiler splits reductions to stay under this. `u64::MAX` where
    /// there is no such limit.
    pub max_loop_iterations: u64,
    /// Adapter class.
    pub adapter_class: AdapterClass,
    /// Whether persistent kernels — a workgroup looping over hundreds of steps with a barrier
    /// per step, as [`KernelOp::Recurrence`](crate::kernel::KernelOp::Recurrence) — run well
    /// here: true on GPUs and on the host CPU backends (no workgroups at all), false on CPU
    /// rasterizers (lavapipe runs each barrier as a coroutine switch of every invocation and
    /// compiles the unrolled form for minutes). The layers build the unrolled graph where it
    /// is false; the compiler still lowers a recurrence op anywhere it fits.
    pub persistent_kernels: bool,
}

impl Default for DeviceLimits {
    fn default() -> Self {
        DeviceLimits {
            max_storage_buffers_per_shader_stage: 8,
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
            min_storage_buffer_offset_alignment: 256,
            max_compute_workgroup_size_x: 256,
            max_compute_invocations_per_workgroup: 256,
            max_compute_workgroups_per_dimension: 65535,
            max_compute_workgroup_storage_size: 16384,
            max_loop_iterations: u64::MAX,
            adapter_class: AdapterClass::Other,
            persistent_kernels: true,
        }
    }
}

/// A plan loaded on a device, ready to run.
pub trait Executable {
    /// The plan it runs.
    fn plan(&self) -> &Plan;
    /// Writes `inputs` (in [`Plan::inputs`] order), runs every step, applies the param
    /// assignments, and returns the outputs in [`Plan::outputs`] order.
    fn run(&mut self, inputs: &[&HostTensor]) -> Result<Vec<HostTensor>>;
}

/// A device that runs plans and holds persistent variables.
///
/// Variables (params) are keyed by name and shared by every plan loaded on the backend: a
/// train-step plan and a predict plan of the same model see the same weights, which stay on
/// the device between runs.
pub trait Backend {
    /// Human-readable device description (adapter name, backend, type).
    fn describe(&self) -> String;
    /// Everything about the device that can change a compiled plan or its validity (backend,
    /// adapter, driver, library versions); part of the plan cache key. Defaults to
    /// [`Backend::describe`].
    fn fingerprint(&self) -> String {
        self.describe()
    }
    /// Limits the compiler must respect on this device.
    fn limits(&self) -> DeviceLimits;
    /// Prepares `plan` (buffers, pipelines, bind groups) and creates any variable it names
    /// that does not exist yet, zero-initialized.
    fn load(&mut self, plan: Arc<Plan>) -> Result<Box<dyn Executable>>;
    /// Sets a variable (creating it when new).
    fn write_param(&mut self, name: &str, value: &HostTensor) -> Result<()>;
    /// Reads a variable back.
    fn read_param(&mut self, name: &str) -> Result<HostTensor>;
    /// Names of all variables.
    fn param_names(&self) -> Vec<String>;
}

/// Checks `inputs` against the plan's input slots: count, shape, dtype, and for an index
/// input ([`crate::Slot::indices`]) that every value is a whole number in its domain
/// ([`Error::IndexOutOfRange`], naming the input). Every backend runs it before a dispatch.
pub fn check_inputs(plan: &Plan, inputs: &[&HostTensor]) -> Result<()> {
    if inputs.len() != plan.inputs.len() {
        return Err(Error::Input(format!(
            "the plan takes {} inputs ({}), got {}",
            plan.inputs.len(),
            plan.inputs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            inputs.len()
        )));
    }
    for (slot, t) in plan.inputs.iter().zip(inputs) {
        if slot.shape != t.shape || slot.dtype != t.dtype() {
            return Err(Error::Input(format!(
                "input `{}` expects {}{}, got {}{}",
                slot.name,
                slot.dtype,
                slot.shape,
                t.dtype(),
                t.shape
            )));
        }
        if let Some(rows) = slot.indices {
            check_indices(&slot.name, t, rows)?;
        }
    }
    Ok(())
}

/// Checks that every element of `t` (fed to index input `input`) is a whole number in
/// `0..rows`: the first one that is not is [`Error::IndexOutOfRange`]. [`check_inputs`]
/// runs it for every slot with [`crate::Slot::indices`]; a caller that batches a whole data
/// set can run it once up front.
pub fn check_indices(input: &str, t: &HostTensor, rows: u32) -> Result<()> {
    let bad = |element: usize, value: f64| Error::IndexOutOfRange {
        input: input.to_string(),
        element,
        value,
        rows,
    };
    match &t.data {
        HostData::I32(v) => match v.iter().position(|&x| x < 0 || x as u32 >= rows) {
            Some(i) => Err(bad(i, v[i] as f64)),
            None => Ok(()),
        },
        HostData::F32(v) => {
            let ok = |x: f32| x >= 0.0 && x.fract() == 0.0 && x < rows as f32;
            match v.iter().position(|&x| !ok(x)) {
                Some(i) => Err(bad(i, v[i] as f64)),
                None => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_values_must_be_whole_numbers_in_range() {
        let f = |v: Vec<f32>| HostTensor::f32([v.len()], v).unwrap();
        assert!(check_indices("x", &f(vec![0.0, 19.0]), 20).is_ok());
        for (bad, at) in [(25.0, 1), (-1.0, 1), (f32::NAN, 1), (2.7, 1), (20.0, 1)] {
            match check_indices("x", &f(vec![3.0, bad]), 20) {
                Err(Error::IndexOutOfRange {
                    input,
                    element,
                    rows,
                    ..
                }) => assert_eq!((input.as_str(), element, rows), ("x", at, 20)),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let i = |v: Vec<i32>| HostTensor::i32([v.len()], v).unwrap();
        assert!(check_indices("x", &i(vec![0, 19]), 20).is_ok());
        assert!(check_indices("x", &i(vec![0, -1]), 20).is_err());
        assert!(check_indices("x", &i(vec![20]), 20).is_err());
    }
}
