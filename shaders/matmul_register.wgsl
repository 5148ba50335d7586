// kiln library kernel: batched matmul, register-blocked, no workgroup memory, no barriers.
//
//   acc[b, i, j] = sum_p A[b, i, p] * B[b, p, j];  epilogue(acc, b, i, j) stores the result
//
// COMPOSITION. This file is not a complete shader. kiln-wgpu's codegen prepends a generated
// part (printed by its typed WGSL writer) that declares, for the kernel at hand:
//   - the storage bindings: kernel arg i is `arg{i}` at @group(0) @binding(i);
//   - fn load_a(e: u32) -> f32 / fn load_b(e: u32) -> f32: element e of A's / B's buffer;
//   - fn load_a4(e: u32) -> vec4<f32>: A at e, e + A_CS, e + 2 A_CS, e + 3 A_CS (4 steps of k);
//   - fn load_b4(e: u32) -> vec4<f32>: B at e, e + B_CS, e + 2 B_CS, e + 3 B_CS (4 columns);
//   - fn epilogue(acc: f32, b: u32, i: u32, j: u32): evaluates the kernel's fused epilogue
//     at output [b, i, j] (acc = the dot product) and performs its stores.
// This file refers to nothing else, so one library source serves every epilogue, and shapes
// and strides arrive as `override` constants (set at pipeline creation):
//   A(b, i, p) = load_a(A_OFF + b * A_BS + i * A_RS + p * A_CS)
//   B(b, p, j) = load_b(B_OFF + b * B_BS + p * B_RS + j * B_CS)
// Transposed operands are read in place through their strides.
//
// WORK SPLIT (kiln's `MatMulVariant::RegisterBlocked`). One invocation per TM x TN block of
// the output, numbered as in every kiln kernel, t = gid.x + gid.y * (nwg.x * WG):
//   tiles_m = ceil(M / TM), tiles_n = ceil(N / TN), threads = BATCH * tiles_m * tiles_n
//   tn = t % tiles_n, tm = (t / tiles_n) % tiles_m, b = t / (tiles_n * tiles_m)
// Invocations past `threads` return. Any workgroup size WG works.
//
// WHY THIS SHAPE. On CPU adapters (lavapipe/llvmpipe) the invocations of a workgroup run as
// SIMD lanes and every storage-buffer load is a loop over the lanes, one per load
// instruction, reading all components of a vector load in the same pass. So the kernel
// minimizes load instructions per multiply-add: each k step of four reads, per row, one
// vec4 of A along k (load_a4) and, per column quad, four vec4s of B along j (load_b4),
// then does 4 * TM * TN fused multiply-adds; TM x TN = 8 x 8 measured best (larger blocks
// spill). load_a4 / load_b4 are aligned vec4 loads when the operand is contiguous along the
// read dimension (the generated part decides), strided reads otherwise. No barriers (very
// slow on CPU adapters), no workgroup memory. Edge blocks clamp their load indices into the
// matrix (A rows to M - 1, B column quads to the last quad starting inside it; reads past
// the last column are never stored) and call epilogue only for i < M, j < N. The last
// K % 4 steps run one at a time. Every output is summed over p in increasing order.

override M: u32 = 1u;
override N: u32 = 1u;
override K: u32 = 1u;
override BATCH: u32 = 1u;
override A_OFF: u32 = 0u;
override A_BS: u32 = 1u;
override A_RS: u32 = 1u;
override A_CS: u32 = 1u;
override B_OFF: u32 = 0u;
override B_BS: u32 = 1u;
override B_RS: u32 = 1u;
override B_CS: u32 = 1u;
override WG: u32 = 64u;

// Register block of one invocation: TM rows by TN = 4 * TN4 columns (the kernel's tile;
// kiln_wgpu::codegen::MATMUL_REGISTER_TILE). The code below is unrolled by hand for it.
const TM: u32 = 8u;
const TN4: u32 = 2u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * (nwg.x * WG);
    let tiles_m = (M + TM - 1u) / TM;
    let tiles_n = (N + 4u * TN4 - 1u) / (4u * TN4);
    if (t >= BATCH * tiles_m * tiles_n) {
        return;
    }
    let tn = t % tiles_n;
    let tm = (t / tiles_n) % tiles_m;
    let bi = t / (tiles_n * tiles_m);
    let row0 = tm * TM;
    let col0 = tn * 4u * TN4;
    // First element of A(bi, row, 0) per row and of B(bi, 0, col) per column quad, clamped
    // into the matrix (column quads to the last one that starts inside it).
    let a_base = A_OFF + bi * A_BS;
    let b_base = B_OFF + bi * B_BS;
    let last_quad = ((N - 1u) / 4u) * 4u;
    let a0 = a_base + min(row0 + 0u, M - 1u) * A_RS;
    let a1 = a_base + min(row0 + 1u, M - 1u) * A_RS;
    let a2 = a_base + min(row0 + 2u, M - 1u) * A_RS;
    let a3 = a_base + min(row0 + 3u, M - 1u) * A_RS;
    let a4 = a_base + min(row0 + 4u, M - 1u) * A_RS;
    let a5 = a_base + min(row0 + 5u, M - 1u) * A_RS;
    let a6 = a_base + min(row0 + 6u, M - 1u) * A_RS;
    let a7 = a_base + min(row0 + 7u, M - 1u) * A_RS;
    let b0 = b_base + min(col0 + 0u, last_quad) * B_CS;
    let b1 = b_base + min(col0 + 4u, last_quad) * B_CS;
    var c0_0 = vec4<f32>(0.0);
    var c0_1 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0);
    var c1_1 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0);
    var c2_1 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0);
    var c3_1 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0);
    var c4_1 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0);
    var c5_1 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0);
    var c6_1 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0);
    var c7_1 = vec4<f32>(0.0);
    // Main loop: 4 steps of k per iteration, A read 4-wide along k, B 4-wide along j.
    let k4 = K - K % 4u;
    for (var p = 0u; p < k4; p += 4u) {
        let x0 = load_a4(a0 + p * A_CS);
        let x1 = load_a4(a1 + p * A_CS);
        let x2 = load_a4(a2 + p * A_CS);
        let x3 = load_a4(a3 + p * A_CS);
        let x4 = load_a4(a4 + p * A_CS);
        let x5 = load_a4(a5 + p * A_CS);
        let x6 = load_a4(a6 + p * A_CS);
        let x7 = load_a4(a7 + p * A_CS);
        let o0 = (p + 0u) * B_RS;
        let y0_0 = load_b4(b0 + o0);
        let y0_1 = load_b4(b1 + o0);
        let o1 = (p + 1u) * B_RS;
        let y1_0 = load_b4(b0 + o1);
        let y1_1 = load_b4(b1 + o1);
        let o2 = (p + 2u) * B_RS;
        let y2_0 = load_b4(b0 + o2);
        let y2_1 = load_b4(b1 + o2);
        let o3 = (p + 3u) * B_RS;
        let y3_0 = load_b4(b0 + o3);
        let y3_1 = load_b4(b1 + o3);
        c0_0 = fma(vec4<f32>(x0.x), y0_0, c0_0);
        c0_1 = fma(vec4<f32>(x0.x), y0_1, c0_1);
        c1_0 = fma(vec4<f32>(x1.x), y0_0, c1_0);
        c1_1 = fma(vec4<f32>(x1.x), y0_1, c1_1);
        c2_0 = fma(vec4<f32>(x2.x), y0_0, c2_0);
        c2_1 = fma(vec4<f32>(x2.x), y0_1, c2_1);
        c3_0 = fma(vec4<f32>(x3.x), y0_0, c3_0);
        c3_1 = fma(vec4<f32>(x3.x), y0_1, c3_1);
        c4_0 = fma(vec4<f32>(x4.x), y0_0, c4_0);
        c4_1 = fma(vec4<f32>(x4.x), y0_1, c4_1);
        c5_0 = fma(vec4<f32>(x5.x), y0_0, c5_0);
        c5_1 = fma(vec4<f32>(x5.x), y0_1, c5_1);
        c6_0 = fma(vec4<f32>(x6.x), y0_0, c6_0);
        c6_1 = fma(vec4<f32>(x6.x), y0_1, c6_1);
        c7_0 = fma(vec4<f32>(x7.x), y0_0, c7_0);
        c7_1 = fma(vec4<f32>(x7.x), y0_1, c7_1);
        c0_0 = fma(vec4<f32>(x0.y), y1_0, c0_0);
        c0_1 = fma(vec4<f32>(x0.y), y1_1, c0_1);
        c1_0 = fma(vec4<f32>(x1.y), y1_0, c1_0);
        c1_1 = fma(vec4<f32>(x1.y), y1_1, c1_1);
        c2_0 = fma(vec4<f32>(x2.y), y1_0, c2_0);
        c2_1 = fma(vec4<f32>(x2.y), y1_1, c2_1);
        c3_0 = fma(vec4<f32>(x3.y), y1_0, c3_0);
        c3_1 = fma(vec4<f32>(x3.y), y1_1, c3_1);
        c4_0 = fma(vec4<f32>(x4.y), y1_0, c4_0);
        c4_1 = fma(vec4<f32>(x4.y), y1_1, c4_1);
        c5_0 = fma(vec4<f32>(x5.y), y1_0, c5_0);
        c5_1 = fma(vec4<f32>(x5.y), y1_1, c5_1);
        c6_0 = fma(vec4<f32>(x6.y), y1_0, c6_0);
        c6_1 = fma(vec4<f32>(x6.y), y1_1, c6_1);
        c7_0 = fma(vec4<f32>(x7.y), y1_0, c7_0);
        c7_1 = fma(vec4<f32>(x7.y), y1_1, c7_1);
        c0_0 = fma(vec4<f32>(x0.z), y2_0, c0_0);
        c0_1 = fma(vec4<f32>(x0.z), y2_1, c0_1);
        c1_0 = fma(vec4<f32>(x1.z), y2_0, c1_0);
        c1_1 = fma(vec4<f32>(x1.z), y2_1, c1_1);
        c2_0 = fma(vec4<f32>(x2.z), y2_0, c2_0);
        c2_1 = fma(vec4<f32>(x2.z), y2_1, c2_1);
        c3_0 = fma(vec4<f32>(x3.z), y2_0, c3_0);
        c3_1 = fma(vec4<f32>(x3.z), y2_1, c3_1);
        c4_0 = fma(vec4<f32>(x4.z), y2_0, c4_0);
        c4_1 = fma(vec4<f32>(x4.z), y2_1, c4_1);
        c5_0 = fma(vec4<f32>(x5.z), y2_0, c5_0);
        c5_1 = fma(vec4<f32>(x5.z), y2_1, c5_1);
        c6_0 = fma(vec4<f32>(x6.z), y2_0, c6_0);
        c6_1 = fma(vec4<f32>(x6.z), y2_1, c6_1);
        c7_0 = fma(vec4<f32>(x7.z), y2_0, c7_0);
        c7_1 = fma(vec4<f32>(x7.z), y2_1, c7_1);
        c0_0 = fma(vec4<f32>(x0.w), y3_0, c0_0);
        c0_1 = fma(vec4<f32>(x0.w), y3_1, c0_1);
        c1_0 = fma(vec4<f32>(x1.w), y3_0, c1_0);
        c1_1 = fma(vec4<f32>(x1.w), y3_1, c1_1);
        c2_0 = fma(vec4<f32>(x2.w), y3_0, c2_0);
        c2_1 = fma(vec4<f32>(x2.w), y3_1, c2_1);
        c3_0 = fma(vec4<f32>(x3.w), y3_0, c3_0);
        c3_1 = fma(vec4<f32>(x3.w), y3_1, c3_1);
        c4_0 = fma(vec4<f32>(x4.w), y3_0, c4_0);
        c4_1 = fma(vec4<f32>(x4.w), y3_1, c4_1);
        c5_0 = fma(vec4<f32>(x5.w), y3_0, c5_0);
        c5_1 = fma(vec4<f32>(x5.w), y3_1, c5_1);
        c6_0 = fma(vec4<f32>(x6.w), y3_0, c6_0);
        c6_1 = fma(vec4<f32>(x6.w), y3_1, c6_1);
        c7_0 = fma(vec4<f32>(x7.w), y3_0, c7_0);
        c7_1 = fma(vec4<f32>(x7.w), y3_1, c7_1);
    }
    // The last K % 4 steps.
    for (var p = k4; p < K; p++) {
        let x0 = vec4<f32>(load_a(a0 + p * A_CS));
        let x1 = vec4<f32>(load_a(a1 + p * A_CS));
        let x2 = vec4<f32>(load_a(a2 + p * A_CS));
        let x3 = vec4<f32>(load_a(a3 + p * A_CS));
        let x4 = vec4<f32>(load_a(a4 + p * A_CS));
        let x5 = vec4<f32>(load_a(a5 + p * A_CS));
        let x6 = vec4<f32>(load_a(a6 + p * A_CS));
        let x7 = vec4<f32>(load_a(a7 + p * A_CS));
        let o = p * B_RS;
        let y0 = load_b4(b0 + o);
        let y1 = load_b4(b1 + o);
        c0_0 = fma(x0, y0, c0_0);
        c0_1 = fma(x0, y1, c0_1);
        c1_0 = fma(x1, y0, c1_0);
        c1_1 = fma(x1, y1, c1_1);
        c2_0 = fma(x2, y0, c2_0);
        c2_1 = fma(x2, y1, c2_1);
        c3_0 = fma(x3, y0, c3_0);
        c3_1 = fma(x3, y1, c3_1);
        c4_0 = fma(x4, y0, c4_0);
        c4_1 = fma(x4, y1, c4_1);
        c5_0 = fma(x5, y0, c5_0);
        c5_1 = fma(x5, y1, c5_1);
        c6_0 = fma(x6, y0, c6_0);
        c6_1 = fma(x6, y1, c6_1);
        c7_0 = fma(x7, y0, c7_0);
        c7_1 = fma(x7, y1, c7_1);
    }

    if (row0 + 0u < M) {
        store4(bi, row0 + 0u, col0 + 0u, c0_0);
        store4(bi, row0 + 0u, col0 + 4u, c0_1);
    }
    if (row0 + 1u < M) {
        store4(bi, row0 + 1u, col0 + 0u, c1_0);
        store4(bi, row0 + 1u, col0 + 4u, c1_1);
    }
    if (row0 + 2u < M) {
        store4(bi, row0 + 2u, col0 + 0u, c2_0);
        store4(bi, row0 + 2u, col0 + 4u, c2_1);
    }
    if (row0 + 3u < M) {
        store4(bi, row0 + 3u, col0 + 0u, c3_0);
        store4(bi, row0 + 3u, col0 + 4u, c3_1);
    }
    if (row0 + 4u < M) {
        store4(bi, row0 + 4u, col0 + 0u, c4_0);
        store4(bi, row0 + 4u, col0 + 4u, c4_1);
    }
    if (row0 + 5u < M) {
        store4(bi, row0 + 5u, col0 + 0u, c5_0);
        store4(bi, row0 + 5u, col0 + 4u, c5_1);
    }
    if (row0 + 6u < M) {
        store4(bi, row0 + 6u, col0 + 0u, c6_0);
        store4(bi, row0 + 6u, col0 + 4u, c6_1);
    }
    if (row0 + 7u < M) {
        store4(bi, row0 + 7u, col0 + 0u, c7_0);
        store4(bi, row0 + 7u, col0 + 4u, c7_1);
    }
}

// Calls the epilogue for the columns j..j+3 of row i that lie inside the matrix.
fn store4(bi: u32, i: u32, j: u32, v: vec4<f32>) {
    if (j < N) {
        epilogue(v.x, bi, i, j);
    }
    if (j + 1u < N) {
        epilogue(v.y, bi, i, j + 1u);
    }
    if (j + 2u < N) {
        epilogue(v.z, bi, i, j + 2u);
    }
    if (j + 3u < N) {
        epilogue(v.w, bi, i, j + 3u);
    }
}
