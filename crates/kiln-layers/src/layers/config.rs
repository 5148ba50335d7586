//! [`LayerConfig`]: every layer as data (what `to_json` and `save` store).

use super::{
    ActivationConfig, ActivationLayer, Dense, DenseConfig, Dropout, DropoutConfig, Embedding,
    EmbeddingConfig, Flatten, FlattenConfig, Gru, GruConfig, InputLayer, InputLayerConfig, Layer,
    Lstm, LstmConfig, OneHot, OneHotConfig, SimpleRnn, SimpleRnnConfig,
};
use serde::{Deserialize, Serialize};

/// A layer as data (Keras's `class_name` + `config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", content = "config")]
pub enum LayerConfig {
    /// [`Dense`]
    Dense(DenseConfig),
    /// [`Lstm`]
    #[serde(rename = "LSTM")]
    Lstm(LstmConfig),
    /// [`Gru`]
    #[serde(rename = "GRU")]
    Gru(GruConfig),
    /// [`SimpleRnn`]
    #[serde(rename = "SimpleRNN")]
    SimpleRnn(SimpleRnnConfig),
    /// [`Embedding`]
    Embedding(EmbeddingConfig),
    /// [`OneHot`]
    OneHot(OneHotConfig),
    /// [`Flatten`]
    Flatten(FlattenConfig),
    /// [`ActivationLayer`] (Keras's `Activation` layer)
    Activation(ActivationConfig),
    /// [`InputLayer`]
    InputLayer(InputLayerConfig),
    /// [`Dropout`]
    Dropout(DropoutConfig),
}

impl LayerConfig {
    /// The layer this configuration describes.
    pub fn build(&self) -> Box<dyn Layer> {
        match self {
            LayerConfig::Dense(c) => Box::new(Dense::from_config(c)),
            LayerConfig::Lstm(c) => Box::new(Lstm::from_config(c.clone())),
            LayerConfig::Gru(c) => Box::new(Gru::from_config(c.clone())),
            LayerConfig::SimpleRnn(c) => Box::new(SimpleRnn::from_config(c.clone())),
            LayerConfig::Embedding(c) => Box::new(Embedding::from_config(c.clone())),
            LayerConfig::OneHot(c) => Box::new(OneHot::from_config(c.clone())),
            LayerConfig::Flatten(c) => Box::new(Flatten::from_config(c)),
            LayerConfig::Activation(c) => Box::new(ActivationLayer::from_config(c)),
            LayerConfig::InputLayer(c) => Box::new(InputLayer::new(&c.input_shape)),
            LayerConfig::Dropout(c) => Box::new(Dropout::new(c.rate)),
        }
    }
}
