//! Stage 2: static memory planning.
//!
//! Every temporary tensor lives from the group that writes it to the last group that reads
//! it (inclusive: a tensor read and another written by the same dispatch never share
//! memory). Tensors are placed largest first at the lowest 64-element-aligned offset that
//! overlaps no placed tensor with an intersecting lifetime, in one arena per dtype; an arena
//! that would exceed the device's binding limit spills into a new one. Pinned tensors
//! (inputs, outputs, params, constants, copy sources) get their own buffers.

use super::fuse::{Class, Fused, TensorId};
use super::ARENA_ALIGN;
use crate::plan::BufferKind;
use crate::{DeviceLimits, OptError, Result};
use kiln_ir::DType;

/// A buffer of the plan.
#[derive(Clone, Debug)]
pub struct PlannedBuffer {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Elements.
    pub len: usize,
    /// Role.
    pub kind: BufferKind,
}

/// Where every tensor lives.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `(buffer index, element offset)` per tensor.
    pub placement: Vec<(usize, usize)>,
    /// Buffers.
    pub buffers: Vec<PlannedBuffer>,
    /// Bytes of all arenas.
    pub arena_bytes: u64,
}

struct Arena {
    buffer: usize,
    dtype: DType,
    /// (start, end, first group, last group)
    placed: Vec<(usize, usize, usize, usize)>,
    len: usize,
}

fn align(x: usize) -> usize {
    x.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// Runs stage 2.
pub fn plan(f: &Fused, limits: &DeviceLimits, reuse: bool) -> Result<Layout> {
    let limit_elems = (limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
        / 4) as usize;
    let mut placement = vec![(usize::MAX, 0); f.tensors.len()];
    let mut buffers = vec![];
    // pinned tensors: own buffers
    for (i, t) in f.tensors.iter().enumerate() {
        let kind = match &t.class {
            Class::Temp => continue,
            Class::Standalone => BufferKind::Temp,
            Class::Input(_) => BufferKind::Input,
            Class::Param(_) => BufferKind::Param,
            Class::Output(_) => BufferKind::Output,
            Class::Constant(v) => BufferKind::Constant { values: v.clone() },
        };
        check_size(&t.name, t.len, limit_elems)?;
        buffers.push(PlannedBuffer {
            name: t.name.clone(),
            dtype: t.dtype,
            len: t.len,
            kind,
        });
        placement[i] = (buffers.len() - 1, 0);
    }
    // temporaries: arenas
    let mut temps: Vec<TensorId> = (0..f.tensors.len() as TensorId)
        .filter(|&t| f.tensors[t as usize].class == Class::Temp)
        .collect();
    temps.sort_by_key(|&t| (std::cmp::Reverse(f.tensors[t as usize].len), t));
    let mut arenas: Vec<Arena> = vec![];
    for t in temps {
        let info = &f.tensors[t as usize];
        check_size(&info.name, info.len, limit_elems)?;
        let first = info.producer.unwrap_or(0);
        // without reuse every tensor is live for the whole run
        let last = if reuse {
            info.last_use.unwrap_or(first).max(first)
        } else {
            usize::MAX
        };
        let first = if reuse { first } else { 0 };
        let mut done = false;
        for a in arenas.iter_mut().filter(|a| a.dtype == info.dtype) {
            let mut live: Vec<(usize, usize)> = a
                .placed
                .iter()
                .filter(|p| p.2 <= last && first <= p.3)
                .map(|p| (p.0, p.1))
                .collect();
            live.sort_unstable();
            let mut off = 0;
            for (s, e) in live {
                if off + info.len <= s {
                    break;
                }
                off = off.max(align(e));
            }
            if off + info.len <= limit_elems {
                a.placed.push((off, off + info.len, first, last));
                a.len = a.len.max(off + info.len);
                placement[t as usize] = (a.buffer, off);
                done = true;
                break;
            }
        }
        if !done {
            buffers.push(PlannedBuffer {
                name: format!("arena_{}_{}", info.dtype, arenas.len()),
                dtype: info.dtype,
                len: 0,
                kind: BufferKind::Temp,
            });
            let buffer = buffers.len() - 1;
            arenas.push(Arena {
                buffer,
                dtype: info.dtype,
                placed: vec![(0, info.len, first, last)],
                len: info.len,
            });
            placement[t as usize] = (buffer, 0);
        }
    }
    let mut arena_bytes = 0;
    for a in &arenas {
        buffers[a.buffer].len = a.len.max(1);
        arena_bytes += a.len as u64 * 4;
    }
    Ok(Layout {
        placement,
        buffers,
        arena_bytes,
    })
}

fn check_size(name: &str, len: usize, limit_elems: usize) -> Result<()> {
    if len > limit_elems {
        return Err(OptError::Limit {
            tensor: name.to_string(),
            bytes: len as u64 * 4,
            limit: limit_elems as u64 * 4,
            what: "storage binding",
            hint: "use a smaller batch size or split the layer".into(),
        });
    }
    Ok(())
}
