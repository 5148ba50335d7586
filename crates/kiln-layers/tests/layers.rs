//! `Flatten`, `ActivationLayer` (Keras `Activation`) and `InputLayer`: numbers against
//! hand-computed references, `summary()` rows, errors, JSON and file round trips, and the
//! `to_dot()` / `plot_model` diagram.

use kiln_layers::{
    load_model, Activation, ActivationLayer, Dense, Flatten, HostTensor, Input, InputLayer,
    LayerError, Loss, Metric, Sequential, Sgd,
};
use kiln_opt::interp::CpuBackend;
use std::path::Path;

fn cpu() -> Box<CpuBackend> {
    Box::new(CpuBackend::new())
}

fn t(shape: &[usize], v: &[f64]) -> HostTensor {
    HostTensor::f32(shape.to_vec(), v.iter().map(|&x| x as f32).collect()).unwrap()
}

/// Kernel `[6, 2]`, row-major.
const K: [f64; 12] = [
    0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0.9, 1.0, -1.1, 1.2,
];
const BIAS: [f64; 2] = [0.05, -0.05];
/// Two samples of shape [2, 3].
const XS: [f64; 12] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -1.0, 0.5, 0.0, 2.0, -3.0, 1.5];

/// `x_flat · K + b` per sample, by hand.
fn hand_dense() -> Vec<[f64; 2]> {
    XS.chunks(6)
        .map(|x| {
            let mut z = BIAS;
            for (i, xi) in x.iter().enumerate() {
                z[0] += xi * K[2 * i];
                z[1] += xi * K[2 * i + 1];
            }
            z
        })
        .collect()
}

fn flatten_model() -> Sequential {
    let mut m = Sequential::new(cpu());
    m.add(InputLayer::new(&[2, 3])).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(2)).unwrap();
    m.add(ActivationLayer::new(Activation::Softmax)).unwrap();
    m.set_weights(&[t(&[6, 2], &K), t(&[2], &BIAS)]).unwrap();
    m
}

#[test]
fn flatten_then_dense_then_softmax_layer() {
    let mut m = flatten_model();
    assert_eq!(m.input_shape(), Some(&[2usize, 3][..]));
    assert_eq!(m.output_shape(), Some(&[2usize][..]));
    let p = m.predict(&t(&[2, 2, 3], &XS), 2).unwrap().to_f64();
    for (s, z) in hand_dense().iter().enumerate() {
        let e = [z[0].exp(), z[1].exp()];
        for j in 0..2 {
            let want = e[j] / (e[0] + e[1]);
            assert!((p[2 * s + j] - want).abs() < 1e-6, "{p:?} vs {want}");
        }
    }
}

#[test]
fn softmax_activation_layer_gives_the_loss_logits() {
    // categorical crossentropy through a separate softmax layer: the stable from-logits
    // form, equal to -mean log softmax(z)[c]; labels [1, 0] then [0, 1]
    let mut m = flatten_model();
    m.compile(
        Loss::CategoricalCrossentropy,
        Sgd::new(0.1),
        &[Metric::Accuracy],
    )
    .unwrap();
    m.set_weights(&[t(&[6, 2], &K), t(&[2], &BIAS)]).unwrap();
    let z = hand_dense();
    let lsm = |z: &[f64; 2], c: usize| z[c] - (z[0].exp() + z[1].exp()).ln();
    let want = -(lsm(&z[0], 0) + lsm(&z[1], 1)) / 2.0;
    let logs = m
        .evaluate(&t(&[2, 2, 3], &XS), &t(&[2, 2], &[1.0, 0.0, 0.0, 1.0]), 2)
        .unwrap();
    assert!(
        (logs["loss"] - want).abs() < 1e-5,
        "{} vs {want}",
        logs["loss"]
    );
    // the graph computes the loss from the logits: no clip at 1e-7 even for a sure miss
    let far: Vec<f64> = XS.iter().map(|v| v * 30.0).collect();
    let zf: Vec<[f64; 2]> = far
        .chunks(6)
        .map(|x| {
            let mut z = BIAS;
            for (i, xi) in x.iter().enumerate() {
                z[0] += xi * K[2 * i];
                z[1] += xi * K[2 * i + 1];
            }
            z
        })
        .collect();
    // label the less likely class of sample 0
    let c0 = if zf[0][0] < zf[0][1] { 0 } else { 1 };
    let lsm_f = |z: &[f64; 2], c: usize| {
        let m = z[0].max(z[1]);
        z[c] - m - ((z[0] - m).exp() + (z[1] - m).exp()).ln()
    };
    let want = -lsm_f(&zf[0], c0);
    assert!(
        want > -(1e-7f64).ln(),
        "the miss is beyond the clip: {want}"
    );
    let y = if c0 == 0 { [1.0, 0.0] } else { [0.0, 1.0] };
    let logs = m
        .evaluate(&t(&[1, 2, 3], &far[..6]), &t(&[1, 2], &y), 1)
        .unwrap();
    assert!(
        (logs["loss"] - want).abs() < 1e-4 * want,
        "{} vs {want}",
        logs["loss"]
    );
}

#[test]
fn summary_has_no_input_row() {
    let m = flatten_model();
    let s = m.summary();
    assert!(!s.contains("input_1") && !s.contains("InputLayer"), "{s}");
    let rows: Vec<&str> = s
        .lines()
        .filter(|l| l.contains(" (") && l.contains("(None"))
        .collect();
    assert_eq!(rows.len(), 3, "{s}");
    assert!(rows[0].starts_with("flatten_1 (Flatten)") && rows[0].contains("(None, 6)"));
    assert!(rows[0].trim_end().ends_with(" 0"), "{}", rows[0]);
    assert!(rows[1].starts_with("dense_1 (Dense)") && rows[1].trim_end().ends_with("14"));
    assert!(rows[2].starts_with("activation_1 (Activation)") && rows[2].contains("(None, 2)"));
    assert!(s.contains("Total params: 14"), "{s}");
}

#[test]
fn input_layer_does_not_change_the_initial_weights() {
    let mut a = Sequential::new(cpu()).seed(5);
    a.add(Input::new(&[4])).unwrap();
    a.add(Dense::new(3)).unwrap();
    let mut b = Sequential::new(cpu()).seed(5);
    b.add(Dense::new(3).input_dim(4)).unwrap();
    assert_eq!(a.get_weights().unwrap(), b.get_weights().unwrap());
}

#[test]
fn shape_errors_name_the_layer_and_hint() {
    // no input shape anywhere
    let mut m = Sequential::new(cpu());
    let e = m.add(Flatten::new()).unwrap_err().to_string();
    assert!(e.contains("flatten_1") && e.contains("InputLayer"), "{e}");
    // InputLayer after another layer
    let mut m = Sequential::new(cpu());
    m.add(Dense::new(3).input_dim(4)).unwrap();
    let e = m.add(InputLayer::new(&[3])).unwrap_err();
    assert!(matches!(e, LayerError::Shape { .. }));
    let e = e.to_string();
    assert!(e.contains("input_1") && e.contains("first layer"), "{e}");
    // Dense's input_dim disagrees with the InputLayer
    let mut m = Sequential::new(cpu());
    m.add(InputLayer::new(&[5])).unwrap();
    let e = m.add(Dense::new(3).input_dim(4)).unwrap_err().to_string();
    assert!(
        e.contains("dense_1") && e.contains('4') && e.contains('5'),
        "{e}"
    );
    // Dense on an unflattened input
    let mut m = Sequential::new(cpu());
    m.add(InputLayer::new(&[2, 3])).unwrap();
    let e = m.add(Dense::new(3)).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("Flatten"), "{e}");
    // Flatten's own input_shape disagrees with what it receives
    let mut m = Sequential::new(cpu());
    m.add(Dense::new(6).input_dim(4)).unwrap();
    let e = m
        .add(Flatten::new().input_shape(&[2, 3]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("flatten_1") && e.contains("[2, 3]") && e.contains("[6]"),
        "{e}"
    );
    // empty axes
    let mut m = Sequential::new(cpu());
    let e = m.add(InputLayer::new(&[3, 0])).unwrap_err().to_string();
    assert!(e.contains("input_1") && e.contains("size 0"), "{e}");
    // x of the wrong shape at predict
    let mut m = flatten_model();
    let e = m
        .predict(&t(&[1, 6], &[0.0; 6]), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[n, 2, 3]"), "{e}");
}

#[test]
fn first_layer_input_shapes_and_activation_layer_first() {
    let mut m = Sequential::new(cpu());
    m.add(ActivationLayer::new(Activation::Relu).input_shape(&[3]))
        .unwrap();
    m.add(Flatten::new()).unwrap();
    let y = m.predict(&t(&[1, 3], &[-1.0, 0.5, 2.0]), 1).unwrap();
    assert_eq!(y.to_f64(), vec![0.0, 0.5, 2.0]);
}

#[test]
fn json_and_file_round_trips() {
    let mut m = Sequential::new(cpu()).seed(3);
    m.add(InputLayer::new(&[2, 3])).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(4)).unwrap();
    m.add(ActivationLayer::new(Activation::Gelu)).unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Sgd::new(0.1),
        &[Metric::Accuracy],
    )
    .unwrap();
    let json = m.to_json();
    for class in [
        "\"InputLayer\"",
        "\"Flatten\"",
        "\"Activation\"",
        "\"gelu\"",
    ] {
        assert!(json.contains(class), "{class} missing from {json}");
    }
    let m2 = Sequential::from_json(&json, cpu()).unwrap();
    assert_eq!(m2.config(), m.config());
    assert_eq!(m2.summary(), m.summary());

    let dir = std::env::temp_dir().join(format!("kiln-layers-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("layers.safetensors");
    m.save(&path).unwrap();
    let mut m3 = load_model(&path, cpu()).unwrap();
    let x = t(&[2, 2, 3], &XS);
    let (a, b) = (m.predict(&x, 2).unwrap(), m3.predict(&x, 2).unwrap());
    assert!(a
        .to_f32()
        .iter()
        .zip(b.to_f32())
        .all(|(p, q)| p.to_bits() == q.to_bits()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dot_text_lists_layers_with_shapes() {
    let mut m = Sequential::new(cpu());
    m.add(Dense::new(8).input_dim(4).activation(Activation::Relu))
        .unwrap();
    m.add(Dense::new(3)).unwrap();
    m.add(ActivationLayer::new(Activation::Softmax)).unwrap();
    let want = r#"digraph model {
  graph [rankdir=TB, dpi=96];
  node [shape=record, fontname="Helvetica"];
  "dense_1_input" [label="dense_1_input: InputLayer|{input:|output:}|{{[(None, 4)]}|{[(None, 4)]}}"];
  "dense_1" [label="dense_1: Dense|{input:|output:}|{{(None, 4)}|{(None, 8)}}"];
  "dense_2" [label="dense_2: Dense|{input:|output:}|{{(None, 8)}|{(None, 3)}}"];
  "activation_1" [label="activation_1: Activation|{input:|output:}|{{(None, 3)}|{(None, 3)}}"];
  "dense_1_input" -> "dense_1";
  "dense_1" -> "dense_2";
  "dense_2" -> "activation_1";
}
"#;
    assert_eq!(m.to_dot(), want);
    // an explicit InputLayer is its own node, not doubled
    let dot = flatten_model().to_dot();
    assert!(
        dot.contains("\"input_1\" [label=\"input_1: InputLayer|"),
        "{dot}"
    );
    assert!(!dot.contains("_input\""), "{dot}");
    assert!(dot.contains("\"input_1\" -> \"flatten_1\";"), "{dot}");
}

#[test]
fn plot_model_needs_graphviz() {
    let m = flatten_model();
    let dir = std::env::temp_dir().join(format!("kiln-plot-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("model.png");
    // a program that does not exist: a typed error with the fix
    let e = m
        .plot_model_with(&png, Path::new("/nonexistent/graphviz/dot"))
        .unwrap_err();
    assert!(matches!(e, LayerError::Graphviz(_)), "{e}");
    assert!(e.to_string().contains("install Graphviz"), "{e}");
    // a program that fails: its status in the error
    let e = m.plot_model_with(&png, Path::new("false")).unwrap_err();
    assert!(
        matches!(e, LayerError::Graphviz(_)) && e.to_string().contains("failed"),
        "{e}"
    );
    // the real thing: a PNG where Graphviz is installed, the typed error where it is not
    let dot_installed = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("dot").is_file()));
    match m.plot_model(&png) {
        Ok(()) => {
            assert!(dot_installed);
            let bytes = std::fs::read(&png).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
        Err(e) => {
            assert!(!dot_installed, "dot is installed but failed: {e}");
            assert!(matches!(e, LayerError::Graphviz(_)) && e.to_string().contains("not found"));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
