//! Views: re-expressing a strided view over one shape as a view over another, and the axis
//! maps of movement ops (expand, permute, reshapes that only add or remove size-1 axes).

use crate::kernel::View;
use crate::{OptError, Result};
use kiln_ir::{Graph, NodeId, Op};

pub(super) fn squeeze(s: &[usize]) -> Vec<usize> {
    s.iter().copied().filter(|&d| d != 1).collect()
}

/// Re-expresses a view over `from` as a view over `to` when both have the same dims once
/// size-1 axes are removed.
pub(super) fn adapt_view(view: &View, from: &[usize], to: &[usize]) -> Option<View> {
    if from == to {
        return Some(view.clone());
    }
    if squeeze(from) != squeeze(to) {
        return None;
    }
    let strides_nz: Vec<usize> = from
        .iter()
        .zip(&view.strides)
        .filter(|(&d, _)| d != 1)
        .map(|(_, &s)| s)
        .collect();
    let mut it = strides_nz.into_iter();
    let strides = to
        .iter()
        .map(|&d| if d == 1 { 0 } else { it.next().unwrap_or(0) })
        .collect();
    Some(View {
        offset: view.offset,
        strides,
    })
}

/// The store view for a value of node shape `shape` computed over phase shape `pshape`,
/// written through `view`: `None` when the view is dense from the tensor's start.
pub(super) fn store_view(view: &View, shape: &[usize], pshape: &[usize]) -> Result<Option<View>> {
    let v = adapt_view(view, shape, pshape).ok_or_else(|| {
        OptError::Unsupported(format!(
            "store view over {shape:?} does not fit phase shape {pshape:?}"
        ))
    })?;
    Ok((!v.is_contiguous(pshape)).then_some(v))
}

/// Maps the axes of `from` to the axes of `to` when both have the same dims once size-1
/// axes are removed (size-1 axes map to index 0).
pub(super) fn squeeze_map(from: &[usize], to: &[usize]) -> Vec<Option<usize>> {
    let targets: Vec<usize> = (0..to.len()).filter(|&d| to[d] != 1).collect();
    let mut it = targets.into_iter();
    from.iter()
        .map(|&d| if d == 1 { None } else { it.next() })
        .collect()
}

/// For a movement node, the map from its input's axes to its own axes, when the movement
/// is an axis relabelling (expand, permute, or a reshape that only adds/removes size-1 axes).
pub(super) fn movement_map(g: &Graph, id: NodeId) -> Option<Vec<Option<usize>>> {
    let n = g.node(id);
    let out = n.shape.dims();
    match &n.op {
        Op::Expand => {
            let src = g.shape(n.inputs[0]).dims();
            Some(
                (0..src.len())
                    .map(|d| if src[d] == 1 { None } else { Some(d) })
                    .collect(),
            )
        }
        Op::Permute { perm } => {
            let mut m = vec![None; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                m[p] = Some(i);
            }
            Some(m)
        }
        Op::Reshape => {
            let src = g.shape(n.inputs[0]).dims();
            (squeeze(src) == squeeze(out)).then(|| squeeze_map(src, out))
        }
        _ => None,
    }
}
