//! # kiln-plan: the contract between the compiler and every executor
//!
//! A [`Plan`] is what `kiln-opt` produces and what every backend runs: buffers, kernels
//! described as data ([`kernel`]: SSA expression bodies over views, stores, matmuls with
//! epilogues, reductions with stages), a dispatch schedule ([`Step`]s) and named
//! input/output/param [`Slot`]s. This crate holds everything both sides must agree on and
//! nothing else:
//!
//! - [`kernel`], [`plan`]: the kernel IR and the plan;
//! - [`codec`]: the plan file (header, checksum, bincode body — the only bincode calls);
//! - [`Plan::validate`] (module [`validate`]) and [`schedule`]: the one structural and device
//!   check every executor runs on load;
//! - [`backend`]: the [`Backend`] / [`Executable`] traits, [`HostTensor`], [`DeviceLimits`];
//! - [`interp`]: the reference CPU interpreter, a second, independent implementation of the
//!   kernel semantics and the test oracle of the fast backends;
//! - [`files`]: atomic file writes, bounded reads of regular files, the cache directories;
//! - [`env`]: every `KILN_*` variable, parsed strictly;
//! - [`Error`]: one error enum for compile, validation and run, with typed device errors.
//!
//! ## Invariants
//! - **A plan the validator accepts never panics any backend**, and a plan one backend rejects
//!   for its structure is rejected by all: every executor calls [`Plan::validate`] on load
//!   (decoded file, fresh compile and cache hit alike) with its own [`DeviceLimits`], and
//!   device-specific limits (workgroup counts, binding sizes) are part of that one check.
//! - The launch geometry of every kernel family is defined once, here
//!   ([`kernel::MatMulVariant::launch`]); backends and the validator both use it.
//! - A `Plan` holds no device types; it depends on `kiln-ir` only for scalar types
//!   (`DType`, `Shape`, op enums) and never on the compiler.
//! - Serializable types are a file-format boundary: any layout change bumps
//!   [`PLAN_FORMAT_VERSION`].

#![warn(missing_docs)]

pub mod backend;
pub mod codec;
pub mod env;
mod error;
pub mod files;
pub mod fuzzing;
pub mod interp;
pub mod kernel;
pub mod plan;
pub mod schedule;
pub mod validate;

pub use backend::{
    check_indices, check_inputs, AdapterClass, Backend, DeviceLimits, Executable, HostData,
    HostTensor,
};
pub use env::EnvError;
pub use error::{DeviceError, DeviceErrorKind, Error, PlanError, Result};
pub use plan::{
    BufferDesc, BufferId, BufferKind, Plan, PlanKind, PlanStats, Slot, Step, PLAN_FORMAT_VERSION,
};
