//! Graph-to-graph passes. Each pass is a value implementing [`Pass`]; the pipeline in
//! [`crate::compile`] names them in order and runs `verify` after each one.

use crate::Result;
use kiln_ir::{Graph, Node, NodeId};

/// A graph-to-graph transformation.
pub trait Pass {
    /// Verb-phrase name, used by `KILN_DUMP` and the per-pass timings.
    fn name(&self) -> &'static str;
    /// Runs the pass, returning the new graph.
    fn run(&self, g: &Graph) -> Result<Graph>;
}

/// Removes nodes that no output or assignment depends on, renumbering the rest (arena order
/// is kept, so the result is still topologically ordered).
pub struct EliminateDeadNodes;

impl Pass for EliminateDeadNodes {
    fn name(&self) -> &'static str {
        "EliminateDeadNodes"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        let mut live = vec![false; g.len()];
        for (_, o) in g.outputs() {
            live[o.index()] = true;
        }
        for (p, v) in g.assigns() {
            live[p.index()] = true;
            live[v.index()] = true;
        }
        for i in (0..g.len()).rev() {
            if live[i] {
                for inp in &g.nodes()[i].inputs {
                    live[inp.index()] = true;
                }
            }
        }
        let mut remap = vec![NodeId(u32::MAX); g.len()];
        let mut out = Graph::new();
        for (id, n) in g.iter() {
            if !live[id.index()] {
                continue;
            }
            let node = Node {
                op: n.op.clone(),
                inputs: n.inputs.iter().map(|i| remap[i.index()]).collect(),
                shape: n.shape.clone(),
                dtype: n.dtype,
                name: n.name.clone(),
            };
            remap[id.index()] = out.push_unchecked(node);
        }
        let outputs = g
            .outputs()
            .iter()
            .map(|(n, o)| (n.clone(), remap[o.index()]))
            .collect();
        let assigns = g
            .assigns()
            .iter()
            .map(|(p, v)| (remap[p.index()], remap[v.index()]))
            .collect();
        out.set_roots(outputs, assigns);
        Ok(out)
    }
}
