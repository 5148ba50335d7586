//! The op table: every op kind has cases; forward values match hand-derived goldens; every
//! differentiable op's autodiff gradient matches central finite differences in f64.

use kiln_ir::eval::{eval, Tensor};
use kiln_ir::testing::{all_cases, case_names, OpCase, Tolerance, GOLDEN};
use kiln_ir::{autodiff, verify, DType, Graph, NodeId, OpKind};

#[test]
fn every_op_kind_has_a_case_and_every_golden_is_used() {
    let cases = all_cases();
    for kind in OpKind::all() {
        assert!(
            !case_names(kind).is_empty(),
            "{kind:?} has no op-table entry"
        );
    }
    for gc in GOLDEN {
        assert!(
            cases.iter().any(|c| c.golden.name == gc.name),
            "golden case `{}` is not reachable from case_names",
            gc.name
        );
    }
}

#[test]
fn forward_matches_hand_derived_values() {
    for case in all_cases() {
        let mut g = Graph::new();
        let (_, out) = case.build(&mut g).unwrap();
        verify(&g).unwrap();
        assert_eq!(
            g.shape(out).dims(),
            case.golden.shape,
            "{}: shape",
            case.golden.name
        );
        let got = eval(&g, &[out], &case.feeds()).unwrap().remove(0);
        Tolerance {
            rel: 1e-12,
            abs: 1e-12,
        }
        .check(case.golden.name, &got.data, case.golden.expected)
        .unwrap();
    }
}

/// Weights that make `loss = sum(out * w)` exercise every output element differently.
fn weights(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.3 + 0.17 * i as f64 * if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect()
}

fn loss_graph(case: &OpCase) -> (Graph, Vec<NodeId>, NodeId) {
    let mut g = Graph::new();
    let (leaves, out) = case.build(&mut g).unwrap();
    let s = g.shape(out).clone();
    let w = g.constant(weights(s.numel()), s, DType::F32).unwrap();
    let p = g.mul(out, w).unwrap();
    let loss = g.sum_all(p).unwrap();
    (g, leaves, loss)
}

#[test]
fn gradients_match_central_finite_differences() {
    let eps = 1e-6;
    let mut checked = 0;
    for case in all_cases()
        .into_iter()
        .filter(|c| c.differentiable && !c.golden.inputs.is_empty())
    {
        let name = case.golden.name;
        let (mut g, leaves, loss) = loss_graph(&case);
        let grads = autodiff::grad(&mut g, loss, &leaves).unwrap();
        verify(&g).unwrap();
        let feeds = case.feeds();
        let analytic = eval(&g, &grads, &feeds).unwrap();
        for (li, (leaf_name, _, vals)) in case.golden.inputs.iter().enumerate() {
            if *leaf_name == "c" && case.kind == OpKind::Where {
                continue; // the condition has no gradient
            }
            let mut fd = Vec::new();
            for j in 0..vals.len() {
                let f = |delta: f64| {
                    let mut fe = feeds.clone();
                    let t: &mut Tensor = fe.get_mut(*leaf_name).unwrap();
                    t.data[j] += delta;
                    eval(&g, &[loss], &fe).unwrap()[0].data[0]
                };
                fd.push((f(eps) - f(-eps)) / (2.0 * eps));
            }
            Tolerance::FINITE_DIFF
                .check(
                    &format!("{name}: d loss / d {leaf_name}"),
                    &analytic[li].data,
                    &fd,
                )
                .unwrap();
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} gradients were checked");
}

#[test]
fn where_condition_and_comparisons_have_zero_gradient_and_backwards_refuse() {
    for case in all_cases()
        .into_iter()
        .filter(|c| !c.differentiable && !c.golden.inputs.is_empty())
    {
        let (mut g, leaves, loss) = loss_graph(&case);
        if case.kind == OpKind::RecurrenceGrad {
            // a backward is not differentiated again: a typed error, not a silent zero
            let e = autodiff::grad(&mut g, loss, &leaves).unwrap_err();
            assert!(e.to_string().contains("second derivatives"), "{e}");
            continue;
        }
        let grads = autodiff::grad(&mut g, loss, &leaves).unwrap();
        for t in eval(&g, &grads, &case.feeds()).unwrap() {
            assert!(
                t.data.iter().all(|&v| v == 0.0),
                "{}: {:?}",
                case.golden.name,
                t.data
            );
        }
    }
}
