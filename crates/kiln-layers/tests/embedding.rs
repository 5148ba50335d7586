//! Embedding and OneHot as first layers: predictions are the table's rows (read back with
//! `get_weights`) and one-hot vectors; indices that are not whole numbers in range are a
//! clear error naming the layer, before anything runs.

use kiln_layers::{Embedding, HostTensor, LayerError, OneHot, Sequential};
use kiln_opt::interp::CpuBackend;

#[test]
fn embedding_rows_one_hot_vectors_and_bad_indices() {
    let mut m = Sequential::new(Box::new(CpuBackend::new())).seed(3);
    m.add(Embedding::new(10, 4).input_length(3)).unwrap();
    let x = HostTensor::f32([2, 3], vec![0.0, 9.0, 4.0, 4.0, 4.0, 1.0]).unwrap();
    let y = m.predict(&x, 2).unwrap().to_f32();
    let table = m.get_weights().unwrap()[0].to_f32();
    for (p, &i) in [0usize, 9, 4, 4, 4, 1].iter().enumerate() {
        assert_eq!(
            &y[p * 4..(p + 1) * 4],
            &table[i * 4..(i + 1) * 4],
            "position {p}"
        );
    }
    for bad in [10.0, -1.0, 2.5, f32::NAN] {
        let x = HostTensor::f32([1, 3], vec![1.0, bad, 0.0]).unwrap();
        match m.predict(&x, 1) {
            Err(LayerError::Data(msg)) => {
                assert!(
                    msg.contains("embedding_1") && msg.contains("0..10"),
                    "{msg}"
                )
            }
            other => panic!("{bad}: expected a data error, got {other:?}"),
        }
    }

    let mut o = Sequential::new(Box::new(CpuBackend::new()));
    o.add(OneHot::new(5).input_length(2)).unwrap();
    let x = HostTensor::f32([1, 2], vec![3.0, 0.0]).unwrap();
    assert_eq!(
        o.predict(&x, 1).unwrap().to_f32(),
        vec![0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    );
    let x = HostTensor::f32([1, 2], vec![5.0, 0.0]).unwrap();
    assert!(matches!(o.predict(&x, 1), Err(LayerError::Data(_))));
}
