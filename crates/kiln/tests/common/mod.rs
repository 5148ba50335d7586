//! What the `kiln train` tests share (`cli.rs` in one process, `mpi.rs` under mpirun).

use kiln::opt::interp::CpuBackend;
use kiln::{Activation, Dense, HostTensor, Loss, Metric, Sequential};
use std::path::{Path, PathBuf};

/// A `Dense(4, tanh) -> Dense(2, softmax)` model with Adam (seed 5, the reference interpreter)
/// saved to `dir/model.safetensors`, and `n` samples of 3 features and one-hot 2-class labels
/// written to `dir/x.npy` and `dir/y.npy`. Returns the model's path and the data.
pub fn train_setup(dir: &Path, n: usize) -> (PathBuf, HostTensor, HostTensor) {
    let mut m = Sequential::new(Box::new(CpuBackend::new())).seed(5);
    m.add(Dense::new(4).activation(Activation::Tanh).input_dim(3))
        .unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        kiln::Adam::new(0.05),
        &[Metric::Accuracy],
    )
    .unwrap();
    let model = dir.join("model.safetensors");
    m.save(&model).unwrap();
    let x = HostTensor::f32(
        [n, 3],
        (0..3 * n).map(|i| (i % 5) as f32 / 3.0 - 0.6).collect(),
    )
    .unwrap();
    let y = HostTensor::f32(
        [n, 2],
        (0..n)
            .flat_map(|i| if i % 3 == 0 { [1.0, 0.0] } else { [0.0, 1.0] })
            .collect(),
    )
    .unwrap();
    kiln::npy::write(&dir.join("x.npy"), &x).unwrap();
    kiln::npy::write(&dir.join("y.npy"), &y).unwrap();
    (model, x, y)
}
