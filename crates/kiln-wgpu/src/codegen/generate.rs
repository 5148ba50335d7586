//! The frame of every generated (non-library) kernel: the thread index `gid` and its bounds
//! check, then the statements of the kernel's family (`elementwise`,
//! `reduce`, `scatter`, `recurrence`), then the module: bindings, the uniform offset
//! table, workgroup arrays, helper functions and the entry point. Kernels with workgroup
//! barriers (tree reductions, recurrences) check their workgroup index instead of `gid` and
//! get the `wg_id` and `lid` builtins.

use super::elementwise::elementwise;
use super::recurrence::recurrence;
use super::reduce::reduce;
use super::scatter::scatter_add;
use super::state::Gen;
use super::{sanitize, CodegenError, Target, ENTRY_POINT};
use crate::wgsl::{BinOp, BuiltinInput, Expr as W, Function, Module, Param, Scalar, Stmt, Type};
use kiln_plan::kernel::{Kernel, KernelOp};

/// Builds the module of an elementwise, reduce, scatter-add or recurrence kernel, and its
/// offset table.
pub(super) fn generated_module(
    kernel: &Kernel,
    target: &Target,
) -> Result<(Module, Vec<u32>), CodegenError> {
    let mut g = Gen::new(kernel);
    g.flush = target.flush_subnormals;
    let threads = u32::try_from(kernel.threads).map_err(|_| CodegenError::Unsupported {
        label: kernel.label.clone(),
        what: format!("{} threads do not fit u32 indexing", kernel.threads),
    })?;
    if kernel.workgroup_size == 0 {
        return Err(g.malformed("workgroup size 0".into()));
    }
    // gid = global_id.x + global_id.y * (num_workgroups.x * WG): one work item per
    // invocation; out-of-range invocations return. (A grid-stride loop over the items with a
    // capped launch measured 2x slower on lavapipe, whose loops are expensive.)
    let gid = g.let_u32(
        "gid".into(),
        W::ident("global_id").member("x").bin(
            BinOp::Add,
            W::ident("global_id").member("y").bin(
                BinOp::Mul,
                W::ident("num_wg")
                    .member("x")
                    .bin(BinOp::Mul, W::u32(kernel.workgroup_size)),
            ),
        ),
    );
    // (a tree reduction or a recurrence checks its workgroup index instead: its barriers
    // need uniform control flow)
    let barriers = matches!(&kernel.op, KernelOp::Reduce { tree, .. } if *tree > 1)
        || matches!(&kernel.op, KernelOp::Recurrence { .. });
    if !barriers {
        g.stmts.push(Stmt::If(
            gid.clone().bin(BinOp::Ge, W::u32(threads)),
            vec![Stmt::Return(None)],
            vec![],
        ));
    }

    let what = match &kernel.op {
        KernelOp::Elementwise { .. } => elementwise(&mut g, &gid)?,
        KernelOp::Reduce { .. } => reduce(&mut g, &gid)?,
        KernelOp::ScatterAdd { .. } => scatter_add(&mut g, &gid)?,
        KernelOp::Recurrence { .. } => recurrence(&mut g)?,
        KernelOp::MatMul { .. } => unreachable!("matmul kernels use the library shader"),
    };

    let table = g.offset_table();
    let mut module = Module {
        comments: vec![
            sanitize(&format!("kiln kernel `{}`", kernel.label)),
            sanitize(&format!(
                "{what}; {} work items, workgroup {}",
                kernel.threads, kernel.workgroup_size
            )),
        ],
        consts: Vec::new(),
        overrides: Vec::new(),
        bindings: g.bindings(),
        uniforms: g.uniforms(),
        workgroup: g.wg_arrays.clone(),
        functions: g
            .helpers()
            .into_iter()
            .chain([Function {
                name: ENTRY_POINT.into(),
                workgroup_size: Some(kernel.workgroup_size),
                params: vec![
                    Param {
                        builtin: Some(BuiltinInput::GlobalInvocationId),
                        name: "global_id".into(),
                        ty: Type::Vec(3, Scalar::U32),
                    },
                    Param {
                        builtin: Some(BuiltinInput::NumWorkgroups),
                        name: "num_wg".into(),
                        ty: Type::Vec(3, Scalar::U32),
                    },
                ],
                ret: None,
                body: g.stmts,
            }])
            .collect(),
    };
    if barriers {
        if let Some(f) = module.functions.last_mut() {
            f.params.push(Param {
                builtin: Some(BuiltinInput::WorkgroupId),
                name: "wg_id".into(),
                ty: Type::Vec(3, Scalar::U32),
            });
            f.params.push(Param {
                builtin: Some(BuiltinInput::LocalInvocationIndex),
                name: "lid".into(),
                ty: Type::Scalar(Scalar::U32),
            });
        }
    }
    Ok((module, table))
}
