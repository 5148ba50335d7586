//! The append-only graph arena.

use crate::{DType, IrError, Op, Result, Shape};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A typed index of a node in its [`Graph`]. Cheap to copy; only meaningful for the graph
/// that made it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(u32);

impl NodeId {
    /// The id of arena position `i` (crate-internal: ids come from the graph that owns them).
    pub(crate) fn at(i: usize) -> NodeId {
        NodeId(i as u32)
    }

    /// Position in the arena.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One node: an op, its operands (all earlier in the arena), and its inferred type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The op.
    pub op: Op,
    /// Operands in op order.
    pub inputs: Vec<NodeId>,
    /// Static output shape.
    pub shape: Shape,
    /// Output element type.
    pub dtype: DType,
    /// Scope path given by the builder (e.g. `dense_1/matmul`).
    pub name: String,
}

/// A static-shape computation graph.
///
/// Invariant: a node's inputs precede it, so arena order is a topological order. Nodes are
/// never removed or mutated in place; passes build new graphs. Besides its nodes a graph
/// holds its *roots*: named outputs, and assignments `param <- value` applied after all
/// outputs are computed (the optimizer update of a training step).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) outputs: Vec<(String, NodeId)>,
    pub(crate) assigns: Vec<(NodeId, NodeId)>,
    #[serde(skip)]
    pub(crate) scope: Vec<String>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The id of the node at arena position `i`, when there is one (nodes are numbered in
    /// creation order from 0).
    pub fn id_at(&self, i: usize) -> Option<NodeId> {
        (i < self.nodes.len()).then(|| NodeId::at(i))
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All nodes in arena (topological) order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node behind `id`.
    ///
    /// # Panics
    /// If `id` is not from this graph; ids come from this graph's builder, so this is a
    /// programming error, not a user-input error. Use [`Graph::try_node`] for checked access.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// Checked access to a node.
    pub fn try_node(&self, id: NodeId) -> Result<&Node> {
        self.nodes.get(id.index()).ok_or(IrError::UnknownNode {
            op: "lookup",
            id,
            len: self.nodes.len(),
        })
    }

    /// Shape of a node.
    pub fn shape(&self, id: NodeId) -> &Shape {
        &self.node(id).shape
    }

    /// Dtype of a node.
    pub fn dtype(&self, id: NodeId) -> DType {
        self.node(id).dtype
    }

    /// Iterates `(id, node)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (NodeId::at(i), n))
    }

    /// Named outputs, in the order they were marked.
    pub fn outputs(&self) -> &[(String, NodeId)] {
        &self.outputs
    }

    /// Assignments `(param, value)` applied at the end of a run.
    pub fn assigns(&self) -> &[(NodeId, NodeId)] {
        &self.assigns
    }

    /// Marks `id` as a named output of the graph.
    pub fn output(&mut self, name: impl Into<String>, id: NodeId) -> Result<()> {
        let name = name.into();
        self.try_node(id)?;
        if self.outputs.iter().any(|(n, _)| *n == name) {
            return Err(IrError::Attribute {
                op: "output",
                node: name.clone(),
                message: format!("an output named `{name}` already exists"),
            });
        }
        self.outputs.push((name, id));
        Ok(())
    }

    /// Records that `param` takes the value of `value` at the end of every run.
    pub fn assign(&mut self, param: NodeId, value: NodeId) -> Result<()> {
        let p = self.try_node(param)?.clone();
        let v = self.try_node(value)?;
        let Op::Param { name } = &p.op else {
            return Err(IrError::Attribute {
                op: "assign",
                node: p.name.clone(),
                message: format!(
                    "only params can be assigned, `{}` is a {}",
                    p.name,
                    p.op.mnemonic()
                ),
            });
        };
        if v.shape != p.shape || v.dtype != p.dtype {
            return Err(IrError::Shape {
                op: "assign",
                node: name.clone(),
                message: format!(
                    "the new value must have the param's shape {} and dtype {}, got dtype {}",
                    p.shape, p.dtype, v.dtype
                ),
                got: crate::error::ShapeList(vec![v.shape.clone()]),
                hint: None,
            });
        }
        if self.assigns.iter().any(|(q, _)| *q == param) {
            return Err(IrError::Attribute {
                op: "assign",
                node: name.clone(),
                message: format!("param `{name}` is already assigned in this graph"),
            });
        }
        self.assigns.push((param, value));
        Ok(())
    }

    /// Runs `f` with `name` pushed on the naming scope: nodes built inside are named
    /// `outer/name/op`.
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Graph) -> T) -> T {
        self.scope.push(name.to_string());
        let r = f(self);
        self.scope.pop();
        r
    }

    /// The name a node of op `mnemonic` would get in the current scope.
    pub fn scoped_name(&self, mnemonic: &str) -> String {
        if self.scope.is_empty() {
            mnemonic.to_string()
        } else {
            format!("{}/{}", self.scope.join("/"), mnemonic)
        }
    }

    /// Finds the param node called `name`.
    pub fn param_by_name(&self, name: &str) -> Option<NodeId> {
        self.iter()
            .find(|(_, n)| matches!(&n.op, Op::Param { name: p } if p == name))
            .map(|(id, _)| id)
    }

    /// Finds the input node called `name`.
    pub fn input_by_name(&self, name: &str) -> Option<NodeId> {
        self.iter()
            .find(|(_, n)| matches!(&n.op, Op::Input { name: p } if p == name))
            .map(|(id, _)| id)
    }

    /// Appends a node whose shape and dtype were already inferred and checked.
    /// Only the builder (and passes re-building graphs) call this.
    pub fn push_unchecked(&mut self, node: Node) -> NodeId {
        let id = NodeId::at(self.nodes.len());
        self.nodes.push(node);
        id
    }

    /// Replaces the roots of the graph (used by passes that rebuild a graph).
    pub fn set_roots(&mut self, outputs: Vec<(String, NodeId)>, assigns: Vec<(NodeId, NodeId)>) {
        self.outputs = outputs;
        self.assigns = assigns;
    }
}

impl fmt::Display for Graph {
    /// A line per node: `%3 = add(%1, %2) : f32[4, 2]  # dense_1/add`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (id, n) in self.iter() {
            write!(f, "{id} = {}", n.op.mnemonic())?;
            match &n.op {
                Op::Input { name } | Op::Param { name } => write!(f, "\"{name}\"")?,
                Op::Constant(crate::Constant::Fill(v)) => write!(f, "({v})")?,
                Op::Constant(crate::Constant::Data(d)) => write!(f, "(<{} values>)", d.len())?,
                Op::Reduce { axes, .. } => write!(f, "{axes:?}")?,
                Op::Permute { perm } => write!(f, "{perm:?}")?,
                _ => {}
            }
            let args: Vec<String> = n.inputs.iter().map(|i| i.to_string()).collect();
            if !args.is_empty() {
                write!(f, "({})", args.join(", "))?;
            }
            writeln!(f, " : {}{}  # {}", n.dtype, n.shape, n.name)?;
        }
        for (name, id) in &self.outputs {
            writeln!(f, "output \"{name}\" = {id}")?;
        }
        for (p, v) in &self.assigns {
            writeln!(f, "assign {p} <- {v}")?;
        }
        Ok(())
    }
}
