//! Backend conformance checks, written once and run per backend (the CPU interpreter here,
//! wgpu in `kiln-wgpu`'s tests): every op-table case, forward and backward, compiled to a
//! plan and compared with the f64 reference evaluator under a named tolerance.

use crate::{compile, Backend, CompileOptions, HostTensor, Result};
use kiln_ir::eval::{eval, Feeds};
use kiln_ir::testing::{all_cases, OpCase, Tolerance};
use kiln_ir::{autodiff, DType, Graph, NodeId, OpKind};
use std::sync::Arc;

/// Weights of the scalar test loss `sum(out * w)`.
pub fn loss_weights(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.3 + 0.17 * i as f64 * if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect()
}

/// The graph of one op-table case: output `out`, and for differentiable cases the gradient
/// of `sum(out * w)` with respect to every leaf as outputs `d_<leaf>`.
pub fn case_graph(case: &OpCase) -> Result<(Graph, Vec<NodeId>)> {
    let mut g = Graph::new();
    let (leaves, out) = case.build(&mut g)?;
    g.output("out", out)?;
    let mut wanted = vec![out];
    if case.differentiable && !leaves.is_empty() {
        let s = g.shape(out).clone();
        let w = g.constant(loss_weights(s.numel()), s, DType::F32)?;
        let p = g.mul(out, w)?;
        let loss = g.sum_all(p)?;
        let grads = autodiff::grad(&mut g, loss, &leaves)?;
        for ((name, _, _), d) in case.golden.inputs.iter().zip(grads) {
            g.output(format!("d_{name}"), d)?;
            wanted.push(d);
        }
    }
    Ok((g, wanted))
}

/// The tolerance for comparing a case on an f32 device with the f64 reference.
pub fn case_tolerance(case: &OpCase) -> Tolerance {
    match case.kind {
        OpKind::MatMul | OpKind::Reduce(_) => Tolerance::f32_sum(8),
        _ => Tolerance::F32,
    }
}

/// Runs every op-table case on `backend` and compares each output with the f64 evaluator.
/// Returns the number of compared tensors; the error names the case and element.
pub fn check_op_table(backend: &mut dyn Backend) -> std::result::Result<usize, String> {
    let mut compared = 0;
    for case in all_cases() {
        let name = case.golden.name;
        let (g, wanted) = case_graph(&case).map_err(|e| format!("{name}: build: {e}"))?;
        let feeds: Feeds = case.feeds();
        let reference = eval(&g, &wanted, &feeds).map_err(|e| format!("{name}: eval: {e}"))?;
        let plan = compile(&g, &CompileOptions::default(), &backend.limits())
            .map_err(|e| format!("{name}: compile: {e}"))?;
        let plan = Arc::new(plan);
        for slot in &plan.params {
            let t = &feeds[&slot.name];
            let v = HostTensor::f32(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect())
                .map_err(|e| e.to_string())?;
            backend
                .write_param(&slot.name, &v)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let mut exe = backend
            .load(plan.clone())
            .map_err(|e| format!("{name}: load: {e}"))?;
        let inputs: Vec<HostTensor> = plan
            .inputs
            .iter()
            .map(|s| {
                let t = &feeds[&s.name];
                HostTensor::f32(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect())
            })
            .collect::<Result<_>>()
            .map_err(|e| e.to_string())?;
        let refs: Vec<&HostTensor> = inputs.iter().collect();
        let got = exe.run(&refs).map_err(|e| format!("{name}: run: {e}"))?;
        let tol = case_tolerance(&case);
        for ((slot, t), want) in plan.outputs.iter().zip(&got).zip(&reference) {
            tol.check(&format!("{name}/{}", slot.name), &t.to_f64(), &want.data)?;
            compared += 1;
        }
    }
    Ok(compared)
}
