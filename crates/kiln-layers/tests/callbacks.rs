//! Callbacks against Keras's rules and hand-derived numbers (CPU plan interpreter).
//!
//! The reference model: `Dense(1)` linear, mean squared error, SGD, weights `w = 0, b = 0`,
//! training data `x = [1, 2]`, `y = [2, 4]` in one batch. By hand, one step with learning
//! rate `lr`: `p = 0`, loss `((0-2)² + (0-4)²) / 2 = 10`, `dL/dp_i = p_i - y_i = [-2, -4]`,
//! `dL/dw = Σ x_i dL/dp_i = -10`, `dL/db = -6`, so `w = 10 lr`, `b = 6 lr`.

use kiln_layers::{
    Activation, Callback, CallbackContext, CsvLogger, Dense, EarlyStopping, Fit, HostTensor,
    LambdaCallback, Logs, Loss, Metric, Mode, ModelCheckpoint, MonitorMode, ProgressBar,
    ReduceLrOnPlateau, Sequential, Sgd, TerminateOnNan, Verbosity, LR_VARIABLE,
};
use kiln_opt::interp::CpuBackend;
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

fn t(shape: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::f32(shape.to_vec(), v.to_vec()).unwrap()
}

fn linear(lr: f32) -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(1).activation(Activation::Linear).input_dim(1))
        .unwrap();
    m.compile(Loss::MeanSquaredError, Sgd::new(lr), &[])
        .unwrap();
    m.set_weights(&[t(&[1, 1], &[0.0]), t(&[1], &[0.0])])
        .unwrap();
    m
}

fn data() -> (HostTensor, HostTensor) {
    (t(&[2, 1], &[1.0, 2.0]), t(&[2, 1], &[2.0, 4.0]))
}

/// Validation targets of the opposite sign: every training step moves away from them, so the
/// validation loss is best after the first epoch.
fn opposite() -> (HostTensor, HostTensor) {
    (t(&[2, 1], &[1.0, 2.0]), t(&[2, 1], &[-2.0, -4.0]))
}

fn fit(epochs: usize, validation: bool) -> Fit {
    Fit {
        epochs,
        batch_size: 2,
        shuffle: false,
        verbose: false,
        validation_data: validation.then(opposite),
        ..Fit::default()
    }
}

fn logs(pairs: &[(&str, f64)]) -> Logs {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Drives `cb` through epochs with scripted logs; returns the epoch at which it asked to stop.
fn drive(cb: &mut dyn Callback, monitor: &str, values: &[f64]) -> Option<usize> {
    let mut m = linear(0.1);
    let mut ctx = CallbackContext::new(&mut m);
    cb.on_train_begin(&mut ctx).unwrap();
    for (epoch, v) in values.iter().enumerate() {
        let mut l = logs(&[("loss", 1.0), (monitor, *v)]);
        cb.on_epoch_end(&mut ctx, epoch, &mut l).unwrap();
        if ctx.stop_requested() {
            return Some(epoch);
        }
    }
    None
}

#[test]
fn early_stopping_stops_where_keras_does_on_scripted_values() {
    // Keras: wait += 1 each epoch, reset on improvement; stop when wait >= patience (epoch > 0).
    // best 1.0 (e0), 0.9 (e1, wait 0), 0.95 (wait 1), 0.92 (wait 2 -> stop at epoch 3)
    let mut es = EarlyStopping::new("val_loss").patience(2);
    assert_eq!(
        drive(&mut es, "val_loss", &[1.0, 0.9, 0.95, 0.92, 0.91, 0.5]),
        Some(3)
    );
    assert_eq!(
        (es.stopped_epoch(), es.best(), es.best_epoch()),
        (3, 0.9, 1)
    );

    // min_delta 0.06: 0.95 is not 0.06 below 1.0, so patience 1 stops at epoch 1
    let mut es = EarlyStopping::new("val_loss").patience(1).min_delta(0.06);
    assert_eq!(drive(&mut es, "val_loss", &[1.0, 0.95, 0.5]), Some(1));

    // patience 0 still lets epoch 0 pass (Keras checks `epoch > 0`)
    let mut es = EarlyStopping::default();
    assert_eq!(drive(&mut es, "val_loss", &[1.0, 1.0]), Some(1));

    // auto mode on `val_accuracy` maximizes
    let mut es = EarlyStopping::new("val_accuracy").patience(2);
    assert_eq!(
        drive(&mut es, "val_accuracy", &[0.5, 0.6, 0.6, 0.55, 0.9]),
        Some(3)
    );
    // explicit min mode on the same values: 0.5 stays best, stop at epoch 2
    let mut es = EarlyStopping::new("val_accuracy")
        .patience(2)
        .mode(MonitorMode::Min);
    assert_eq!(drive(&mut es, "val_accuracy", &[0.5, 0.6, 0.6]), Some(2));

    // a missing monitor never stops
    let mut es = EarlyStopping::new("val_nope");
    assert_eq!(drive(&mut es, "val_loss", &[1.0, 2.0, 3.0]), None);
}

#[test]
fn early_stopping_restores_the_best_weights_in_a_real_fit() {
    let mut m = linear(0.1);
    let (x, y) = data();
    let mut es = EarlyStopping::new("val_loss")
        .patience(2)
        .restore_best_weights(true);
    let h = m
        .fit_with_callbacks(&x, &y, fit(10, true), &mut [&mut es])
        .unwrap();
    // val_loss rises every epoch: best at epoch 0, stop at epoch 2
    assert_eq!(es.stopped_epoch(), 2);
    assert_eq!(h.history["loss"].len(), 3);
    assert!((h.history["loss"][0] - 10.0).abs() < 1e-6);
    // after epoch 0: w = 1.0, b = 0.6; validation p = [1.6, 2.6] against [-2, -4]:
    // ((3.6)² + (6.6)²) / 2 = 28.26
    assert!((h.history["val_loss"][0] - 28.26).abs() < 1e-4);
    let w = m.get_weights().unwrap();
    assert!((w[0].to_f32()[0] - 1.0).abs() < 1e-6, "{w:?}");
    assert!((w[1].to_f32()[0] - 0.6).abs() < 1e-6, "{w:?}");
}

#[test]
fn reduce_lr_on_plateau_writes_the_device_variable_without_recompiling() {
    let mut m = linear(0.1);
    let (x, y) = data();
    // min_delta 1e9: only the first epoch counts as an improvement (best = inf), so with
    // patience 2 the rate is cut at the end of epochs 2 and 4.
    let mut rl = ReduceLrOnPlateau::new("val_loss")
        .patience(2)
        .factor(0.1)
        .min_delta(1e9);
    let h = m
        .fit_with_callbacks(&x, &y, fit(5, true), &mut [&mut rl])
        .unwrap();
    let lr = &h.history["lr"];
    let want = [0.1, 0.1, 0.1, 0.01, 0.01];
    assert_eq!(lr.len(), 5);
    for (a, b) in lr.iter().zip(want) {
        assert!((a - b).abs() < 1e-7, "{lr:?}");
    }
    let dev = m.read_variable(LR_VARIABLE).unwrap().to_f32()[0];
    assert!((dev - 0.001).abs() < 1e-9, "{dev}");
    // one train and one evaluate plan, compiled once for all five epochs
    let log = |m: &Sequential| {
        m.plan_cache_log()
            .iter()
            .map(|(mode, n, _)| (*mode, *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(log(&m), [(Mode::Train, 2), (Mode::Evaluate, 2)]);

    // The same compiled train plan now steps with lr = 0.001 (by hand, as in the header).
    let w = m.get_weights().unwrap();
    let (w0, b0) = (w[0].to_f32()[0] as f64, w[1].to_f32()[0] as f64);
    let r = [w0 + b0 - 2.0, 2.0 * w0 + b0 - 4.0];
    let (dw, db) = (r[0] + 2.0 * r[1], r[0] + r[1]);
    m.train_on_batch(&x, &y).unwrap();
    let w = m.get_weights().unwrap();
    assert!((w[0].to_f32()[0] as f64 - (w0 - 0.001 * dw)).abs() < 1e-5);
    assert!((w[1].to_f32()[0] as f64 - (b0 - 0.001 * db)).abs() < 1e-5);
    assert_eq!(log(&m), [(Mode::Train, 2), (Mode::Evaluate, 2)]);
}

#[test]
fn reduce_lr_on_plateau_follows_keras_cooldown_and_min_lr() {
    // Keras: patience 1, cooldown 2, min_lr 0.004 on a value never improving after epoch 0
    // (`in_cooldown()` is asked again after the decrement): e1 wait 1 -> 0.01, counter 2;
    // e2 counter 1, skipped; e3 counter 0, wait 1 -> max(0.001, 0.004) = 0.004, counter 2;
    // e4 skipped; e5 wait 1 but lr is not above min_lr. `lr` is logged before the cut.
    let mut m = linear(0.1);
    let mut rl = ReduceLrOnPlateau::new("val_loss")
        .patience(1)
        .cooldown(2)
        .min_lr(0.004);
    let mut ctx = CallbackContext::new(&mut m);
    rl.on_train_begin(&mut ctx).unwrap();
    let mut seen = vec![];
    for epoch in 0..6 {
        let mut l = logs(&[("val_loss", 1.0)]);
        rl.on_epoch_end(&mut ctx, epoch, &mut l).unwrap();
        seen.push(l["lr"]);
    }
    let after = ctx.learning_rate().unwrap();
    let want = [0.1, 0.1, 0.01, 0.01, 0.004, 0.004];
    for (a, b) in seen.iter().zip(want) {
        assert!((a - b).abs() < 1e-7, "{seen:?}");
    }
    assert!((after - 0.004).abs() < 1e-9);
    drop(ctx);
    let dev = m.read_variable(LR_VARIABLE).unwrap().to_f32()[0];
    assert!((dev - 0.004).abs() < 1e-9);
    // factor >= 1 is refused, as in Keras
    let mut bad = ReduceLrOnPlateau::default().factor(1.5);
    assert!(bad
        .on_train_begin(&mut CallbackContext::new(&mut m))
        .is_err());
}

#[test]
fn terminate_on_nan_stops_at_the_first_non_finite_epoch_loss() {
    // With lr = 1e6 the epoch losses are (f64, by hand from the header's step):
    // 10, 4.66e14, 2.19e28, 1.03e42 — the last overflows f32, so training stops at epoch 3.
    let mut m = linear(1e6);
    let (x, y) = data();
    let mut tn = TerminateOnNan::new();
    let h = m
        .fit_with_callbacks(&x, &y, fit(20, false), &mut [&mut tn])
        .unwrap();
    let loss = &h.history["loss"];
    assert_eq!(loss.len(), 4, "{loss:?}");
    assert!(loss[..3].iter().all(|l| l.is_finite()));
    assert!(!loss[3].is_finite());
    assert!(tn.stopped());
}

#[test]
fn csv_logger_writes_keras_columns_and_appends() {
    let dir = std::env::temp_dir().join(format!("kiln-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.csv");
    let mut m = linear(0.1);
    let mut run = |append: bool, rows: &[Logs]| {
        let mut cb = CsvLogger::new(&path, append);
        let mut ctx = CallbackContext::new(&mut m);
        cb.on_train_begin(&mut ctx).unwrap();
        for (e, l) in rows.iter().enumerate() {
            cb.on_epoch_end(&mut ctx, e, &mut l.clone()).unwrap();
        }
        cb.on_train_end(&mut ctx, &Logs::new()).unwrap();
    };
    let e0 = logs(&[("loss", 0.5), ("val_loss", 0.25), ("accuracy", 1.0)]);
    let e1 = logs(&[("loss", 0.125), ("val_loss", 1e-5), ("accuracy", 0.75)]);
    run(false, &[e0.clone(), e1.clone()]);
    // Keras: `epoch`, then the keys sorted; Python's repr of each float
    let first = "epoch,accuracy,loss,val_loss\n0,1.0,0.5,0.25\n1,0.75,0.125,1e-05\n";
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    // append: no second header; the columns are fixed at the first epoch, a missing value is
    // NA (Keras writes NA only when training was stopped, and fails otherwise)
    run(
        true,
        &[
            logs(&[("loss", 2.0), ("accuracy", 0.5), ("val_loss", 0.5)]),
            logs(&[("loss", 1.0), ("accuracy", 0.25)]),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{first}0,0.5,2.0,0.5\n1,0.25,1.0,NA\n")
    );
    // without append the file starts over
    run(false, &[e1]);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "epoch,accuracy,loss,val_loss\n0,0.75,0.125,1e-05\n"
    );

    // in a real fit: one row per epoch, the history's values
    let (x, y) = data();
    let mut cb = CsvLogger::new(&path, false);
    let h = m
        .fit_with_callbacks(&x, &y, fit(3, true), &mut [&mut cb])
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("epoch,loss,val_loss"));
    for (e, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], e.to_string());
        assert_eq!(f[1].parse::<f64>().unwrap(), h.history["loss"][e]);
        assert_eq!(f[2].parse::<f64>().unwrap(), h.history["val_loss"][e]);
    }
    assert_eq!(text.lines().count(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lambda_callback_is_called_with_the_right_epochs_and_batches() {
    let mut m = linear(0.01);
    let x = t(&[5, 1], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    let y = t(&[5, 1], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    let calls = RefCell::new(vec![]);
    let mut losses = vec![];
    let h = {
        let mut cb = LambdaCallback::new()
            .on_train_begin(|| calls.borrow_mut().push("train_begin".to_string()))
            .on_epoch_begin(|e| calls.borrow_mut().push(format!("epoch_begin {e}")))
            .on_batch_begin(|b| calls.borrow_mut().push(format!("batch_begin {b}")))
            .on_batch_end(|b| calls.borrow_mut().push(format!("batch_end {b}")))
            .on_epoch_end(|e, l| {
                calls.borrow_mut().push(format!("epoch_end {e}"));
                losses.push(l["loss"]);
            })
            .on_train_end(|_| calls.borrow_mut().push("train_end".to_string()));
        let opts = Fit {
            epochs: 2,
            batch_size: 2,
            verbose: false,
            ..Fit::default()
        };
        m.fit_with_callbacks(&x, &y, opts, &mut [&mut cb]).unwrap()
    };
    let mut want = vec!["train_begin".to_string()];
    for e in 0..2 {
        want.push(format!("epoch_begin {e}"));
        for b in 0..3 {
            want.push(format!("batch_begin {b}"));
            want.push(format!("batch_end {b}"));
        }
        want.push(format!("epoch_end {e}"));
    }
    want.push("train_end".into());
    assert_eq!(calls.into_inner(), want);
    assert_eq!(losses, h.history["loss"]);
}

#[test]
fn model_checkpoint_saves_the_best_epochs_through_its_hook() {
    let mut m = linear(0.1);
    let (x, y) = data();
    let mut saved = vec![];
    let h = {
        let mut cp =
            ModelCheckpoint::with_saver("ckpt-{epoch:02d}-{val_loss:.2f}", |model, path| {
                saved.push((path.to_path_buf(), model.get_weights()?));
                Ok(())
            })
            .save_best_only(true);
        m.fit_with_callbacks(&x, &y, fit(3, true), &mut [&mut cp])
            .unwrap()
    };
    // val_loss only rises (28.26 after epoch 1), so only the first epoch is saved
    assert_eq!(h.history["val_loss"].len(), 3);
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].0, std::path::PathBuf::from("ckpt-01-28.26"));
    assert!((saved[0].1[0].to_f32()[0] - 1.0).abs() < 1e-6);

    let mut every = vec![];
    let mut cp = ModelCheckpoint::with_saver("m{epoch}", |_, p| {
        every.push(p.display().to_string());
        Ok(())
    });
    m.fit_with_callbacks(&x, &y, fit(2, false), &mut [&mut cp])
        .unwrap();
    drop(cp);
    assert_eq!(every, ["m1", "m2"]);
}

#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.borrow().clone()).unwrap()
    }
}

#[test]
fn progress_bar_prints_keras_lines() {
    let (x, y) = data();
    // not a terminal: only final lines
    let out = Shared::default();
    let mut bar = ProgressBar::to_writer(Verbosity::ProgressBar, out.clone(), false);
    let mut m = linear(0.1);
    m.fit_with_callbacks(&x, &y, fit(2, true), &mut [&mut bar])
        .unwrap();
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "Epoch 1/2");
    let full = format!("1/1 [{}] - ", "=".repeat(30));
    assert!(lines[1].starts_with(&full), "{text}");
    assert!(
        lines[1].ends_with("/step - loss: 10.0000 - val_loss: 28.2600"),
        "{text}"
    );
    assert_eq!(lines[2], "Epoch 2/2");
    assert!(!text.contains('\r'));

    // verbose = 2: one line per epoch
    let out = Shared::default();
    let mut bar = ProgressBar::to_writer(Verbosity::from(2), out.clone(), false);
    let mut m = linear(0.1);
    m.fit_with_callbacks(&x, &y, fit(1, false), &mut [&mut bar])
        .unwrap();
    let text = out.text();
    assert!(text.starts_with("1/1 - "), "{text}");
    assert!(text.contains(" - loss: 10.0000 - "), "{text}");
    assert!(text.trim_end().ends_with("/step"), "{text}");

    // a terminal, redrawn at every step: the running loss after the first sample (x = 1,
    // y = 2, p = 0) is 4, read from the device at that point
    let out = Shared::default();
    let mut bar = ProgressBar::to_writer(Verbosity::ProgressBar, out.clone(), true)
        .interval(std::time::Duration::ZERO);
    let mut m = linear(0.1);
    let opts = Fit {
        batch_size: 1,
        ..fit(1, false)
    };
    m.fit_with_callbacks(&x, &y, opts, &mut [&mut bar]).unwrap();
    let text = out.text();
    let want = format!(
        "\r1/2 [{}>{}] - ETA: 0s - loss: 4.0000",
        "=".repeat(14),
        ".".repeat(15)
    );
    assert!(text.starts_with(&want), "{text:?}");
    assert!(text.contains(&format!("\r2/2 [{}] - ", "=".repeat(30))));
}

#[test]
fn history_gets_lr_when_a_callback_changes_it() {
    // a hand-written schedule (Keras LearningRateScheduler style) halving at epoch 2
    struct Halve;
    impl Callback for Halve {
        fn on_epoch_begin(
            &mut self,
            ctx: &mut CallbackContext<'_>,
            epoch: usize,
        ) -> kiln_layers::Result<()> {
            if epoch == 2 {
                let lr = ctx.learning_rate()?;
                ctx.set_learning_rate(lr / 2.0)?;
            }
            Ok(())
        }
    }
    let mut m = linear(0.1);
    let (x, y) = data();
    let h = m
        .fit_with_callbacks(&x, &y, fit(4, false), &mut [&mut Halve])
        .unwrap();
    let lr: Vec<f32> = h.history["lr"].iter().map(|v| *v as f32).collect();
    assert_eq!(lr, [0.1, 0.1, 0.05, 0.05]);
    // no callback changing it: no `lr`
    let h = m.fit(&x, &y, fit(2, false)).unwrap();
    assert!(!h.history.contains_key("lr"));
    // metrics keep working with callbacks
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(2).activation(Activation::Softmax).input_dim(1))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Sgd::new(0.1),
        &[Metric::Accuracy],
    )
    .unwrap();
    let y2 = t(&[2, 2], &[1.0, 0.0, 0.0, 1.0]);
    let h = m
        .fit_with_callbacks(&x, &y2, fit(2, false), &mut [&mut Halve])
        .unwrap();
    assert_eq!(h.history["accuracy"].len(), 2);
}

#[test]
fn model_checkpoint_saves_the_best_model_to_a_file() {
    let dir = std::env::temp_dir().join(format!("kiln-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join("best-{epoch}.safetensors");
    let mut m = linear(0.1);
    let (x, y) = data();
    let mut cp = ModelCheckpoint::new(template.to_str().unwrap()).save_best_only(true);
    m.fit_with_callbacks(&x, &y, fit(3, true), &mut [&mut cp])
        .unwrap();
    // only epoch 1 improved the validation loss (see above); its weights are w = 1, b = 0.6
    let path = dir.join("best-1.safetensors");
    assert_eq!(cp.saved(), std::slice::from_ref(&path));
    let mut back = kiln_layers::load_model(&path, Box::new(CpuBackend::new())).unwrap();
    let w = back.get_weights().unwrap();
    assert!((w[0].to_f32()[0] - 1.0).abs() < 1e-6, "{w:?}");
    assert!((w[1].to_f32()[0] - 0.6).abs() < 1e-6, "{w:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
