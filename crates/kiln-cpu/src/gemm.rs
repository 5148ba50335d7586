//! Prepared matmuls: the product of every output tile is one single-threaded
//! `gemm` call over the whole `k` (arbitrary strides: transposed operands
//! are read in place), and the epilogue runs on the tile right after, while it is in cache.
//! A product whose epilogue only stores it is written by GEMM in place.

use crate::exec::for_tasks;
use crate::prog::{Accs, Phase, RawBuf, BLOCK};
use kiln_plan::kernel::MatOperand;

/// A prepared matmul.
#[derive(Debug)]
pub struct MatMul {
    pub(crate) batch: usize,
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) a: MatOperand,
    pub(crate) b: MatOperand,
    pub(crate) epilogue: Phase,
    /// The right operand's column sums and their phase (batch 1; `KernelOp::MatMul::sums`).
    pub(crate) sums: Option<Phase>,
    /// `(arg, offset, batch stride, row stride, col stride)` of the output when the
    /// epilogue only stores the product: GEMM writes it in place, no epilogue pass.
    pub(crate) direct: Option<(u32, usize, usize, usize, usize)>,
    pub(crate) tm: usize,
    pub(crate) tn: usize,
}

impl MatMul {
    /// Runs the product and its epilogue in output tiles, one GEMM call per tile.
    ///
    /// # Safety
    /// `args` are the kernel's buffers, every extent checked against them at load.
    pub(crate) unsafe fn run(&self, args: &[RawBuf]) {
        let (m, n, k) = (self.m, self.n, self.k);
        if self.batch == 0 || m == 0 || n == 0 {
            return;
        }
        let (tm, tn) = (self.tm, self.tn);
        let (mt, nt) = (m.div_ceil(tm), n.div_ceil(tn));
        let tasks = self.batch * mt * nt;
        let (abuf, bbuf) = (args[self.a.arg as usize], args[self.b.arg as usize]);
        let epi = &self.epilogue;
        let init = || {
            (
                vec![0f32; if self.direct.is_some() { 0 } else { tm * tn }],
                epi.scratch(),
                Vec::new(),
            )
        };
        for_tasks(tasks, init, |(c, s, bases), t| {
            let bi = t / (mt * nt);
            let (i0, j0) = ((t / nt) % mt * tm, t % nt * tn);
            let (rows, cols) = ((m - i0).min(tm), (n - j0).min(tn));
            let (ap, bp) = (abuf.fp() as *const f32, bbuf.fp() as *const f32);
            let a = ap.add(self.a.offset + bi * self.a.batch_stride + i0 * self.a.row_stride);
            let b = bp.add(self.b.offset + bi * self.b.batch_stride + j0 * self.b.col_stride);
            let (cp, rsc, csc) = match self.direct {
                Some((arg, off, bs, rs, cs)) => (
                    args[arg as usize]
                        .ptr
                        .add(off + bi * bs + i0 * rs + j0 * cs),
                    rs,
                    cs,
                ),
                None => (c.as_mut_ptr(), cols, 1),
            };
            if k == 0 {
                for i in 0..rows {
                    for j in 0..cols {
                        *cp.add(i * rsc + j * csc) = 0.0;
                    }
                }
            } else {
                product(
                    [rows, k, cols],
                    (a, self.a.row_stride, self.a.col_stride),
                    (b, self.b.row_stride, self.b.col_stride),
                    (cp, rsc, csc),
                );
            }
            if self.direct.is_none() {
                epi.bases(&[], bases);
                for i in 0..rows {
                    let flat = (bi * m + i0 + i) * n + j0;
                    let mut at = 0;
                    while at < cols {
                        let len = (cols - at).min(BLOCK);
                        epi.run_block(
                            s,
                            args,
                            bases,
                            flat + at,
                            len,
                            Accs::Row(&c[i * cols + at..][..len]),
                        );
                        at += len;
                    }
                }
            }
        });
        if let Some(ph) = &self.sums {
            self.column_sums(ph, args);
        }
    }

    /// The column sums of B (batch 1) and their phase, in blocks of columns; each column is
    /// summed over `p` in increasing order (the bits do not depend on the blocks).
    ///
    /// # Safety
    /// As [`MatMul::run`].
    unsafe fn column_sums(&self, ph: &Phase, args: &[RawBuf]) {
        let (n, k) = (self.n, self.k);
        let bbuf = args[self.b.arg as usize];
        let (rs, cs) = (self.b.row_stride, self.b.col_stride);
        for_tasks(
            n.div_ceil(BLOCK),
            || (ph.scratch(), Vec::new(), vec![0f32; BLOCK]),
            |(s, bases, sum), t| {
                let j0 = t * BLOCK;
                let len = (n - j0).min(BLOCK);
                let sum = &mut sum[..len];
                sum.fill(0.0);
                let bp = (bbuf.fp() as *const f32).add(self.b.offset + j0 * cs);
                for p in 0..k {
                    let row = bp.add(p * rs);
                    if cs == 1 {
                        let r = std::slice::from_raw_parts(row, len);
                        for (o, x) in sum.iter_mut().zip(r) {
                            *o += x;
                        }
                    } else {
                        for (q, o) in sum.iter_mut().enumerate() {
                            *o += *row.add(q * cs);
                        }
                    }
                }
                ph.bases(&[], bases);
                ph.run_block(s, args, bases, j0, len, Accs::Row(sum));
            },
        );
    }
}

/// `c = a · b` for an `m×k` `a`, a `k×n` `b` and an `m×n` `c`, each given as
/// `(pointer, row stride, column stride)` in elements; one thread, so the bits depend only on
/// the shapes and strides. `gemm` picks its microkernel by the CPU's ISA at run time (AVX-512
/// where the CPU has it, else AVX2+FMA, else SSE/NEON), once per process.
///
/// # Safety
/// Every element the shapes and strides address lies in its buffer; `c` does not overlap
/// `a` or `b`.
#[inline]
pub(crate) unsafe fn product(
    [m, k, n]: [usize; 3],
    a: (*const f32, usize, usize),
    b: (*const f32, usize, usize),
    c: (*mut f32, usize, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        c.0,
        c.2 as isize,
        c.1 as isize,
        false,
        a.0,
        a.2 as isize,
        a.1 as isize,
        b.0,
        b.2 as isize,
        b.1 as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}
