//! Data-parallel training (issue 14) inside one process: the split step (gradient plan,
//! all-reduce, update plan) on [`SingleProcess`] trains as the fused training step does, and
//! 2 and 4 ranks ([`ThreadGroup`], one device per rank) train as one process on the same
//! global batches — plain SGD, Adam with `clipnorm`, and an Embedding + LSTM model with input
//! and recurrent dropout (masks are functions of the sample's place in the global batch).
//! Two identical 2-rank runs give the same bits. The MPI transport is checked by
//! `crates/kiln/tests/mpi.rs` under `mpirun`.

mod common;
use common::{on_every_device, Device};

use kiln::{Collective, Fit, History, HostTensor, Sequential, SingleProcess, ThreadGroup};
use kiln_ir::testing::Tolerance;

// the models and data `kiln-dp check` trains under mpirun (crates/kiln/tests/mpi.rs); its
// benchmark models are not used here
#[allow(dead_code)]
#[path = "../../crates/kiln/src/bin/kiln_dp/models.rs"]
mod models;
use models::Model;

const MODELS: [Model; 3] = [Model::Sgd, Model::Adam, Model::Lstm];

fn build(device: Device, which: Model) -> Sequential {
    models::build(device(), which).unwrap()
}

/// 50 samples: global batches of 16, the last one short (2 rows: on 4 ranks, ranks 2 and 3
/// have no rows in that step).
fn data(which: Model) -> (HostTensor, HostTensor) {
    models::data(which, 50).unwrap()
}

fn fit_opts() -> Fit {
    Fit {
        epochs: 2,
        batch_size: 16,
        verbose: false,
        ..Fit::default()
    }
}

/// Trains `which` for 2 epochs (shuffled) over `group` (plain training for `None`); returns
/// the weights and the history.
fn train(
    device: Device,
    which: Model,
    group: Option<Box<dyn Collective>>,
) -> (Vec<Vec<f32>>, History) {
    let (x, y) = data(which);
    let mut m = build(device, which);
    if let Some(g) = group {
        m.distribute(g);
    }
    let h = m.fit(&x, &y, fit_opts()).unwrap();
    let w = m
        .get_weights()
        .unwrap()
        .iter()
        .map(|t| t.to_f32())
        .collect();
    (w, h)
}

/// Trains on `ranks` threads; returns every rank's result.
fn train_ranks(device: Device, which: Model, ranks: usize) -> Vec<(Vec<Vec<f32>>, History)> {
    let handles: Vec<_> = ThreadGroup::new(ranks)
        .into_iter()
        .map(|g| std::thread::spawn(move || train(device, which, Some(Box::new(g)))))
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn same_model(what: &str, a: &(Vec<Vec<f32>>, History), b: &(Vec<Vec<f32>>, History)) {
    for (i, (wa, wb)) in a.0.iter().zip(&b.0).enumerate() {
        let (wa, wb): (Vec<f64>, Vec<f64>) = (
            wa.iter().map(|&v| v.into()).collect(),
            wb.iter().map(|&v| v.into()).collect(),
        );
        Tolerance::f32_sum(256)
            .check(&format!("{what}: weight {i}"), &wa, &wb)
            .unwrap();
    }
    for key in ["loss", "accuracy"] {
        let (la, lb) = (&a.1.history[key], &b.1.history[key]);
        for (e, (p, q)) in la.iter().zip(lb).enumerate() {
            assert!(
                (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                "{what}: epoch {e} {key} {p} vs {q}"
            );
        }
    }
}

fn split_step_trains_as_the_fused_step(device: Device) {
    for which in MODELS {
        let fused = train(device, which, None);
        let split = train(device, which, Some(Box::new(SingleProcess)));
        same_model(&format!("{which:?} split vs fused"), &split, &fused);
    }
}
on_every_device!(split_step_trains_as_the_fused_step);

/// The models of the multi-rank tests on `device`: on lavapipe (every rank compiling its own
/// shaders for every shard size) the LSTM is left to the MPI test (`crates/kiln/tests/mpi.rs`
/// trains it on lavapipe on 2 and 4 ranks), which keeps this file's lavapipe run short.
fn multi_rank_models(device: Device) -> &'static [Model] {
    if device().limits().persistent_kernels {
        &MODELS
    } else {
        &MODELS[..2]
    }
}

fn ranks_train_as_one_process(device: Device) {
    for &which in multi_rank_models(device) {
        let one = train(device, which, None);
        for ranks in [2, 4] {
            let runs = train_ranks(device, which, ranks);
            for (r, run) in runs.iter().enumerate() {
                same_model(&format!("{which:?} {ranks} ranks, rank {r}"), run, &one);
                // the replicas hold the same bits
                assert_eq!(run.0, runs[0].0, "{which:?}: rank {r} differs from rank 0");
            }
        }
    }
}
on_every_device!(ranks_train_as_one_process);

fn ranks_repeat_bit_for_bit(device: Device) {
    let which = *multi_rank_models(device).last().unwrap();
    let a = train_ranks(device, which, 2);
    let b = train_ranks(device, which, 2);
    assert_eq!(a[0].0, b[0].0, "two identical 2-rank runs differ");
    assert_eq!(a[0].1.history["loss"], b[0].1.history["loss"]);
}
on_every_device!(ranks_repeat_bit_for_bit);

#[test]
fn shards_cover_the_batch_in_rank_order() {
    for (n, size) in [(16, 2), (16, 4), (2, 4), (7, 3), (0, 2)] {
        let mut next = 0;
        for r in 0..size {
            let s = kiln::shard_range(n, size, r);
            assert_eq!(s.start, next, "n {n} size {size} rank {r}");
            assert!(s.len() == n / size || s.len() == n / size + 1);
            next = s.end;
        }
        assert_eq!(next, n);
    }
}

/// With validation and file-writing callbacks on 2 ranks: the history (training and
/// validation logs, reduced across the ranks) equals one process's, rank 0 alone writes the
/// checkpoint and the CSV log, and an early stop decided on the reduced logs stops both ranks
/// after the same epoch.
#[test]
fn callbacks_validation_and_files_on_two_ranks() {
    use kiln::{CsvLogger, EarlyStopping, ModelCheckpoint};
    let dir = std::env::temp_dir().join(format!("kiln-dp-callbacks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fit = Fit {
        epochs: 6,
        batch_size: 16,
        validation_split: 0.25,
        verbose: false,
        ..Fit::default()
    };
    fn run(
        dir: std::path::PathBuf,
        fit: Fit,
        group: Option<ThreadGroup>,
        tag: &str,
    ) -> (History, bool, bool) {
        let (x, y) = data(Model::Adam);
        let mut m = build(common::native, Model::Adam);
        let rank = group.as_ref().map_or(0, |g| g.rank());
        if let Some(g) = group {
            m.distribute(Box::new(g));
        }
        let ckpt = dir.join(format!("{tag}-rank{rank}.safetensors"));
        let csv = dir.join(format!("{tag}-rank{rank}.csv"));
        let mut c = ModelCheckpoint::new(ckpt.to_str().unwrap());
        let mut l = CsvLogger::new(&csv, false);
        // a min_delta large enough to stop early on this data
        let mut e = EarlyStopping::new("val_loss").min_delta(0.05);
        let h = m
            .fit_with_callbacks(&x, &y, fit, &mut [&mut c, &mut l, &mut e])
            .unwrap();
        (h, ckpt.exists(), csv.exists())
    }
    let (one, _, _) = run(dir.clone(), fit.clone(), None, "one");
    let handles: Vec<_> = ThreadGroup::new(2)
        .into_iter()
        .map(|g| {
            let (dir, fit) = (dir.clone(), fit.clone());
            std::thread::spawn(move || run(dir, fit, Some(g), "two"))
        })
        .collect();
    let ranks: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let epochs = one.history["loss"].len();
    assert!(epochs < 6, "the early stop never fired: {:?}", one.history);
    for (r, (h, wrote_ckpt, wrote_csv)) in ranks.iter().enumerate() {
        assert_eq!(*wrote_ckpt, r == 0, "rank {r} checkpoint");
        assert_eq!(*wrote_csv, r == 0, "rank {r} CSV log");
        for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
            let (a, b) = (&h.history[key], &one.history[key]);
            assert_eq!(a.len(), b.len(), "rank {r}: {key} epochs");
            for (e, (p, q)) in a.iter().zip(b).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                    "rank {r} epoch {e} {key}: {p} vs one process {q}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A group of one (`mpirun -np 1`, `ThreadGroup::new(1)`) trains with the fused step: the same
/// bits as training without a group, and no gradient or update plan compiled.
#[test]
fn a_group_of_one_runs_the_fused_step() {
    for which in MODELS {
        let plain = train(common::native, which, None);
        let (x, y) = data(which);
        let mut m = build(common::native, which);
        let group = ThreadGroup::new(1).pop().unwrap();
        m.distribute(Box::new(group));
        let h = m.fit(&x, &y, fit_opts()).unwrap();
        let w: Vec<Vec<f32>> = m
            .get_weights()
            .unwrap()
            .iter()
            .map(|t| t.to_f32())
            .collect();
        assert_eq!(
            w, plain.0,
            "{which:?}: a group of one differs from plain training"
        );
        assert_eq!(h.history["loss"], plain.1.history["loss"]);
        assert!(
            m.plan_cache_log()
                .iter()
                .all(|(mode, _, _)| matches!(mode, kiln::Mode::Train | kiln::Mode::Evaluate)),
            "{which:?}: {:?}",
            m.plan_cache_log().iter().map(|l| l.0).collect::<Vec<_>>()
        );
    }
}
