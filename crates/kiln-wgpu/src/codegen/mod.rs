//! `KernelIr` → WGSL.
//!
//! Elementwise and reduce kernels are generated with the typed writer ([`crate::wgsl`]);
//! matmul kernels use the hand-written library shader `shaders/matmul.wgsl`, parameterized
//! with `override` constants. Generation is deterministic: the same [`Kernel`] always gives
//! the same text, so shader modules can be deduplicated (and cached) by source.
//!
//! Conventions shared by every generated kernel:
//! - binding `i` of group 0 is kernel arg `i` (`arg0`, `arg1`, ...), a runtime-sized
//!   `array<f32>` or `array<i32>`; inputs are `read`, the output (last arg) `read_write`;
//! - thread index `gid = global_id.x + global_id.y * (num_workgroups.x * WG)`, matching
//!   `Step::Dispatch::workgroups`, bounds-checked against `Kernel::threads`;
//! - every shape, stride and offset is static and baked in as a literal;
//! - body expressions become one `let` each (`e0`, `e1`, ...), in SSA order.
//!
//! A reduce kernel runs one thread per output element and folds the reduced axes in a
//! sequential loop (no atomics), so its results are deterministic.

mod generate;

use crate::wgsl::{Module, Scalar};
use generate::generated_module;
use kiln_ir::DType;
use kiln_opt::kernel::{Access, Kernel, KernelOp};

/// Name of the entry point of every kernel.
pub const ENTRY_POINT: &str = "main";

/// The library matmul kernel (`shaders/matmul.wgsl`).
pub const MATMUL_WGSL: &str = include_str!("../../../../shaders/matmul.wgsl");

/// Register block (rows, columns) computed by one thread of `shaders/matmul.wgsl`.
pub const MATMUL_TILE: [u32; 2] = [4, 4];

/// Why a kernel has no shader.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodegenError {
    /// The kernel breaks a structural rule of `KernelIr`.
    #[error("kernel `{label}` is malformed: {what}")]
    Malformed {
        /// Kernel label.
        label: String,
        /// What is wrong.
        what: String,
    },
    /// The kernel is valid but this backend cannot run it.
    #[error("kernel `{label}` is not supported by the wgpu backend: {what}")]
    Unsupported {
        /// Kernel label.
        label: String,
        /// What is missing.
        what: String,
    },
}

/// One storage binding of a shader: which kernel arg it binds and how.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BindingSlot {
    /// Index into `Kernel::args` (and into `Step::Dispatch::buffers`).
    pub arg: u32,
    /// Bound `read` (true) or `read_write` (false).
    pub read_only: bool,
}

/// A ready-to-compile shader for one kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSource {
    /// WGSL text.
    pub wgsl: String,
    /// Pipeline-overridable constants to set at pipeline creation.
    pub constants: Vec<(&'static str, f64)>,
    /// Binding `i` of group 0 is `bindings[i]`.
    pub bindings: Vec<BindingSlot>,
}

/// The WGSL of `kernel`, as [`kernel_source`] generates it with the kernel's own access
/// modes. A kernel that cannot be generated gives a module holding only a comment with the
/// reason (which fails pipeline creation); use [`kernel_source`] for the typed error.
pub fn kernel_wgsl(kernel: &Kernel) -> String {
    let access: Vec<Access> = kernel.args.iter().map(|a| a.access).collect();
    match kernel_source(kernel, &access) {
        Ok(src) => src.wgsl,
        Err(e) => Module {
            comments: vec![sanitize(&e.to_string())],
            ..Module::default()
        }
        .to_string(),
    }
}

/// Generates the shader of `kernel` with the given access mode per arg (`access[i]` for
/// `kernel.args[i]`; the last arg is always written). The executor passes `Write` for an
/// input whose buffer is also the output of the same dispatch (in-place updates), because
/// WebGPU forbids binding one buffer both read-only and read-write in a dispatch.
pub fn kernel_source(kernel: &Kernel, access: &[Access]) -> Result<KernelSource, CodegenError> {
    let err = |what: String| CodegenError::Malformed {
        label: kernel.label.clone(),
        what,
    };
    if kernel.args.is_empty() || access.len() != kernel.args.len() {
        return Err(err(format!(
            "{} args with {} access modes (a kernel needs at least its output)",
            kernel.args.len(),
            access.len()
        )));
    }
    let last = kernel.args.len() - 1;
    let read_only = |i: usize| i != last && access[i] == Access::Read;
    match &kernel.op {
        KernelOp::MatMul { .. } => matmul_source(kernel, &read_only),
        _ => {
            let module = generated_module(kernel, &read_only)?;
            Ok(KernelSource {
                wgsl: module.to_string(),
                constants: Vec::new(),
                bindings: (0..kernel.args.len())
                    .map(|i| BindingSlot {
                        arg: i as u32,
                        read_only: read_only(i),
                    })
                    .collect(),
            })
        }
    }
}

fn matmul_source(
    kernel: &Kernel,
    read_only: &dyn Fn(usize) -> bool,
) -> Result<KernelSource, CodegenError> {
    let KernelOp::MatMul {
        batch,
        m,
        n,
        k,
        a,
        b,
        tile,
    } = &kernel.op
    else {
        unreachable!("matmul_source is only called for matmul kernels")
    };
    let unsupported = |what: String| CodegenError::Unsupported {
        label: kernel.label.clone(),
        what,
    };
    let last = kernel.args.len() - 1;
    if *tile != MATMUL_TILE {
        return Err(unsupported(format!(
            "register block {tile:?} (the library kernel computes {MATMUL_TILE:?})"
        )));
    }
    if kernel.args.iter().any(|a| a.dtype != DType::F32) {
        return Err(unsupported("matmul on non-f32 operands".into()));
    }
    for op in [a, b] {
        if op.arg as usize >= last {
            return Err(CodegenError::Malformed {
                label: kernel.label.clone(),
                what: format!(
                    "matmul operand arg {} is not an input (the kernel has {} args)",
                    op.arg,
                    kernel.args.len()
                ),
            });
        }
        if !read_only(op.arg as usize) {
            return Err(unsupported("a matmul operand aliases its output".into()));
        }
    }
    let values: [(&'static str, usize); 13] = [
        ("M", *m),
        ("N", *n),
        ("K", *k),
        ("BATCH", *batch),
        ("A_OFF", a.offset),
        ("A_BS", a.batch_stride),
        ("A_RS", a.row_stride),
        ("A_CS", a.col_stride),
        ("B_OFF", b.offset),
        ("B_BS", b.batch_stride),
        ("B_RS", b.row_stride),
        ("B_CS", b.col_stride),
        ("WG", kernel.workgroup_size as usize),
    ];
    if let Some((name, v)) = values.iter().find(|(_, v)| *v > u32::MAX as usize) {
        return Err(unsupported(format!(
            "{name} = {v} does not fit u32 indexing"
        )));
    }
    Ok(KernelSource {
        wgsl: MATMUL_WGSL.to_string(),
        constants: values.iter().map(|&(name, v)| (name, v as f64)).collect(),
        bindings: vec![
            BindingSlot {
                arg: a.arg,
                read_only: true,
            },
            BindingSlot {
                arg: b.arg,
                read_only: true,
            },
            BindingSlot {
                arg: last as u32,
                read_only: false,
            },
        ],
    })
}

/// Threads a matmul kernel needs with the library kernel's 4x4 block.
pub fn matmul_threads(batch: usize, m: usize, n: usize) -> u64 {
    (batch * m.div_ceil(MATMUL_TILE[0] as usize) * n.div_ceil(MATMUL_TILE[1] as usize)) as u64
}

pub(crate) fn scalar(dt: DType) -> Scalar {
    match dt {
        DType::F32 => Scalar::F32,
        DType::I32 => Scalar::I32,
    }
}

pub(crate) fn arg_name(i: usize) -> String {
    format!("arg{i}")
}

/// Keeps comment text on one printable line.
pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
