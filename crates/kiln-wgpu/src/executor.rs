//! Loading a [`Plan`] onto the device, and running it.
//!
//! [`load`] builds everything a run needs, once: device buffers (params come from the
//! backend's variable registry, constants are uploaded here), one pipeline per distinct
//! (shader, constants), a bind group per dispatch step, and one staging buffer holding
//! every output. [`WgpuExecutable::run`] then only writes the inputs, records one command
//! encoder (dispatches in compute passes, `Step::Copy` between passes, output copies to
//! staging), submits once, and maps the staging buffer. It creates no buffers.

use crate::backend::Shared;
use crate::codegen::{self, BindingSlot, KernelSource, ENTRY_POINT};
use crate::device::{Gpu, STAGING_USAGE, STORAGE_USAGE};
use crate::validate;
use kiln_ir::DType;
use kiln_plan::plan::{BufferKind, Plan, Step};
use kiln_plan::{
    check_inputs, DeviceError, DeviceErrorKind, Error, Executable, HostTensor, Result,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A prepared step of the schedule.
enum Prepared {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        groups: [u32; 3],
    },
    Copy {
        src: usize,
        dst: usize,
        bytes: u64,
    },
}

/// One output slot: where it lives and where it lands in the staging buffer.
struct OutputCopy {
    buffer: usize,
    offset: u64,
    bytes: u64,
}

/// A plan loaded on a [`crate::WgpuBackend`].
pub struct WgpuExecutable {
    plan: Arc<Plan>,
    buffers: Vec<wgpu::Buffer>,
    steps: Vec<Prepared>,
    inputs: Vec<usize>,
    outputs: Vec<OutputCopy>,
    staging: wgpu::Buffer,
    staging_bytes: u64,
    /// The kernels' offset tables (bound by the bind groups; kept alive here).
    _uniforms: wgpu::Buffer,
    /// The last submission of a run that read nothing back (at most one stays in flight).
    in_flight: Option<wgpu::SubmissionIndex>,
    /// Declared last: dropped after every device object above (see [`crate::device`]).
    gpu: Arc<Gpu>,
}

/// A plan error the executor meets after [`Plan::validate`] (defensive: the validator
/// rejects these plans first).
fn bad_plan(what: String) -> Error {
    Error::Plan(kiln_plan::PlanError::new(what))
}

fn slot_bytes(shape: &kiln_ir::Shape) -> u64 {
    shape.numel() as u64 * 4
}

/// Builds buffers, pipelines, bind groups and staging for `plan`.
pub(crate) fn load(shared: &mut Shared, plan: Arc<Plan>) -> Result<WgpuExecutable> {
    let gpu = shared.gpu.clone();
    plan.validate(&gpu.device_limits())?;
    let buffers = create_buffers(shared, &plan)?;

    // Every kernel's source, and its offset table's place in one uniform buffer.
    let align = gpu
        .device
        .limits()
        .min_uniform_buffer_offset_alignment
        .max(16) as u64;
    let mut sources: Vec<Option<(KernelSource, u64)>> = Vec::with_capacity(plan.steps.len());
    let mut table = Vec::<u8>::new();
    for (si, step) in plan.steps.iter().enumerate() {
        let Step::Dispatch { kernel, .. } = step else {
            sources.push(None);
            continue;
        };
        let k = plan.kernels.get(*kernel as usize).ok_or_else(|| {
            bad_plan(format!(
                "step {si} runs kernel {kernel}, which does not exist"
            ))
        })?;
        let src = codegen::kernel_source_for(k, &gpu.codegen_target()).map_err(|e| {
            Error::Device(DeviceError::new(
                DeviceErrorKind::Shader,
                format!("generating the shader of `{}`", k.label),
                e.to_string(),
            ))
        })?;
        let at = table.len() as u64;
        if !src.offsets.is_empty() {
            table.extend_from_slice(bytemuck::cast_slice(&src.offsets));
            table.resize((table.len() as u64).next_multiple_of(align) as usize, 0);
        }
        sources.push(Some((src, at)));
    }
    let uniforms = gpu.create_buffer(
        "kiln kernel offsets",
        table.len() as u64,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    );
    if !table.is_empty() {
        gpu.queue.write_buffer(&uniforms, 0, &table);
    }

    let mut steps = Vec::with_capacity(plan.steps.len());
    for (si, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Dispatch {
                kernel,
                buffers: bound,
                workgroups,
            } => {
                let k = &plan.kernels[*kernel as usize];
                let Some((src, at)) = &sources[si] else {
                    unreachable!("every dispatch step has a source")
                };
                let pipeline = shared.pipeline(&k.label, src)?;
                let layout = pipeline.get_bind_group_layout(0);
                let mut entries: Vec<wgpu::BindGroupEntry> = src
                    .bindings
                    .iter()
                    .enumerate()
                    .map(|(b, slot)| wgpu::BindGroupEntry {
                        binding: b as u32,
                        resource: buffers[bound[slot.arg as usize].0 as usize].as_entire_binding(),
                    })
                    .collect();
                if !src.offsets.is_empty() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: src.bindings.len() as u32,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &uniforms,
                            offset: *at,
                            size: std::num::NonZeroU64::new(src.offsets.len() as u64 * 4),
                        }),
                    });
                }
                let bind_group = gpu.scoped(
                    &format!("bind group of step {si} (`{}`)", k.label),
                    "",
                    || {
                        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some(&k.label),
                            layout: &layout,
                            entries: &entries,
                        })
                    },
                )?;
                steps.push(Prepared::Dispatch {
                    pipeline,
                    bind_group,
                    groups: *workgroups,
                });
            }
            Step::Copy { src, dst } => {
                let (s, d) = (src.0 as usize, dst.0 as usize);
                let (Some(sd), Some(dd)) = (plan.buffers.get(s), plan.buffers.get(d)) else {
                    return Err(bad_plan(format!(
                        "step {si} copies between missing buffers {s} -> {d}"
                    )));
                };
                if sd.len != dd.len || s == d {
                    return Err(bad_plan(format!(
                        "step {si} copies `{}` ({} elements) into `{}` ({} elements)",
                        sd.name, sd.len, dd.name, dd.len
                    )));
                }
                steps.push(Prepared::Copy {
                    src: s,
                    dst: d,
                    bytes: sd.bytes(),
                });
            }
        }
    }

    let slot_buffer =
        |name: &str, id: kiln_plan::plan::BufferId, shape: &kiln_ir::Shape| -> Result<usize> {
            let i = id.0 as usize;
            match plan.buffers.get(i) {
                Some(b) if b.len as u64 * 4 >= slot_bytes(shape) => Ok(i),
                _ => Err(bad_plan(format!(
                    "slot `{name}` ({shape}) does not fit its buffer {i}"
                ))),
            }
        };
    let inputs = plan
        .inputs
        .iter()
        .map(|s| slot_buffer(&s.name, s.buffer, &s.shape))
        .collect::<Result<Vec<_>>>()?;
    let mut outputs = Vec::new();
    let mut offset = 0;
    for s in &plan.outputs {
        let buffer = slot_buffer(&s.name, s.buffer, &s.shape)?;
        let bytes = slot_bytes(&s.shape);
        outputs.push(OutputCopy {
            buffer,
            offset,
            bytes,
        });
        offset += bytes;
    }
    let staging = gpu.create_buffer("kiln outputs (staging)", offset, STAGING_USAGE);
    Ok(WgpuExecutable {
        plan,
        gpu,
        buffers,
        steps,
        inputs,
        outputs,
        staging,
        staging_bytes: offset,
        _uniforms: uniforms,
        in_flight: None,
    })
}

/// Creates (or, for params, looks up) every buffer of the plan.
fn create_buffers(shared: &mut Shared, plan: &Plan) -> Result<Vec<wgpu::Buffer>> {
    let gpu = shared.gpu.clone();
    gpu.scoped(
        "creating the plan's buffers",
        "",
        || -> Result<Vec<wgpu::Buffer>> {
            let mut out = Vec::with_capacity(plan.buffers.len());
            for (i, desc) in plan.buffers.iter().enumerate() {
                let buffer = match &desc.kind {
                    BufferKind::Param => {
                        let slot = plan
                            .params
                            .iter()
                            .find(|s| s.buffer.0 as usize == i)
                            .ok_or_else(|| {
                                bad_plan(format!("param buffer `{}` has no param slot", desc.name))
                            })?;
                        if slot.shape.numel() != desc.len || slot.dtype != desc.dtype {
                            return Err(bad_plan(format!(
                                "param slot `{}` does not match its buffer",
                                slot.name
                            )));
                        }
                        shared.param_buffer(&slot.name, &slot.shape, slot.dtype)?
                    }
                    BufferKind::Constant { values } => {
                        if values.len() != desc.len {
                            return Err(bad_plan(format!(
                                "constant `{}` has {} values for {} elements",
                                desc.name,
                                values.len(),
                                desc.len
                            )));
                        }
                        let b = gpu.create_buffer(&desc.name, desc.bytes(), STORAGE_USAGE);
                        let words: Vec<u32> = match desc.dtype {
                            DType::F32 => values.iter().map(|v| v.to_bits()).collect(),
                            DType::I32 => values.iter().map(|&v| v as i32 as u32).collect(),
                        };
                        if !words.is_empty() {
                            gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(&words));
                        }
                        b
                    }
                    BufferKind::Input | BufferKind::Output | BufferKind::Temp => {
                        gpu.create_buffer(&desc.name, desc.bytes(), STORAGE_USAGE)
                    }
                };
                out.push(buffer);
            }
            Ok(out)
        },
    )?
}

/// Creates a compute pipeline for `src` with an explicit bind group layout.
pub(crate) fn create_pipeline(
    gpu: &Gpu,
    label: &str,
    module: &wgpu::ShaderModule,
    src: &KernelSource,
    cache: Option<&wgpu::PipelineCache>,
) -> Result<wgpu::ComputePipeline> {
    gpu.scoped(
        &format!("creating the pipeline of `{label}`"),
        &src.wgsl,
        || {
            let entries: Vec<wgpu::BindGroupLayoutEntry> = src
                .bindings
                .iter()
                .enumerate()
                .map(
                    |(b, slot): (usize, &BindingSlot)| wgpu::BindGroupLayoutEntry {
                        binding: b as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage {
                                read_only: slot.read_only,
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    },
                )
                .collect();
            let mut entries = entries;
            if !src.offsets.is_empty() {
                entries.push(wgpu::BindGroupLayoutEntry {
                    binding: src.bindings.len() as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                });
            }
            let bgl = gpu
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(label),
                    entries: &entries,
                });
            let layout = gpu
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(label),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
            let _driver = crate::device::driver_lock();
            gpu.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: Some(&layout),
                    module,
                    entry_point: Some(ENTRY_POINT),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &src.constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache,
                })
        },
    )
}

/// Validates `src` with naga, then creates its shader module inside an error scope.
pub(crate) fn create_module(
    gpu: &Gpu,
    label: &str,
    src: &KernelSource,
) -> Result<wgpu::ShaderModule> {
    validate::validate_wgsl(label, &src.wgsl).map_err(|e| {
        Error::Device(
            DeviceError::new(
                DeviceErrorKind::Shader,
                format!("validating the shader of `{label}`"),
                e.to_string(),
            )
            .with_shader(src.wgsl.clone()),
        )
    })?;
    gpu.scoped(
        &format!("creating the shader module of `{label}`"),
        &src.wgsl,
        || {
            gpu.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(src.wgsl.as_str().into()),
                })
        },
    )
}

impl WgpuExecutable {
    /// Runs the plan once with every step in its own submission, waiting for each, and
    /// returns the wall-clock seconds of each step with its kernel label (`copy` for copies).
    /// A profiling aid: the figures include one submit + wait per step (≈ 100 µs on
    /// lavapipe), which a normal run pays once. Params are updated as by a normal run.
    pub fn profile(&mut self, inputs: &[&HostTensor]) -> Result<Vec<(String, f64)>> {
        check_inputs(&self.plan, inputs)?;
        let gpu = self.gpu.clone();
        let wait = |s: wgpu::SubmissionIndex| {
            gpu.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(s),
                    timeout: Some(crate::device::RUN_TIMEOUT),
                })
                .map(|_| ())
                .map_err(|e| crate::device::lost("waiting for the GPU", e))
        };
        if let Some(prev) = self.in_flight.take() {
            wait(prev)?;
        }
        for (t, &b) in inputs.iter().zip(&self.inputs) {
            let words = t.to_bits();
            if !words.is_empty() {
                gpu.queue
                    .write_buffer(&self.buffers[b], 0, bytemuck::cast_slice(&words));
            }
        }
        let mut out = Vec::with_capacity(self.steps.len());
        for (si, step) in self.steps.iter().enumerate() {
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("kiln profile"),
                });
            let label = match step {
                Prepared::Copy { src, dst, bytes } => {
                    enc.copy_buffer_to_buffer(
                        &self.buffers[*src],
                        0,
                        &self.buffers[*dst],
                        0,
                        *bytes,
                    );
                    "copy".to_string()
                }
                Prepared::Dispatch {
                    pipeline,
                    bind_group,
                    groups,
                } => {
                    if groups.iter().all(|&g| g > 0) {
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: None,
                        });
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, bind_group, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                    }
                    match &self.plan.steps[si] {
                        Step::Dispatch { kernel, .. } => {
                            self.plan.kernels[*kernel as usize].label.clone()
                        }
                        Step::Copy { .. } => "copy".into(),
                    }
                }
            };
            let t0 = std::time::Instant::now();
            let s = gpu.queue.submit([enc.finish()]);
            wait(s)?;
            out.push((label, t0.elapsed().as_secs_f64()));
        }
        Ok(out)
    }

    /// Records the whole schedule plus the output copies into one command buffer.
    fn encode(&self) -> wgpu::CommandBuffer {
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kiln run"),
            });
        let mut i = 0;
        while i < self.steps.len() {
            if let Prepared::Copy { src, dst, bytes } = &self.steps[i] {
                enc.copy_buffer_to_buffer(&self.buffers[*src], 0, &self.buffers[*dst], 0, *bytes);
                i += 1;
                continue;
            }
            // A maximal run of dispatches shares one compute pass; wgpu orders them.
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("kiln dispatches"),
                timestamp_writes: None,
            });
            while let Some(Prepared::Dispatch {
                pipeline,
                bind_group,
                groups,
            }) = self.steps.get(i)
            {
                if groups.iter().all(|&g| g > 0) {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[]);
                    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                }
                i += 1;
            }
        }
        for o in &self.outputs {
            if o.bytes > 0 {
                enc.copy_buffer_to_buffer(
                    &self.buffers[o.buffer],
                    0,
                    &self.staging,
                    o.offset,
                    o.bytes,
                );
            }
        }
        enc.finish()
    }
}

impl Executable for WgpuExecutable {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn run(&mut self, inputs: &[&HostTensor]) -> Result<Vec<HostTensor>> {
        check_inputs(&self.plan, inputs)?;
        let gpu = self.gpu.clone();
        // A plan without outputs (a training step whose loss and metrics accumulate on the
        // device) is not waited for: it stays in flight while the host prepares the next
        // batch, and the run after it waits for it first, so at most one is queued.
        if let Some(prev) = self.in_flight.take() {
            gpu.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(prev),
                    timeout: Some(crate::device::RUN_TIMEOUT),
                })
                .map_err(|e| crate::device::lost("waiting for the GPU", e))?;
        }
        let submission = gpu.scoped("running the plan", "", || {
            for (t, &b) in inputs.iter().zip(&self.inputs) {
                let words = t.to_bits();
                if !words.is_empty() {
                    gpu.queue
                        .write_buffer(&self.buffers[b], 0, bytemuck::cast_slice(&words));
                }
            }
            gpu.queue.submit([self.encode()])
        })?;
        if self.plan.outputs.is_empty() {
            self.in_flight = Some(submission);
            return Ok(vec![]);
        }
        let words = gpu.read_back(&self.staging, self.staging_bytes, submission)?;
        Ok(self
            .plan
            .outputs
            .iter()
            .zip(&self.outputs)
            .map(|(slot, o)| {
                let (a, b) = ((o.offset / 4) as usize, ((o.offset + o.bytes) / 4) as usize);
                HostTensor::from_bits(slot.shape.clone(), slot.dtype, &words[a..b])
            })
            .collect())
    }
}

/// Pipelines already created, keyed by everything that determines them.
pub(crate) type PipelineKey = (String, Vec<(&'static str, u64)>, Vec<BindingSlot>);

/// The key of `src` in the pipeline cache.
pub(crate) fn pipeline_key(src: &KernelSource) -> PipelineKey {
    // Bindings matter only through their access modes (the arg mapping lives in bind groups).
    let access = src
        .bindings
        .iter()
        .enumerate()
        .map(|(i, b)| BindingSlot {
            arg: i as u32,
            read_only: b.read_only,
        })
        .collect();
    (
        src.code().to_string(),
        src.constants
            .iter()
            .map(|&(n, v)| (n, v.to_bits()))
            .collect(),
        access,
    )
}

/// A map from pipeline key to pipeline.
pub(crate) type PipelineCache = HashMap<PipelineKey, wgpu::ComputePipeline>;
