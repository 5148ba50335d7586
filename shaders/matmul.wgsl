// kiln library kernel: batched matmul, register-blocked 4x4, for any strided operands.
//
//   C[b, i, j] = sum_p A[b, i, p] * B[b, p, j]       C contiguous [BATCH, M, N]
//
// Operands are read in place through their strides, so transposed operands cost nothing:
//   A(b, i, p) = a[A_OFF + b * A_BS + i * A_RS + p * A_CS]
//   B(b, p, j) = b[B_OFF + b * B_BS + p * B_RS + j * B_CS]
//
// Work split. The dispatch numbers threads t = gid.x + gid.y * (num_workgroups.x * WG)
// (kiln's `Step::Dispatch` convention). Thread t owns one 4x4 block of C:
//   TM = ceil(M / 4), TN = ceil(N / 4), threads = BATCH * TM * TN
//   tn = t % TN, tm = (t / TN) % TM, batch = t / (TM * TN)
//   rows 4*tm .. 4*tm+3, columns 4*tn .. 4*tn+3
// Neighbouring threads take neighbouring column blocks, so their loads of B are adjacent.
//
// No workgroup memory and no barriers: CPU-type adapters (lavapipe, SwiftShader, WARP) pay
// heavily for barriers, and the 16 accumulators live in registers. Edge blocks clamp their
// load indices into range (every load is in bounds; clamped lanes compute values that are
// never stored) and mask their stores. Each output is summed over p in increasing order.
//
// Overrides are set by the executor through PipelineCompilationOptions::constants; the
// defaults below only make the file valid on its own.

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

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

// Writes the columns of `v` that fall inside the matrix, starting at element `at` of C.
fn store_row(at: u32, ncols: u32, v: vec4<f32>) {
    c[at] = v.x;
    if (ncols > 1u) { c[at + 1u] = v.y; }
    if (ncols > 2u) { c[at + 2u] = v.z; }
    if (ncols > 3u) { c[at + 3u] = v.w; }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * (nwg.x * WG);
    let tiles_m = (M + 3u) / 4u;
    let tiles_n = (N + 3u) / 4u;
    if (t >= BATCH * tiles_m * tiles_n) {
        return;
    }
    let tn = t % tiles_n;
    let tm = (t / tiles_n) % tiles_m;
    let bi = t / (tiles_n * tiles_m);
    let row = tm * 4u;
    let col = tn * 4u;
    let lane = vec4<u32>(0u, 1u, 2u, 3u);

    // Element index of A(bi, row + r, 0) and B(bi, 0, col + s), lanes clamped into range.
    let a_row = vec4<u32>(A_OFF + bi * A_BS) + min(vec4<u32>(row) + lane, vec4<u32>(M - 1u)) * A_RS;
    let b_col = vec4<u32>(B_OFF + bi * B_BS) + min(vec4<u32>(col) + lane, vec4<u32>(N - 1u)) * B_CS;

    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var p = 0u; p < K; p++) {
        let ap = a_row + vec4<u32>(p * A_CS);
        let bp = b_col + vec4<u32>(p * B_RS);
        let bv = vec4<f32>(b[bp.x], b[bp.y], b[bp.z], b[bp.w]);
        c0 += a[ap.x] * bv;
        c1 += a[ap.y] * bv;
        c2 += a[ap.z] * bv;
        c3 += a[ap.w] * bv;
    }

    let ncols = min(4u, N - col);
    let nrows = min(4u, M - row);
    let at = (bi * M + row) * N + col;
    store_row(at, ncols, c0);
    if (nrows > 1u) { store_row(at + N, ncols, c1); }
    if (nrows > 2u) { store_row(at + 2u * N, ncols, c2); }
    if (nrows > 3u) { store_row(at + 3u * N, ncols, c3); }
}
