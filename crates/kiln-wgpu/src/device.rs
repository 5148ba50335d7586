//! Adapter selection, the device context shared by every loaded plan, and error scopes.
//!
//! [`Gpu`] owns the wgpu device and queue. It is shared (`Arc`) by the backend and every
//! executable loaded on it, and it is the only place that creates buffers, so the
//! [`Gpu::buffers_created`] counter sees every allocation.
//!
//! Devices are opened, dropped and given pipelines under one process-wide lock
//! ([`driver_lock`]): NVIDIA's Vulkan driver (580.159 on an H100) deadlocks when one device is
//! destroyed while another in the same process creates a compute pipeline (seen about one
//! run in four of a test binary running four devices at once). Every owner of device objects
//! declares its `Arc<Gpu>` last, so the device is destroyed when the last `Gpu` is dropped,
//! inside the lock.

use kiln_plan::{AdapterClass, DeviceError, DeviceErrorKind, DeviceLimits, Error};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

static DRIVER_LOCK: Mutex<()> = Mutex::new(());

/// Holds the process-wide lock around driver calls that must not overlap across devices:
/// opening and destroying a device, and creating a compute pipeline (see the module page).
/// A poisoned lock is still a lock: the guarded data is `()`.
pub(crate) fn driver_lock() -> MutexGuard<'static, ()> {
    DRIVER_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Errors of device setup.
#[derive(Debug, thiserror::Error)]
pub enum WgpuError {
    /// wgpu found no adapter at all (no GPU driver, not even a software one).
    #[error("no GPU adapter found (backends tried: {backends}); install a Vulkan driver (e.g. Mesa lavapipe) or use the CPU backend")]
    NoAdapter {
        /// Backends that were searched.
        backends: String,
    },
    /// `KILN_ADAPTER` names no available adapter.
    #[error("KILN_ADAPTER=`{wanted}` matches no adapter; available: {available}")]
    NoMatchingAdapter {
        /// The requested substring.
        wanted: String,
        /// Names of the adapters found.
        available: String,
    },
    /// A `KILN_*` variable that selects the device holds a bad value.
    #[error(transparent)]
    Env(#[from] kiln_plan::EnvError),
    /// The adapter refused to create a device.
    #[error("could not open adapter `{adapter}`: {source}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's error.
        source: wgpu::RequestDeviceError,
    },
}

impl From<WgpuError> for Error {
    fn from(e: WgpuError) -> Self {
        if let WgpuError::Env(e) = e {
            return Error::Env(e);
        }
        Error::Device(DeviceError::new(
            DeviceErrorKind::Unavailable,
            "opening a device",
            e.to_string(),
        ))
    }
}

/// A wgpu error captured by an error scope, as a typed [`DeviceError`].
pub(crate) fn device_error(what: &str, e: &wgpu::Error, context: &str) -> Error {
    let kind = match e {
        wgpu::Error::OutOfMemory { .. } => DeviceErrorKind::OutOfMemory,
        wgpu::Error::Validation { .. } => DeviceErrorKind::Validation,
        wgpu::Error::Internal { .. } => DeviceErrorKind::Internal,
    };
    let err = DeviceError::new(kind, what, e.to_string());
    Error::Device(if context.is_empty() {
        err
    } else {
        err.with_shader(context)
    })
}

/// Waiting for the device failed: the device is lost or hung past [`RUN_TIMEOUT`].
pub(crate) fn lost(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Device(DeviceError::new(DeviceErrorKind::Lost, what, e.to_string()))
}

/// The opened device and what the executor needs to know about it.
pub struct Gpu {
    /// The device (dropped by hand, inside [`driver_lock`]).
    pub device: ManuallyDrop<wgpu::Device>,
    /// Its queue (dropped by hand, inside [`driver_lock`]).
    pub queue: ManuallyDrop<wgpu::Queue>,
    /// The adapter it was opened on.
    pub info: wgpu::AdapterInfo,
    /// The limits requested (the adapter's own).
    pub limits: wgpu::Limits,
    created: Arc<AtomicU64>,
    /// `KILN_SUBGROUPS` (default on), read when the device was opened.
    subgroups_allowed: bool,
}

impl Drop for Gpu {
    fn drop(&mut self) {
        let _driver = driver_lock();
        // SAFETY: the fields are dropped once, here, and never used again (`self` is being
        // dropped). Owners of device objects declare their `Arc<Gpu>` after those objects,
        // so this usually releases the last references and the device is destroyed now.
        unsafe {
            ManuallyDrop::drop(&mut self.queue);
            ManuallyDrop::drop(&mut self.device);
        }
    }
}

/// Usage of every device buffer of a plan.
pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// Usage of host read-back buffers.
pub const STAGING_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// How long a run may take before the wait gives up. Generous: on CPU adapters the first run
/// of a plan compiles every pipeline to machine code (40 s for the char-LSTM step on an idle
/// 2-core machine, several times that under load).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// `"<name> (<backend>, <device_type>, driver <driver>)"`.
pub fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} ({:?}, {:?}, driver {})",
        info.name, info.backend, info.device_type, info.driver
    )
}

impl Gpu {
    /// What codegen may assume of this device: subgroups of a fixed size where the device
    /// has the `SUBGROUP` feature and the adapter's minimum and maximum subgroup sizes agree
    /// (lavapipe: 8, its SIMD width). `KILN_SUBGROUPS=0` (any boolean of [`kiln_plan::env`]; a
    /// bad value fails [`Gpu::open`]) turns them off (portable shaders).
    pub fn codegen_target(&self) -> crate::codegen::Target {
        let off = !self.subgroups_allowed;
        let fixed = self.info.subgroup_min_size == self.info.subgroup_max_size;
        let has = self.device.features().contains(wgpu::Features::SUBGROUP);
        crate::codegen::Target {
            subgroup_size: (has && fixed && !off).then_some(self.info.subgroup_min_size),
            // CPU adapters run shaders on the host's FPU, where arithmetic on subnormal f32
            // values is ~100x slower (llvmpipe does not set flush-to-zero): a vanishing
            // gradient over a 500-step LSTM made a training step 3.5x slower
            flush_subnormals: self.info.device_type == wgpu::DeviceType::Cpu,
        }
    }

    /// Picks an adapter and opens a device with the adapter's own limits.
    ///
    /// Preference: `KILN_ADAPTER=<substring>` (case-insensitive, on the adapter name) when
    /// set (empty is an error, [`WgpuError::Env`]); otherwise a discrete GPU, then integrated, virtual, other, and finally a
    /// CPU-type adapter (lavapipe). Ties keep wgpu's enumeration order. Backends come from
    /// `WGPU_BACKEND` when set (wgpu's own variable), else all compiled-in primary ones.
    pub fn open() -> Result<Gpu, WgpuError> {
        let wanted = kiln_plan::env::adapter()?;
        let subgroups_allowed = kiln_plan::env::bool_var("KILN_SUBGROUPS", true)?;
        let _driver = driver_lock();
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        if adapters.is_empty() {
            return Err(WgpuError::NoAdapter {
                backends: format!("{backends:?}"),
            });
        }
        for a in &adapters {
            log::debug!(
                "kiln-wgpu: found adapter {}",
                describe_adapter(&a.get_info())
            );
        }
        if let Some(wanted) = wanted {
            let needle = wanted.to_lowercase();
            let available = adapters
                .iter()
                .map(|a| a.get_info().name)
                .collect::<Vec<_>>()
                .join(", ");
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&needle));
            if adapters.is_empty() {
                return Err(WgpuError::NoMatchingAdapter { wanted, available });
            }
        }
        let best = adapters
            .iter()
            .enumerate()
            .min_by_key(|(i, a)| (rank(a.get_info().device_type), *i))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let adapter = adapters.swap_remove(best);
        let info = adapter.get_info();
        let limits = adapter.limits();
        log::info!(
            "kiln-wgpu: using adapter {} [{}]",
            describe_adapter(&info),
            info.driver_info
        );
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            // Subgroup operations where the adapter has them (the register-blocked matmul
            // shares loads through subgroup broadcasts; see `Gpu::codegen_target`).
            // and the driver pipeline cache where the adapter has one (persisted beside the
            // plan cache; see `pipeline_cache.rs`).
            required_features: adapter.features()
                & (wgpu::Features::SUBGROUP | wgpu::Features::PIPELINE_CACHE),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|source| WgpuError::RequestDevice {
            adapter: info.name.clone(),
            source,
        })?;
        // Errors outside an error scope are logged, never a panic of the default handler.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            log::error!("kiln-wgpu: uncaptured wgpu error: {e}");
        }));
        Ok(Gpu {
            device: ManuallyDrop::new(device),
            queue: ManuallyDrop::new(queue),
            info,
            limits,
            created: Arc::new(AtomicU64::new(0)),
            subgroups_allowed,
        })
    }

    /// Device description for [`kiln_plan::Backend::describe`].
    pub fn describe(&self) -> String {
        describe_adapter(&self.info)
    }

    /// The limits the compiler must respect on this device.
    pub fn device_limits(&self) -> DeviceLimits {
        let l = &self.limits;
        DeviceLimits {
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
            max_compute_workgroup_size_x: l.max_compute_workgroup_size_x,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            // llvmpipe (lavapipe) ends every loop after 65,535 iterations in total per
            // invocation (gallivm's loop limiter), silently
            max_loop_iterations: if self.info.driver.to_lowercase().contains("llvmpipe")
                || self.info.name.to_lowercase().contains("llvmpipe")
            {
                65_535
            } else {
                u64::MAX
            },
            adapter_class: match self.info.device_type {
                wgpu::DeviceType::Cpu => AdapterClass::Cpu,
                wgpu::DeviceType::IntegratedGpu => AdapterClass::IntegratedGpu,
                wgpu::DeviceType::DiscreteGpu => AdapterClass::DiscreteGpu,
                _ => AdapterClass::Other,
            },
            // measured on lavapipe: an IMDB-sized persistent LSTM step ran ~50x slower than
            // the unrolled graph (coroutine barriers), its unrolled BPTT shader compiled for
            // 25-100 s
            persistent_kernels: self.info.device_type != wgpu::DeviceType::Cpu,
        }
    }

    /// Buffers created on this device so far.
    pub fn buffers_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Creates a buffer of at least 4 bytes (wgpu allows no empty buffers), counting it.
    pub fn create_buffer(
        &self,
        label: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        self.created.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).next_multiple_of(16),
            usage,
            mapped_at_creation: false,
        })
    }

    /// Runs `f` inside validation and out-of-memory error scopes; a captured error becomes
    /// typed [`Error::Device`] carrying `context` (e.g. the shader source).
    pub fn scoped<T>(&self, what: &str, context: &str, f: impl FnOnce() -> T) -> Result<T, Error> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        match v.or(o) {
            None => Ok(value),
            Some(e) => Err(device_error(what, &e, context)),
        }
    }

    /// Reads `bytes` from the start of a mapped-read staging buffer after `submission`.
    pub fn read_back(
        &self,
        staging: &wgpu::Buffer,
        bytes: u64,
        submission: wgpu::SubmissionIndex,
    ) -> Result<Vec<u32>, Error> {
        let bytes = bytes.max(4);
        let slice = staging.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: Some(RUN_TIMEOUT),
            })
            .map_err(|e| lost("waiting for the GPU", e))?;
        rx.recv()
            .map_err(|_| lost("reading back", "the read-back callback never ran"))?
            .map_err(|e| {
                Error::Device(DeviceError::new(
                    DeviceErrorKind::ReadBack,
                    "mapping a read-back buffer",
                    e.to_string(),
                ))
            })?;
        // Copy out, then unmap whether or not the view could be read.
        let words = slice
            .get_mapped_range()
            .map(|view| {
                view.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<u32>>()
            })
            .map_err(|e| {
                Error::Device(DeviceError::new(
                    DeviceErrorKind::ReadBack,
                    "reading a mapped buffer",
                    e.to_string(),
                ))
            });
        staging.unmap();
        words
    }
}
