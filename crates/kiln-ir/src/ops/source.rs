//! Leaves: inputs, params and constants.

use crate::{Constant, DType, Graph, NodeId, Op, Result, Shape};

impl Graph {
    fn check_leaf_name(&self, op: &'static str, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(self.attr_err(op, "name must not be empty"));
        }
        let taken = self.nodes.iter().any(|n| match &n.op {
            Op::Input { name: m } | Op::Param { name: m } => m == name,
            _ => false,
        });
        if taken {
            return Err(self.attr_err(
                op,
                format!("an input or param named `{name}` already exists"),
            ));
        }
        Ok(())
    }

    /// A tensor fed on every run under `name`.
    pub fn input(&mut self, name: &str, shape: impl Into<Shape>, dtype: DType) -> Result<NodeId> {
        self.check_leaf_name("input", name)?;
        Ok(self.emit(
            Op::Input {
                name: name.to_string(),
            },
            vec![],
            shape.into(),
            dtype,
        ))
    }

    /// A persistent variable called `name` (weights, optimizer state, hyper-parameters).
    pub fn param(&mut self, name: &str, shape: impl Into<Shape>, dtype: DType) -> Result<NodeId> {
        self.check_leaf_name("param", name)?;
        Ok(self.emit(
            Op::Param {
                name: name.to_string(),
            },
            vec![],
            shape.into(),
            dtype,
        ))
    }

    /// A scalar (shape `[]`) f32 constant.
    pub fn scalar(&mut self, value: f64) -> NodeId {
        self.emit(
            Op::Constant(Constant::Fill(value)),
            vec![],
            Shape::scalar(),
            DType::F32,
        )
    }

    /// A constant tensor with every element equal to `value`.
    pub fn full(&mut self, value: f64, shape: impl Into<Shape>, dtype: DType) -> NodeId {
        self.emit(
            Op::Constant(Constant::Fill(value)),
            vec![],
            shape.into(),
            dtype,
        )
    }

    /// A constant tensor with explicit row-major values.
    pub fn constant(
        &mut self,
        values: Vec<f64>,
        shape: impl Into<Shape>,
        dtype: DType,
    ) -> Result<NodeId> {
        let shape = shape.into();
        if values.len() != shape.numel() {
            return Err(self.shape_err(
                "constant",
                format!(
                    "{} values cannot fill shape {shape} ({} elements)",
                    values.len(),
                    shape.numel()
                ),
                vec![shape],
                None,
            ));
        }
        Ok(self.emit(Op::Constant(Constant::Data(values)), vec![], shape, dtype))
    }
}
