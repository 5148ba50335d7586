//! Bad shapes and dtypes give typed errors naming the op, the scope and the shapes.

use kiln_ir::{DType, Graph, IrError};

#[test]
fn matmul_inner_dim_mismatch_names_layer_and_shapes() {
    let mut g = Graph::new();
    let x = g.input("x", [4, 784], DType::F32).unwrap();
    let w = g.param("w", [28, 10], DType::F32).unwrap();
    let err = g.scoped("dense_1", |g| g.matmul(x, w)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, IrError::Shape { op: "matmul", .. }),
        "{err:?}"
    );
    assert!(msg.contains("dense_1/matmul"), "{msg}");
    assert!(
        msg.contains("[4, 784]") && msg.contains("[28, 10]"),
        "{msg}"
    );
    assert!(msg.contains("784 vs 28"), "{msg}");
}

#[test]
fn broadcast_and_dtype_errors() {
    let mut g = Graph::new();
    let a = g.input("a", [2, 3], DType::F32).unwrap();
    let b = g.input("b", [4], DType::F32).unwrap();
    let i = g.input("i", [2, 3], DType::I32).unwrap();
    assert!(matches!(g.add(a, b), Err(IrError::Shape { op: "add", .. })));
    assert!(matches!(g.add(a, i), Err(IrError::DType { op: "add", .. })));
    assert!(matches!(g.exp(i), Err(IrError::DType { op: "exp", .. })));
    assert!(matches!(
        g.reshape(a, [5]),
        Err(IrError::Shape { op: "reshape", .. })
    ));
    assert!(matches!(
        g.sum(a, &[2], true),
        Err(IrError::Attribute { op: "sum", .. })
    ));
    assert!(matches!(
        g.permute(a, &[0, 0]),
        Err(IrError::Shape { op: "permute", .. })
    ));
    assert!(matches!(
        g.input("a", [1], DType::F32),
        Err(IrError::Attribute { .. })
    ));
    let c = g.add(a, b);
    assert!(c.is_err());
    // broadcasting that is legal
    let r = g.input("r", [3], DType::F32).unwrap();
    let s = g.add(a, r).unwrap();
    assert_eq!(g.shape(s).dims(), &[2, 3]);
}

#[test]
fn assign_checks_target_and_shape() {
    let mut g = Graph::new();
    let w = g.param("w", [2], DType::F32).unwrap();
    let x = g.input("x", [3], DType::F32).unwrap();
    assert!(g.assign(x, x).is_err());
    assert!(g.assign(w, x).is_err());
    let w2 = g.mul_scalar(w, 2.0).unwrap();
    g.assign(w, w2).unwrap();
    assert!(g.assign(w, w2).is_err());
}
