//! kiln-layers
