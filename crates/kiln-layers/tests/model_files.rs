//! Model files: a tensor the structure needs and the file lacks is an error naming it (never
//! a random weight); shape mismatches name the file's and the structure's shapes the right
//! way round; saves are byte-reproducible; per-tensor checksums catch corruption (files
//! without them still load); non-regular files are refused. Nothing on disk changes.

use kiln_layers::io::CHECKSUM_KEY;
use kiln_layers::{
    load_model, Activation, Adam, Dense, Fit, HostTensor, LayerError, Loss, ModelFileError,
    Sequential,
};
use kiln_opt::interp::CpuBackend;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn cpu() -> Box<dyn kiln_opt::Backend> {
    Box::new(CpuBackend::new())
}

fn trained() -> Sequential {
    let mut m = Sequential::new(cpu()).seed(4);
    m.add(Dense::new(4).activation(Activation::Relu).input_dim(3))
        .unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(Loss::CategoricalCrossentropy, Adam::new(0.01), &[])
        .unwrap();
    let x = HostTensor::f32([4, 3], (0..12).map(|i| i as f32 / 6.0 - 1.0).collect()).unwrap();
    let y = HostTensor::f32([4, 2], vec![1., 0., 0., 1., 1., 0., 0., 1.]).unwrap();
    let fit = Fit {
        epochs: 2,
        batch_size: 2,
        verbose: false,
        ..Fit::default()
    };
    m.fit(&x, &y, fit).unwrap();
    m
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-model-files-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Rewrites the safetensors file at `path` through `edit(name) -> Option<(shape, f32 data)>`
/// (None drops the tensor) and `meta` (the metadata map), with the safetensors crate.
fn rewrite(
    path: &Path,
    edit: impl Fn(&str, Vec<usize>, Vec<f32>) -> Option<(Vec<usize>, Vec<f32>)>,
    meta: impl Fn(&mut HashMap<String, String>),
) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut md = m.metadata().clone().unwrap();
    meta(&mut md);
    let mut kept: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
    for (name, v) in st.tensors() {
        let data: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some((shape, d)) = edit(&name, v.shape().to_vec(), data) {
            kept.push((
                name,
                shape,
                d.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = kept
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, Some(md)).unwrap()).unwrap();
}

fn model_file_error(path: &Path) -> ModelFileError {
    let before = std::fs::read(path).unwrap();
    let e = match load_model(path, cpu()) {
        Err(LayerError::ModelFile { path: p, error }) => {
            assert_eq!(p, path);
            error
        }
        Err(e) => panic!("expected a ModelFile error, got {e:?}"),
        Ok(_) => panic!("{} loaded", path.display()),
    };
    assert_eq!(std::fs::read(path).unwrap(), before, "the file changed");
    e
}

#[test]
fn a_missing_weight_is_an_error_naming_it() {
    let d = dir("missing");
    let p = d.join("m.safetensors");
    trained().save(&p).unwrap();
    rewrite(
        &p,
        |n, s, v| (n != "dense_2/kernel").then_some((s, v)),
        |m| {
            m.remove(CHECKSUM_KEY);
        },
    );
    match model_file_error(&p) {
        ModelFileError::MissingTensor { name, shape } => {
            assert_eq!((name.as_str(), shape), ("dense_2/kernel", vec![4, 2]))
        }
        e => panic!("expected MissingTensor, got {e:?}"),
    }
}

#[test]
fn a_shape_mismatch_names_the_file_and_the_structure_shapes() {
    let d = dir("shape");
    let p = d.join("m.safetensors");
    trained().save(&p).unwrap();
    rewrite(
        &p,
        |n, s, v| {
            Some(if n == "dense_1/bias" {
                (vec![2, 2], v)
            } else {
                (s, v)
            })
        },
        |m| {
            m.remove(CHECKSUM_KEY);
        },
    );
    let e = model_file_error(&p);
    assert!(
        matches!(&e, ModelFileError::TensorShape { name, found, declared }
            if name == "dense_1/bias" && found == &vec![2, 2] && declared == &vec![4]),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("shape [2, 2] in the file") && msg.contains("declares [4]"),
        "{msg}"
    );
}

#[test]
fn saves_are_byte_reproducible_and_survive_a_round_trip() {
    let d = dir("repro");
    let (a, b, c) = (d.join("a"), d.join("b"), d.join("c"));
    let mut m = trained();
    m.save(&a).unwrap();
    m.save(&b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // another process order of the same model: rebuild and save again
    let mut l = load_model(&a, cpu()).unwrap();
    l.save(&c).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    // the standard reader sees every tensor and the checksum table
    let bytes = std::fs::read(&a).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.names().contains(&"dense_1/kernel"));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert!(meta.metadata().as_ref().unwrap().contains_key(CHECKSUM_KEY));
}

#[test]
fn a_corrupt_tensor_fails_its_checksum() {
    let d = dir("checksum");
    let p = d.join("m.safetensors");
    trained().save(&p).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1; // data of the last tensor in name order
    bytes[last] ^= 0x40;
    std::fs::write(&p, &bytes).unwrap();
    match model_file_error(&p) {
        ModelFileError::Checksum {
            name,
            stored,
            actual,
        } => {
            assert_eq!(name, "optimizer/learning_rate");
            assert_ne!(stored, actual);
        }
        e => panic!("expected Checksum, got {e:?}"),
    }
}

#[test]
fn files_without_checksums_still_load() {
    let d = dir("nosum");
    let p = d.join("m.safetensors");
    let mut m = trained();
    m.save(&p).unwrap();
    rewrite(
        &p,
        |_, s, v| Some((s, v)),
        |m| {
            m.remove(CHECKSUM_KEY);
        },
    );
    let mut l = load_model(&p, cpu()).unwrap();
    assert_eq!(l.get_weights().unwrap(), m.get_weights().unwrap());
}

#[test]
fn a_checksum_table_must_cover_the_tensors() {
    let d = dir("table");
    let p = d.join("m.safetensors");
    trained().save(&p).unwrap();
    rewrite(
        &p,
        |_, s, v| Some((s, v)),
        |m| {
            m.insert(CHECKSUM_KEY.into(), "{}".into());
        },
    );
    let e = model_file_error(&p);
    assert!(matches!(e, ModelFileError::Checksums(_)), "{e:?}");
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_not_read_forever() {
    let d = dir("fifo");
    let p = d.join("m.safetensors");
    let ok = std::process::Command::new("mkfifo").arg(&p).status();
    if !ok.is_ok_and(|s| s.success()) {
        return; // no mkfifo on this system
    }
    match load_model(&p, cpu()) {
        Err(LayerError::ModelFile {
            error: ModelFileError::Io(m),
            ..
        }) => assert!(m.contains("not a regular file"), "{m}"),
        other => panic!("expected Io, got {:?}", other.err()),
    }
}

#[test]
fn rewriting_tensors_with_model_file_bytes_keeps_the_file_loadable() {
    // what `kiln train` does: new tensor values under the old file's metadata (whose
    // checksum table is stale); model_file_bytes writes a fresh one
    let d = dir("rewrite");
    let p = d.join("m.safetensors");
    let mut m = trained();
    m.save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = kiln_layers::saved_variables(&bytes)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            let v: Vec<f32> = t.to_f32().iter().map(|x| x * 0.5).collect();
            let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n, t.shape.dims().to_vec(), b)
        })
        .collect();
    let out = kiln_layers::io::model_file_bytes(&tensors, meta.clone()).unwrap();
    assert_eq!(
        out,
        kiln_layers::io::model_file_bytes(&tensors, meta).unwrap()
    );
    std::fs::write(&p, &out).unwrap();
    let mut l = load_model(&p, cpu()).unwrap();
    let halved: Vec<Vec<f32>> = m
        .get_weights()
        .unwrap()
        .iter()
        .map(|t| t.to_f32().iter().map(|x| x * 0.5).collect())
        .collect();
    let got: Vec<Vec<f32>> = l
        .get_weights()
        .unwrap()
        .iter()
        .map(|t| t.to_f32())
        .collect();
    assert_eq!(got, halved);
}
