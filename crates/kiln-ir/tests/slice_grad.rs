//! Slices of one tensor differentiate into one concat of their adjoints (the shape of an
//! LSTM's gate split), and the values match finite differences.

use kiln_ir::eval::{eval, Tensor};
use kiln_ir::{autodiff, verify, DType, Graph, Op};

fn feeds(x: &[f64]) -> kiln_ir::eval::Feeds {
    [("x".to_string(), Tensor::new([2, 8], x.to_vec()).unwrap())]
        .into_iter()
        .collect()
}

/// `loss = Σ w ⊙ (sigmoid(x[:, 0:2]) * tanh(x[:, 4:6]) + x[:, 6:8]²)` — columns 2..4 unused.
fn build() -> (Graph, kiln_ir::NodeId, kiln_ir::NodeId) {
    let mut g = Graph::new();
    let x = g.input("x", [2, 8], DType::F32).unwrap();
    let a = g.slice(x, 1, 0, 2).unwrap();
    let c = g.slice(x, 1, 4, 2).unwrap();
    let d = g.slice(x, 1, 6, 2).unwrap();
    let sa = g.sigmoid(a).unwrap();
    let tc = g.tanh(c).unwrap();
    let p = g.mul(sa, tc).unwrap();
    let d2 = g.mul(d, d).unwrap();
    let s = g.add(p, d2).unwrap();
    let w = g
        .constant(vec![0.3, -0.7, 1.1, 0.4], [2, 2], DType::F32)
        .unwrap();
    let sw = g.mul(s, w).unwrap();
    let loss = g.sum_all(sw).unwrap();
    (g, x, loss)
}

#[test]
fn disjoint_slices_give_one_concat_with_zero_gaps() {
    let (mut g, x, loss) = build();
    let dx = autodiff::grad(&mut g, loss, &[x]).unwrap()[0];
    verify(&g).unwrap();
    let n = g.node(dx);
    assert!(matches!(n.op, Op::Concat { axis: 1 }), "{:?}", n.op);
    // pieces 0..2, zeros 2..4, 4..6, 6..8
    assert_eq!(n.inputs.len(), 4);
    assert!(matches!(g.node(n.inputs[1]).op, Op::Constant(_)));

    let x0: Vec<f64> = (0..16).map(|i| 0.37 * i as f64 - 2.1).collect();
    let got = eval(&g, &[dx], &feeds(&x0)).unwrap().remove(0).data;
    let eps = 1e-6;
    for i in 0..16 {
        let mut xp = x0.clone();
        xp[i] += eps;
        let mut xm = x0.clone();
        xm[i] -= eps;
        let lp = eval(&g, &[loss], &feeds(&xp)).unwrap()[0].data[0];
        let lm = eval(&g, &[loss], &feeds(&xm)).unwrap()[0].data[0];
        let fd = (lp - lm) / (2.0 * eps);
        assert!(
            (fd - got[i]).abs() < 1e-6,
            "element {i}: {} vs {fd}",
            got[i]
        );
        if i % 8 == 2 || i % 8 == 3 {
            assert_eq!(got[i], 0.0, "unused column {i}");
        }
    }
}

#[test]
fn overlapping_slices_are_summed() {
    let mut g = Graph::new();
    let x = g.input("x", [2, 8], DType::F32).unwrap();
    let a = g.slice(x, 1, 0, 5).unwrap();
    let b = g.slice(x, 1, 3, 5).unwrap();
    let p = g.mul(a, b).unwrap();
    let loss = g.sum_all(p).unwrap();
    let dx = autodiff::grad(&mut g, loss, &[x]).unwrap()[0];
    verify(&g).unwrap();
    let x0: Vec<f64> = (0..16).map(|i| 0.1 * i as f64 - 0.4).collect();
    let got = eval(&g, &[dx], &feeds(&x0)).unwrap().remove(0).data;
    // d/dx[r, j] of Σ_k x[r,k] x[r,k+3] = x[r, j+3] (j < 5) + x[r, j-3] (j >= 3)
    for r in 0..2 {
        for j in 0..8 {
            let mut want = 0.0;
            if j < 5 {
                want += x0[r * 8 + j + 3];
            }
            if j >= 3 {
                want += x0[r * 8 + j - 3];
            }
            assert!((got[r * 8 + j] - want).abs() < 1e-12, "[{r},{j}]");
        }
    }
}
