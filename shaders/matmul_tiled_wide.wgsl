// kiln library kernel: batched matmul, wide workgroup-memory tiles (large products on GPUs).
//
//   acc[b, i, j] = sum_p A[b, i, p] * B[b, p, j];  epilogue(acc, b, i, j) stores the result
//
// COMPOSITION. As for matmul_tiled.wgsl: kiln-wgpu's codegen prepends a generated part
// declaring the bindings, `fn load_a(e: u32) -> f32`, `fn load_b(e: u32) -> f32` (element e
// of A's / B's buffer), their 4-wide forms `load_a4(e)` / `load_b4(e)` (elements e + q * A_CS
// or e + q * B_CS for q < 4: one vec4 load where the operand is contiguous and aligned),
// `fn epilogue(acc: f32, b: u32, i: u32, j: u32)`, the column sums' hooks (`const SUMS`,
// `fn column_sum(colsum: f32, j: u32)`) and the offsets a_off() / b_off():
//   A(b, i, p) = load_a(a_off() + b * A_BS + i * A_RS + p * A_CS)
//   B(b, p, j) = load_b(b_off() + b * B_BS + p * B_RS + j * B_CS)
//
// WORK SPLIT (kiln's `MatMulVariant::WorkgroupTiledWide`). A workgroup of 256 invocations
// (16 x 16, each an 8 x 8 register block) computes one 128 x 128 tile of C:
//   tiles_m = ceil(M / 128), tiles_n = ceil(N / 128)
//   workgroups = BATCH * tiles_m * tiles_n, threads = workgroups * 256
// Workgroup w = wid.x + wid.y * nwg.x owns tile tn = w % tiles_n, tm = (w / tiles_n) %
// tiles_m of batch b = w / (tiles_n * tiles_m); workgroups past the end return at once.
// Invocation (ty, tx) = (lid / 16, lid % 16) owns rows 128 tm + 64 h + 4 ty + r and columns
// 128 tn + 64 v + 4 tx + c (h, v < 2; r, c < 4): each of its four 4 x 4 blocks is one
// 4-wide read of A's and of B's slab per k, so a k step is 4 workgroup-memory reads for 64
// multiply-adds (the 64 x 64 kernel: 8 reads for 16).
//
// Each step over k stages a 128 x 8 slab of A (transposed: a_tile[kk * 33 + r / 4][r % 4],
// one vec4 of padding per kk so that the transposing stores hit distinct banks) and an
// 8 x 128 slab of B (b_tile[kk * 32 + c / 4][c % 4]). Invocation lid reads A's row lid / 2,
// k quad lid % 2 (four consecutive k: one load_a4 where the quad is inside K) and B's row
// lid / 32, column quad lid % 32 (one load_b4 where the quad is inside N); out-of-range
// elements are 0. It synchronizes and accumulates 8 outer products. Every output is summed
// over p in increasing order with fma, as in the 64 x 64 kernel: the same bits.
//
// COLUMN SUMS: with SUMS, the invocations with ty = 0 of the workgroups of the first row of
// tiles add up the B values they read for their 8 columns, p in increasing order (padding
// adds +0.0), and hand each column's sum to column_sum once.

override M: u32 = 1u;
override N: u32 = 1u;
override K: u32 = 1u;
override BATCH: u32 = 1u;
override A_BS: u32 = 1u;
override A_RS: u32 = 1u;
override A_CS: u32 = 1u;
override B_BS: u32 = 1u;
override B_RS: u32 = 1u;
override B_CS: u32 = 1u;

const TS: u32 = 128u;
const BK: u32 = 8u;
// vec4s per kk row of the A slab (32 + 1 of padding) and of the B slab
const AS: u32 = 33u;
const BS: u32 = 32u;

var<workgroup> a_tile: array<vec4<f32>, 264>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tiles_m = (M + TS - 1u) / TS;
    let tiles_n = (N + TS - 1u) / TS;
    let w = wid.x + wid.y * nwg.x;
    if (w >= BATCH * tiles_m * tiles_n) {
        return;
    }
    let tn = w % tiles_n;
    let tm = (w / tiles_n) % tiles_m;
    let bi = w / (tiles_n * tiles_m);
    let row0 = tm * TS;
    let col0 = tn * TS;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let a_base = a_off() + bi * A_BS;
    let b_base = b_off() + bi * B_BS;
    // what this invocation stages: A row ar, k quad aq; B row bk, column quad bq
    let ar = lid / 2u;
    let aq = (lid % 2u) * 4u;
    let bk = lid / 32u;
    let bq = (lid % 32u) * 4u;
    let a_row = row0 + ar;
    let b_col = col0 + bq;

    var acc: array<vec4<f32>, 16>;
    var colsum0 = vec4<f32>(0.0);
    var colsum1 = vec4<f32>(0.0);
    let sums_here = SUMS && tm == 0u && ty == 0u;
    for (var k0 = 0u; k0 < K; k0 += BK) {
        // A: four consecutive k of row a_row
        var av = vec4<f32>(0.0);
        let ak = k0 + aq;
        if (a_row < M) {
            let e = a_base + a_row * A_RS + ak * A_CS;
            if (ak + 4u <= K) {
                av = load_a4(e);
            } else {
                for (var q = 0u; q < 4u; q++) {
                    if (ak + q < K) {
                        av[q] = load_a(e + q * A_CS);
                    }
                }
            }
        }
        for (var q = 0u; q < 4u; q++) {
            a_tile[(aq + q) * AS + ar / 4u][ar % 4u] = av[q];
        }
        // B: four consecutive columns of row k0 + bk
        var bv = vec4<f32>(0.0);
        if (k0 + bk < K) {
            let e = b_base + (k0 + bk) * B_RS + b_col * B_CS;
            if (b_col + 4u <= N) {
                bv = load_b4(e);
            } else {
                for (var q = 0u; q < 4u; q++) {
                    if (b_col + q < N) {
                        bv[q] = load_b(e + q * B_CS);
                    }
                }
            }
        }
        b_tile[bk * BS + lid % 32u] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = a_tile[kk * AS + ty];
            let a1 = a_tile[kk * AS + 16u + ty];
            let b0 = b_tile[kk * BS + tx];
            let b1 = b_tile[kk * BS + 16u + tx];
            if (sums_here) {
                colsum0 += b0;
                colsum1 += b1;
            }
            acc[0] = fma(vec4<f32>(a0.x), b0, acc[0]);
            acc[1] = fma(vec4<f32>(a0.x), b1, acc[1]);
            acc[2] = fma(vec4<f32>(a0.y), b0, acc[2]);
            acc[3] = fma(vec4<f32>(a0.y), b1, acc[3]);
            acc[4] = fma(vec4<f32>(a0.z), b0, acc[4]);
            acc[5] = fma(vec4<f32>(a0.z), b1, acc[5]);
            acc[6] = fma(vec4<f32>(a0.w), b0, acc[6]);
            acc[7] = fma(vec4<f32>(a0.w), b1, acc[7]);
            acc[8] = fma(vec4<f32>(a1.x), b0, acc[8]);
            acc[9] = fma(vec4<f32>(a1.x), b1, acc[9]);
            acc[10] = fma(vec4<f32>(a1.y), b0, acc[10]);
            acc[11] = fma(vec4<f32>(a1.y), b1, acc[11]);
            acc[12] = fma(vec4<f32>(a1.z), b0, acc[12]);
            acc[13] = fma(vec4<f32>(a1.z), b1, acc[13]);
            acc[14] = fma(vec4<f32>(a1.w), b0, acc[14]);
            acc[15] = fma(vec4<f32>(a1.w), b1, acc[15]);
        }
        workgroupBarrier();
    }

    // acc[2 * (4 h + r) + v] holds rows 64 h + 4 ty + r, columns 64 v + 4 tx + c
    for (var hr = 0u; hr < 8u; hr++) {
        let i = row0 + (hr / 4u) * 64u + ty * 4u + hr % 4u;
        if (i < M) {
            for (var v = 0u; v < 2u; v++) {
                for (var c = 0u; c < 4u; c++) {
                    let j = col0 + v * 64u + tx * 4u + c;
                    if (j < N) {
                        epilogue(acc[2u * hr + v][c], bi, i, j);
                    }
                }
            }
        }
    }
    if (sums_here) {
        for (var c = 0u; c < 4u; c++) {
            let j0 = col0 + tx * 4u + c;
            if (j0 < N) {
                column_sum(colsum0[c], j0);
            }
            let j1 = col0 + 64u + tx * 4u + c;
            if (j1 < N) {
                column_sum(colsum1[c], j1);
            }
        }
    }
}
