//! Running a compiled phase over blocks: the run table of a block, the accesses' bases, and
//! the register operations as loops over slices.

use super::{
    fill, load, op_dst, reg, reg_mut, store, AccCol, Accs, Op, Phase, RawBuf, Reg, Scalar, Scratch,
    Value, BLOCK,
};
use crate::isa::Isa;
use kiln_ir::{unravel, DType};

impl Phase {
    /// Fresh scratch memory for this phase (constants filled in).
    pub fn scratch(&self) -> Scratch {
        let mut s = Scratch {
            f: vec![0.0; self.nf.max(1) * BLOCK],
            i: vec![0; self.ni.max(1) * BLOCK],
            idx: vec![0; BLOCK],
            runs: vec![],
            bases: vec![],
            multi: vec![0; self.dims.len()],
        };
        for &(r, c) in &self.consts_f {
            s.f[r as usize * BLOCK..][..BLOCK].fill(c);
        }
        for &(r, c) in &self.consts_i {
            s.i[r as usize * BLOCK..][..BLOCK].fill(c);
        }
        s
    }

    /// Makes `s` fit this phase (reusing its memory).
    pub fn prepare(&self, s: &mut Scratch) {
        if s.f.len() < self.nf * BLOCK {
            s.f.resize(self.nf * BLOCK, 0.0);
        }
        if s.i.len() < self.ni * BLOCK {
            s.i.resize(self.ni * BLOCK, 0);
        }
        s.idx.resize(BLOCK, 0);
        s.multi.resize(self.dims.len(), 0);
        for &(r, c) in &self.consts_f {
            s.f[r as usize * BLOCK..][..BLOCK].fill(c);
        }
        for &(r, c) in &self.consts_i {
            s.i[r as usize * BLOCK..][..BLOCK].fill(c);
        }
    }

    /// Per-access base offsets for a task whose fixed (non-iterated) axes are at `fixed_idx`
    /// (a full-rank multi-index; iterated axes ignored).
    pub fn bases(&self, fixed_idx: &[usize], out: &mut Vec<usize>) {
        out.clear();
        out.extend(self.accesses.iter().map(|a| {
            a.offset
                + a.fixed
                    .iter()
                    .map(|&(d, s)| fixed_idx.get(d).copied().unwrap_or(0) * s)
                    .sum::<usize>()
        }));
    }

    /// The value register of expression `e` as an f32/i32 slice of the last block.
    pub fn value<'s>(&self, s: &'s Scratch, e: u32, n: usize) -> Value<'s> {
        let r = self.values[e as usize];
        let at = r.i as usize * BLOCK;
        if r.int {
            Value::I(&s.i[at..at + n])
        } else {
            Value::F(&s.f[at..at + n])
        }
    }

    /// Evaluates the block `[start, start + n)` of the iteration space (`n <= BLOCK`) and
    /// performs its stores.
    ///
    /// # Safety
    /// `args` are the kernel's bound buffers, every access of the phase lies inside them
    /// (checked at load), and no other task touches the elements this block stores.
    pub unsafe fn run_block(
        &self,
        s: &mut Scratch,
        args: &[RawBuf],
        task_bases: &[usize],
        start: usize,
        n: usize,
        accs: Accs,
    ) {
        match Isa::best() {
            // AVX-512 measured slower than AVX2 for these block programs
            // (docs/PERFORMANCE.md, "AVX-512 cell loops")
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2 => self.run_block_avx2(s, args, task_bases, start, n, accs),
            Isa::Baseline => self.run_block_impl(s, args, task_bases, start, n, accs),
        }
    }

    /// [`Phase::run_block`] compiled for AVX2 (8-wide vectors). Multiplies and adds are never
    /// fused, so the bits are those of the baseline build.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_block_avx2(
        &self,
        s: &mut Scratch,
        args: &[RawBuf],
        task_bases: &[usize],
        start: usize,
        n: usize,
        accs: Accs,
    ) {
        self.run_block_impl(s, args, task_bases, start, n, accs)
    }

    // index loops over several slices of one length are what vectorises here
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn run_block_impl(
        &self,
        s: &mut Scratch,
        args: &[RawBuf],
        task_bases: &[usize],
        start: usize,
        n: usize,
        accs: Accs,
    ) {
        // runs along the last coalesced axis
        let last = self.dims.len() - 1;
        let inner = self.dims[last];
        s.runs.clear();
        s.bases.clear();
        unravel(start, &self.dims, &mut s.multi);
        let mut pos = 0;
        while pos < n {
            let len = (inner - s.multi[last]).min(n - pos);
            s.runs.push((pos, len));
            for (a, &tb) in self.accesses.iter().zip(task_bases) {
                let off: usize = s.multi.iter().zip(&a.strides).map(|(i, s)| i * s).sum();
                s.bases.push(tb + off);
            }
            pos += len;
            // advance the multi-index by len
            s.multi[last] += len;
            let mut d = last;
            while d > 0 && s.multi[d] >= self.dims[d] {
                s.multi[d] = 0;
                s.multi[d - 1] += 1;
                d -= 1;
            }
        }
        let na = self.accesses.len();
        let f = s.f.as_mut_ptr();
        let ip = s.i.as_mut_ptr();
        let full = n;
        let len_now = std::cell::Cell::new(n);
        let fr = |r: Reg| reg(f, r, len_now.get());
        let ir = |r: Reg| reg(ip, r, len_now.get());
        let fw = |r: Reg| reg_mut(f, r, len_now.get());
        let iw = |r: Reg| reg_mut(ip, r, len_now.get());
        let one_run = [(0usize, 1usize)];
        for (op, &u) in self.ops.iter().zip(&self.uniform) {
            let n = if u { 1 } else { full };
            len_now.set(n);
            let runs: &[(usize, usize)] = if u { &one_run } else { &s.runs };
            match *op {
                Op::Load { access, arg, dst } => {
                    let buf = args[arg as usize];
                    let step = self.accesses[access as usize].strides[last];
                    for (r, &(p, len)) in runs.iter().enumerate() {
                        let base = s.bases[r * na + access as usize];
                        debug_assert!(base + (len - 1) * step < buf.len, "load past the end {:?} {:?} base {base} len {len} step {step} buf {} start {start} n {n} runs {:?}", self.dims, self.accesses[access as usize], buf.len, s.runs);
                        match (dst.int, buf.dtype) {
                            (false, DType::F32) => {
                                load(&mut fw(dst)[p..p + len], buf.fp(), base, step, |x| x)
                            }
                            (false, DType::I32) => {
                                load(&mut fw(dst)[p..p + len], buf.ip(), base, step, |x| x as f32)
                            }
                            (true, DType::I32) => {
                                load(&mut iw(dst)[p..p + len], buf.ip(), base, step, |x| x)
                            }
                            (true, DType::F32) => {
                                load(&mut iw(dst)[p..p + len], buf.fp(), base, step, |x| x as i32)
                            }
                        }
                    }
                }
                Op::Gather {
                    access,
                    arg,
                    index,
                    rows,
                    row_stride,
                    dst,
                } => {
                    let buf = args[arg as usize];
                    let idx = ir(index);
                    let step = self.accesses[access as usize].strides[last];
                    for (r, &(p, len)) in runs.iter().enumerate() {
                        let base = s.bases[r * na + access as usize];
                        let i0 = idx[p];
                        let whole_row = step == 1
                            && !dst.int
                            && buf.dtype == DType::F32
                            && idx[p..p + len].iter().all(|&x| x == i0);
                        if whole_row {
                            // one index over a contiguous run of its row: a slice copy
                            let out = &mut fw(dst)[p..p + len];
                            if i0 >= 0 && (i0 as usize) < rows {
                                let at = base + i0 as usize * row_stride;
                                debug_assert!(at + len <= buf.len, "gather past the end");
                                let src = std::slice::from_raw_parts(buf.fp().add(at), len);
                                out.copy_from_slice(src);
                            } else {
                                out.fill(0.0);
                            }
                            continue;
                        }
                        for e in p..p + len {
                            let r = idx[e];
                            let ok = r >= 0 && (r as usize) < rows;
                            let at = base
                                + (e - p) * step
                                + if ok { r as usize * row_stride } else { 0 };
                            debug_assert!(!ok || at < buf.len, "gather past the end");
                            match (dst.int, buf.dtype) {
                                (false, DType::F32) => {
                                    fw(dst)[e] = if ok { *buf.fp().add(at) } else { 0.0 }
                                }
                                (false, DType::I32) => {
                                    fw(dst)[e] = if ok { *buf.ip().add(at) as f32 } else { 0.0 }
                                }
                                (true, DType::I32) => {
                                    iw(dst)[e] = if ok { *buf.ip().add(at) } else { 0 }
                                }
                                (true, DType::F32) => {
                                    iw(dst)[e] = if ok { *buf.fp().add(at) as i32 } else { 0 }
                                }
                            }
                        }
                    }
                }
                Op::Random {
                    access,
                    seed,
                    counter,
                    dst,
                } => {
                    self.indices(s, access, n);
                    let c = ir(counter);
                    let out = fw(dst);
                    for e in 0..n {
                        out[e] =
                            kiln_ir::random::device_uniform(seed, c[e] as u32, s.idx[e] as u32);
                    }
                }
                Op::Acc { j, dst } => {
                    let j = j as usize;
                    match accs {
                        Accs::None => fill(f, ip, dst, n, Scalar::F(f32::NAN)),
                        Accs::Splat(v) => match v.get(j) {
                            Some(&x) => fill(f, ip, dst, n, x),
                            None => fill(f, ip, dst, n, Scalar::F(f32::NAN)),
                        },
                        Accs::Chunk {
                            values,
                            stride,
                            first,
                        } => {
                            let src = &values[j * stride + first..][..n];
                            if dst.int {
                                for (o, v) in iw(dst).iter_mut().zip(src) {
                                    *o = v.i();
                                }
                            } else {
                                for (o, v) in fw(dst).iter_mut().zip(src) {
                                    *o = v.f();
                                }
                            }
                        }
                        Accs::Cols { cols, first } => match cols.get(j) {
                            Some(AccCol::F(c)) => {
                                let src = &c[first..first + n];
                                if dst.int {
                                    for (o, v) in iw(dst).iter_mut().zip(src) {
                                        *o = *v as i32;
                                    }
                                } else {
                                    fw(dst).copy_from_slice(src);
                                }
                            }
                            Some(AccCol::I(c)) => {
                                let src = &c[first..first + n];
                                if dst.int {
                                    iw(dst).copy_from_slice(src);
                                } else {
                                    for (o, v) in fw(dst).iter_mut().zip(src) {
                                        *o = *v as f32;
                                    }
                                }
                            }
                            None => fill(f, ip, dst, n, Scalar::F(f32::NAN)),
                        },
                        Accs::Row(row) => {
                            if j == 0 {
                                if dst.int {
                                    for (o, v) in iw(dst).iter_mut().zip(row) {
                                        *o = *v as i32;
                                    }
                                } else {
                                    fw(dst).copy_from_slice(&row[..n]);
                                }
                            } else {
                                fill(f, ip, dst, n, Scalar::F(f32::NAN))
                            }
                        }
                    }
                }
                Op::Cast { src, dst } => match (src.int, dst.int) {
                    (false, false) => fw(dst).copy_from_slice(fr(src)),
                    (true, true) => iw(dst).copy_from_slice(ir(src)),
                    (true, false) => {
                        for (o, &x) in fw(dst).iter_mut().zip(ir(src)) {
                            *o = x as f32
                        }
                    }
                    (false, true) => {
                        for (o, &x) in iw(dst).iter_mut().zip(fr(src)) {
                            *o = x as i32
                        }
                    }
                },
                Op::Select { c, a, b, dst } => {
                    if dst.int {
                        let (a, b, o) = (ir(a), ir(b), iw(dst));
                        if c.int {
                            let c = ir(c);
                            for e in 0..n {
                                o[e] = if c[e] != 0 { a[e] } else { b[e] };
                            }
                        } else {
                            let c = fr(c);
                            for e in 0..n {
                                o[e] = if c[e] != 0.0 { a[e] } else { b[e] };
                            }
                        }
                    } else {
                        let (a, b, o) = (fr(a), fr(b), fw(dst));
                        if c.int {
                            let c = ir(c);
                            for e in 0..n {
                                o[e] = if c[e] != 0 { a[e] } else { b[e] };
                            }
                        } else {
                            let c = fr(c);
                            for e in 0..n {
                                o[e] = if c[e] != 0.0 { a[e] } else { b[e] };
                            }
                        }
                    }
                }
                Op::Un { op, src, dst } => {
                    if dst.int {
                        crate::math::unary_i32(op, ir(src), iw(dst))
                    } else {
                        crate::math::unary_f32(op, fr(src), fw(dst))
                    }
                }
                Op::Bin { op, a, b, dst } => {
                    if dst.int {
                        crate::math::binary_i32(op, ir(a), ir(b), iw(dst))
                    } else {
                        crate::math::binary_f32(op, fr(a), fr(b), fw(dst))
                    }
                }
            }
            if u && full > 1 {
                let d = op_dst(op);
                len_now.set(full);
                if d.int {
                    let r = iw(d);
                    let x = r[0];
                    r[1..].fill(x);
                } else {
                    let r = fw(d);
                    let x = r[0];
                    r[1..].fill(x);
                }
            }
        }
        let n = full;
        len_now.set(n);
        for st in &self.stores {
            let buf = args[st.arg as usize];
            let step = self.accesses[st.access as usize].strides[last];
            for (r, &(p, len)) in s.runs.iter().enumerate() {
                let base = s.bases[r * na + st.access as usize];
                debug_assert!(base + (len - 1) * step < buf.len, "store past the end");
                match (st.src.int, buf.dtype) {
                    (false, DType::F32) => {
                        store(&fr(st.src)[p..p + len], buf.fp(), base, step, |x| x)
                    }
                    (false, DType::I32) => {
                        store(&fr(st.src)[p..p + len], buf.ip(), base, step, |x| x as i32)
                    }
                    (true, DType::I32) => {
                        store(&ir(st.src)[p..p + len], buf.ip(), base, step, |x| x)
                    }
                    (true, DType::F32) => {
                        store(&ir(st.src)[p..p + len], buf.fp(), base, step, |x| x as f32)
                    }
                }
            }
        }
    }

    /// Fills `s.idx[..n]` with the element index of `access` at every element of the block.
    fn indices(&self, s: &mut Scratch, access: u32, n: usize) {
        let na = self.accesses.len();
        let step = self.accesses[access as usize].strides[self.dims.len() - 1];
        for (r, &(p, len)) in s.runs.iter().enumerate() {
            let base = s.bases[r * na + access as usize];
            for (j, o) in s.idx[p..p + len].iter_mut().enumerate() {
                *o = base + j * step;
            }
        }
        let _ = n;
    }
}
