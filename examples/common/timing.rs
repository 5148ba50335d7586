//! Helpers shared by the examples (included with `#[path]` from each example's `task.rs`).

use kiln::{HostTensor, Sequential};

/// Wall-clock time of a fit's epochs.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Seconds of each epoch (the first one includes compiling the plans).
    pub epochs: Vec<f64>,
}

impl Timing {
    /// Seconds of the first epoch (plan compilation, or loading from the plan cache, included).
    pub fn first(&self) -> f64 {
        self.epochs.first().copied().unwrap_or(0.0)
    }
    /// Median seconds of the epochs after the first (the first when there is only one).
    pub fn steady(&self) -> f64 {
        let mut rest: Vec<f64> = self.epochs.iter().skip(1).copied().collect();
        if rest.is_empty() {
            return self.first();
        }
        rest.sort_by(f64::total_cmp);
        rest[rest.len() / 2]
    }
}

/// [`Sequential::fit`] that also times each epoch (validation included).
pub fn fit_timed(
    m: &mut Sequential,
    x: &HostTensor,
    y: &HostTensor,
    fit: kiln::Fit,
) -> kiln::Result<(kiln::History, Timing)> {
    let mut stamps = vec![];
    let t0 = std::time::Instant::now();
    let h = {
        let mut cb = kiln::LambdaCallback::new()
            .on_epoch_end(|_, _| stamps.push(t0.elapsed().as_secs_f64()));
        m.fit_with_callbacks(x, y, fit, &mut [&mut cb])?
    };
    let epochs = stamps
        .iter()
        .scan(0.0, |prev, &t| {
            let d = t - *prev;
            *prev = t;
            Some(d)
        })
        .collect();
    Ok((h, Timing { epochs }))
}
