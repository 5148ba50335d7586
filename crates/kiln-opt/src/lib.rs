//! kiln-opt
