//! Model I/O: JSON structure round trip; save / load_model restores a model that predicts
//! bit-identically and resumes training exactly (weights, Adam state, step counter).

use kiln_layers::{load_model, Activation, Adam, Dense, Fit, HostTensor, Loss, Metric, Sequential};
use kiln_opt::interp::CpuBackend;

fn cpu() -> Box<dyn kiln_opt::Backend> {
    Box::new(CpuBackend::new())
}

fn model() -> Sequential {
    let mut m = Sequential::new(cpu()).seed(9);
    m.add(Dense::new(5).activation(Activation::Relu).input_dim(3))
        .unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Adam::new(0.01),
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

fn data() -> (HostTensor, HostTensor) {
    let x = HostTensor::f32(
        [8, 3],
        (0..24).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect(),
    )
    .unwrap();
    let y = HostTensor::f32(
        [8, 2],
        (0..8)
            .flat_map(|i| if i % 3 == 0 { [1.0, 0.0] } else { [0.0, 1.0] })
            .collect(),
    )
    .unwrap();
    (x, y)
}

fn fit(epochs: usize) -> Fit {
    Fit {
        epochs,
        batch_size: 4,
        shuffle: false,
        verbose: false,
        ..Fit::default()
    }
}

#[test]
fn json_round_trip_rebuilds_the_same_structure() {
    let m = model();
    let json = m.to_json();
    assert!(
        json.contains("\"class_name\": \"Dense\"")
            && json.contains("\"Adam\"")
            && json.contains("categorical_crossentropy"),
        "{json}"
    );
    let back = Sequential::from_json(&json, cpu()).unwrap();
    assert_eq!(back.to_json(), json);
    assert_eq!(back.summary(), m.summary());
    assert!(Sequential::from_json("{\"class_name\": \"Functional\"}", cpu()).is_err());
    assert!(Sequential::from_json("not json", cpu()).is_err());
}

#[test]
fn save_and_load_resume_training_exactly() {
    let dir = std::env::temp_dir().join(format!("kiln-model-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let (x, y) = data();
    // reference: 4 epochs in one go
    let mut a = model();
    a.fit(&x, &y, fit(4)).unwrap();
    // 2 epochs, save, load, 2 more
    let mut b = model();
    b.fit(&x, &y, fit(2)).unwrap();
    b.save(&path).unwrap();
    let mut c = load_model(&path, cpu()).unwrap();
    assert_eq!(
        c.predict(&x, 8).unwrap(),
        b.predict(&x, 8).unwrap(),
        "reloaded model predicts differently"
    );
    c.fit(&x, &y, fit(2)).unwrap();
    assert_eq!(
        c.get_weights().unwrap(),
        a.get_weights().unwrap(),
        "training did not resume exactly"
    );
    // errors name the file
    std::fs::write(dir.join("bad.safetensors"), b"nope").unwrap();
    let e = load_model(dir.join("bad.safetensors"), cpu())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("bad.safetensors"), "{e}");
    let e = load_model(dir.join("missing.safetensors"), cpu())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
