//! The names of the model's device variables, in one place.
//!
//! Everything a model keeps on its device between plan runs is a named variable in the
//! device's variable store: the layer weights, the optimizer's hyper-parameters and state,
//! the noise step counter and the loss/metric accumulators. The graph builders create them
//! by these names, the training runtime reads and writes them by these names, and a saved
//! model file stores every variable but the accumulators under its name, so **the names are
//! part of the file format**: changing one breaks every saved model.
//!
//! | variable | name | saved |
//! | --- | --- | --- |
//! | a layer weight | [`weight`]: `<layer>/<weight>` (`dense_1/kernel`) | yes |
//! | an optimizer hyper-parameter | [`optimizer::LEARNING_RATE`]… (`optimizer/<name>`) | yes |
//! | an optimizer slot of a weight | [`optimizer::slot`]: `optimizer/<weight>/<slot>` | yes |
//! | the optimizer step counter | [`optimizer::ITERATIONS`] | yes |
//! | Nadam's momentum schedule | [`optimizer::NADAM_SCHEDULE`] | yes |
//! | the dropout noise step | [`NOISE_STEP`] | yes |
//! | the loss / metric accumulators | [`metrics::LOSS_SUM`], [`metrics::sum`] | no |

/// The name of weight `weight` of layer `layer`: `<layer>/<weight>` (`dense_1/kernel`).
pub fn weight(layer: &str, weight: &str) -> String {
    format!("{layer}/{weight}")
}

/// The training-step counter that dropout masks are drawn at (f32 `[1]`).
pub const NOISE_STEP: &str = "noise/step";

/// The optimizer's variables: hyper-parameters read in-graph, state slots, step counter.
pub mod optimizer {
    /// The prefix every optimizer variable starts with.
    pub const PREFIX: &str = "optimizer/";
    /// The learning rate (scalar f32).
    pub const LEARNING_RATE: &str = "optimizer/learning_rate";
    /// The number of updates applied so far (scalar f32).
    pub const ITERATIONS: &str = "optimizer/iterations";
    /// SGD's momentum.
    pub const MOMENTUM: &str = "optimizer/momentum";
    /// RMSprop's and Adadelta's decay `rho`.
    pub const RHO: &str = "optimizer/rho";
    /// The first-moment decay of Adam, Adamax and Nadam.
    pub const BETA_1: &str = "optimizer/beta_1";
    /// The second-moment decay of Adam, Adamax and Nadam.
    pub const BETA_2: &str = "optimizer/beta_2";
    /// Nadam's momentum-schedule product (stored minus 1).
    pub const NADAM_SCHEDULE: &str = "optimizer/m_schedule";

    /// The state variable `slot` of the weight variable `param`: `optimizer/<param>/<slot>`.
    pub fn slot(param: &str, slot: &str) -> String {
        format!("{PREFIX}{param}/{slot}")
    }

    /// Whether `name` is an optimizer variable (hyper-parameter, slot or counter).
    pub fn is_optimizer(name: &str) -> bool {
        name.starts_with(PREFIX)
    }
}

/// The loss and metric accumulators of a pass (sample-weighted sums; never saved).
pub mod metrics {
    /// The prefix every accumulator starts with.
    pub const PREFIX: &str = "metrics/";
    /// The sample-weighted loss sum.
    pub const LOSS_SUM: &str = "metrics/loss_sum";

    /// The accumulator of the `i`-th compiled metric: `metrics/<i>_sum`.
    pub fn sum(i: usize) -> String {
        format!("{PREFIX}{i}_sum")
    }

    /// Whether `name` is an accumulator.
    pub fn is_accumulator(name: &str) -> bool {
        name.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the saved file format: pin them.
    #[test]
    fn names_are_the_file_format() {
        assert_eq!(weight("dense_1", "kernel"), "dense_1/kernel");
        assert_eq!(NOISE_STEP, "noise/step");
        assert_eq!(
            optimizer::slot("dense_1/kernel", "m"),
            "optimizer/dense_1/kernel/m"
        );
        assert_eq!(optimizer::LEARNING_RATE, "optimizer/learning_rate");
        assert_eq!(optimizer::ITERATIONS, "optimizer/iterations");
        assert_eq!(optimizer::NADAM_SCHEDULE, "optimizer/m_schedule");
        assert_eq!(metrics::LOSS_SUM, "metrics/loss_sum");
        assert_eq!(metrics::sum(2), "metrics/2_sum");
        assert!(metrics::is_accumulator(metrics::LOSS_SUM));
        assert!(optimizer::is_optimizer(optimizer::RHO));
    }
}
