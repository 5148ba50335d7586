//! [`WgpuBackend`]: the `kiln_plan::Backend` of wgpu devices, and its variable registry.
//!
//! The backend owns what outlives a single plan: the device ([`Gpu`]), the variables
//! (params, by name), and caches of shader modules (by WGSL text) and compute pipelines (by
//! text, override constants and binding access), so a second plan with the same kernels
//! creates no new shader modules or pipelines.

use crate::codegen::KernelSource;
use crate::device::{Gpu, WgpuError, STAGING_USAGE, STORAGE_USAGE};
use crate::executor::{self, PipelineCache, WgpuExecutable};
use kiln_ir::{DType, Shape};
use kiln_plan::{Backend, DeviceLimits, Error, Executable, HostTensor, Plan, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A persistent variable on the device.
struct Variable {
    buffer: wgpu::Buffer,
    shape: Shape,
    dtype: DType,
    /// Read-back buffer, created by the first `read_param` and reused after.
    staging: Option<wgpu::Buffer>,
}

/// State shared by the backend and `load`.
pub(crate) struct Shared {
    params: BTreeMap<String, Variable>,
    modules: HashMap<String, wgpu::ShaderModule>,
    pipelines: PipelineCache,
    /// The driver's pipeline cache, persisted (Vulkan adapters with `PIPELINE_CACHE`).
    disk: Option<crate::pipeline_cache::DiskPipelineCache>,
    /// Declared last: dropped after every device object above (see [`crate::device`]).
    pub(crate) gpu: Arc<Gpu>,
}

impl Shared {
    /// The buffer of variable `name`, created zero-filled when new; a clash of shape or
    /// dtype with an existing variable is an error.
    pub(crate) fn param_buffer(
        &mut self,
        name: &str,
        shape: &Shape,
        dtype: DType,
    ) -> Result<wgpu::Buffer> {
        if let Some(v) = self.params.get(name) {
            if &v.shape != shape || v.dtype != dtype {
                return Err(Error::Param {
                    name: name.into(),
                    message: format!(
                        "exists as {}{} but the plan declares {dtype}{shape}",
                        v.dtype, v.shape
                    ),
                });
            }
            return Ok(v.buffer.clone());
        }
        // wgpu zero-initializes new buffers.
        let bytes = shape.numel() as u64 * dtype.size_bytes() as u64;
        let buffer = self.gpu.create_buffer(name, bytes, STORAGE_USAGE);
        self.params.insert(
            name.into(),
            Variable {
                buffer: buffer.clone(),
                shape: shape.clone(),
                dtype,
                staging: None,
            },
        );
        Ok(buffer)
    }

    /// The pipeline of `src`, created (after naga validation) on first use.
    pub(crate) fn pipeline(
        &mut self,
        label: &str,
        src: &KernelSource,
    ) -> Result<wgpu::ComputePipeline> {
        let key = executor::pipeline_key(src);
        if let Some(p) = self.pipelines.get(&key) {
            return Ok(p.clone());
        }
        let module = match self.modules.get(src.code()) {
            Some(m) => m.clone(),
            None => {
                let m = executor::create_module(&self.gpu, label, src)?;
                self.modules.insert(src.code().to_string(), m.clone());
                m
            }
        };
        let cache = self.disk.as_ref().map(|d| &d.cache);
        let p = executor::create_pipeline(&self.gpu, label, &module, src, cache)?;
        self.pipelines.insert(key, p.clone());
        Ok(p)
    }
}

/// The wgpu backend: one device, its variables, and the plans loaded on it.
pub struct WgpuBackend {
    shared: Shared,
}

impl WgpuBackend {
    /// Opens the preferred adapter (see [`Gpu::open`]).
    pub fn new() -> std::result::Result<WgpuBackend, WgpuError> {
        let gpu = Arc::new(Gpu::open()?);
        let disk = crate::pipeline_cache::DiskPipelineCache::open(&gpu.device, &gpu.info);
        Ok(WgpuBackend {
            shared: Shared {
                gpu,
                params: BTreeMap::new(),
                modules: HashMap::new(),
                pipelines: HashMap::new(),
                disk,
            },
        })
    }

    /// The device context.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.shared.gpu
    }

    /// Buffers created on this backend's device so far (plan loads, variables, read-back
    /// buffers). Running a loaded plan creates none.
    pub fn buffers_created(&self) -> u64 {
        self.shared.gpu.buffers_created()
    }

    /// Distinct shader modules created so far.
    pub fn shader_modules(&self) -> usize {
        self.shared.modules.len()
    }

    /// Distinct compute pipelines created so far.
    pub fn pipelines(&self) -> usize {
        self.shared.pipelines.len()
    }

    /// Loads `plan` and returns the concrete executable (for callers that want its type).
    /// When the load created pipelines and the device keeps a driver pipeline cache, the
    /// cache is written back to disk.
    pub fn load_wgpu(&mut self, plan: Arc<Plan>) -> Result<WgpuExecutable> {
        let before = self.shared.pipelines.len();
        let exe = executor::load(&mut self.shared, plan)?;
        if self.shared.pipelines.len() != before {
            if let Some(d) = self.shared.disk.as_mut() {
                d.save();
            }
        }
        Ok(exe)
    }

    /// The file the driver pipeline cache persists to, when this device keeps one
    /// (Vulkan adapters with `Features::PIPELINE_CACHE`, plan cache enabled).
    pub fn pipeline_cache_path(&self) -> Option<std::path::PathBuf> {
        self.shared.disk.as_ref().map(|d| d.path().to_path_buf())
    }
}

/// The wgpu (and naga) release kiln is built against: the workspace pins `=30.0.1`. Part of
/// the plan cache key through [`Backend::fingerprint`].
pub const WGPU_VERSION: &str = "30.0.1";

impl Backend for WgpuBackend {
    fn describe(&self) -> String {
        self.shared.gpu.describe()
    }

    fn fingerprint(&self) -> String {
        let i = &self.shared.gpu.info;
        format!(
            "wgpu {WGPU_VERSION}; naga {WGPU_VERSION}; {} (vendor {:#x}, device {:#x}); driver {} {}; {:?} {:?}",
            i.name, i.vendor, i.device, i.driver, i.driver_info, i.backend, i.device_type
        )
    }

    fn limits(&self) -> DeviceLimits {
        self.shared.gpu.device_limits()
    }

    fn load(&mut self, plan: Arc<Plan>) -> Result<Box<dyn Executable>> {
        Ok(Box::new(self.load_wgpu(plan)?))
    }

    fn write_param(&mut self, name: &str, value: &HostTensor) -> Result<()> {
        let buffer = self
            .shared
            .param_buffer(name, &value.shape, value.dtype())?;
        let words = value.to_bits();
        if !words.is_empty() {
            self.shared
                .gpu
                .queue
                .write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
        }
        Ok(())
    }

    fn read_param(&mut self, name: &str) -> Result<HostTensor> {
        let gpu = self.shared.gpu.clone();
        let v = self
            .shared
            .params
            .get_mut(name)
            .ok_or_else(|| Error::Param {
                name: name.into(),
                message: "no such variable (load a plan that declares it, or write it first)"
                    .into(),
            })?;
        let bytes = v.shape.numel() as u64 * 4;
        let staging = v
            .staging
            .get_or_insert_with(|| {
                gpu.create_buffer(&format!("{name} (read-back)"), bytes, STAGING_USAGE)
            })
            .clone();
        let submission = gpu.scoped(&format!("reading param `{name}`"), "", || {
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("kiln read_param"),
                });
            if bytes > 0 {
                enc.copy_buffer_to_buffer(&v.buffer, 0, &staging, 0, bytes);
            }
            gpu.queue.submit([enc.finish()])
        })?;
        let words = gpu.read_back(&staging, bytes, submission)?;
        let n = v.shape.numel();
        Ok(HostTensor::from_bits(v.shape.clone(), v.dtype, &words[..n]))
    }

    fn param_names(&self) -> Vec<String> {
        self.shared.params.keys().cloned().collect()
    }
}

/// A backend for tests: `Some` when an adapter opens. With no adapter it prints
/// `skipping: no GPU adapter` and returns `None`, unless `KILN_REQUIRE_GPU=1` is set, in
/// which case (as in CI) it panics; so does a `KILN_REQUIRE_GPU` that is not a boolean
/// ([`kiln_plan::env::BOOL_ACCEPTED`]). Any other device error panics: it is a real failure.
pub fn test_backend() -> Option<WgpuBackend> {
    let required = kiln_plan::env::require_gpu().unwrap_or_else(|e| panic!("{e}"));
    match WgpuBackend::new() {
        Ok(b) => Some(b),
        Err(WgpuError::NoAdapter { .. }) if !required => {
            eprintln!("skipping: no GPU adapter");
            None
        }
        Err(e) => panic!("KILN_REQUIRE_GPU=1 or device failure: {e}"),
    }
}

/// One adapter wgpu can see, for `kiln devices`.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    /// `name (backend, type, driver ...)`.
    pub description: String,
    /// Storage buffers per shader stage.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Largest storage binding in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer in bytes.
    pub max_buffer_size: u64,
    /// Largest workgroup (invocations).
    pub max_compute_invocations_per_workgroup: u32,
    /// Optional features the adapter offers.
    pub features: String,
}

/// Every adapter on the backends wgpu would use (`WGPU_BACKEND` or all primary ones).
pub fn list_adapters() -> Vec<AdapterReport> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(backends))
        .iter()
        .map(|a| {
            let l = a.limits();
            AdapterReport {
                description: crate::device::describe_adapter(&a.get_info()),
                max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_buffer_size: l.max_buffer_size,
                max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                features: format!("{:?}", a.features()),
            }
        })
        .collect()
}
