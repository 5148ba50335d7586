// kiln library kernel: batched matmul, workgroup-memory tiles (discrete and integrated GPUs).
//
//   acc[b, i, j] = sum_p A[b, i, p] * B[b, p, j];  epilogue(acc, b, i, j) stores the result
//
// COMPOSITION. As for matmul_register.wgsl, kiln-wgpu's codegen prepends a generated part
// (typed WGSL writer) declaring the bindings (kernel arg i is `arg{i}` at binding i),
// `fn load_a(e: u32) -> f32`, `fn load_b(e: u32) -> f32` (element e of A's / B's buffer) and
// `fn epilogue(acc: f32, b: u32, i: u32, j: u32)` (the kernel's fused epilogue and stores),
// and the column sums' hooks (below).
// Shapes and strides are `override` constants; the operands' element offsets come from
// the generated functions a_off() / b_off() (a uniform table):
//   A(b, i, p) = load_a(a_off() + b * A_BS + i * A_RS + p * A_CS)
//   B(b, p, j) = load_b(b_off() + b * B_BS + p * B_RS + j * B_CS)
//
// WORK SPLIT (kiln's `MatMulVariant::WorkgroupTiled`). A workgroup of 256 invocations
// (16 x 16, each a 4 x 4 register block) computes one 64 x 64 tile of C:
//   tiles_m = ceil(M / 64), tiles_n = ceil(N / 64)
//   workgroups = BATCH * tiles_m * tiles_n, threads = workgroups * 256
// Workgroup w = wid.x + wid.y * nwg.x (the `Step::Dispatch` numbering, thread / 256) owns
// tile tn = w % tiles_n, tm = (w / tiles_n) % tiles_m of batch b = w / (tiles_n * tiles_m);
// workgroups past the end return at once (a workgroup-uniform branch). Invocation
// (ty, tx) = (lid / 16, lid % 16) owns rows 64 tm + ty + 16 r and columns 64 tn + tx + 16 c
// (r, c < 4), so neighbouring invocations store neighbouring columns.
//
// Each step over k stages a 64 x 16 slab of A and a 16 x 64 slab of B in workgroup memory
// (4 elements of each per invocation, out-of-range elements as 0), synchronizes, and
// accumulates 16 outer products. Every output is summed over p in increasing order.
//
// COLUMN SUMS (`KernelOp::MatMul::sums`: a bias gradient riding in its weight gradient).
// The generated part also declares `const SUMS: bool` and `fn column_sum(colsum: f32,
// j: u32)`. With SUMS, the invocations with ty = 0 of the workgroups of the first row of
// tiles (tm = 0) add up the B values they read for their 4 columns, p in increasing order
// (the padding past K adds +0.0, which changes no sum that starts at +0.0), and hand each
// column's sum to column_sum once: column j's sum is taken in the same order as the CPU
// backends' and with the same bits, and with no serial pass over B after the product.

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

const TS: u32 = 64u;
const BK: u32 = 16u;

// a_tile[kk * TS + row] and b_tile[kk * TS + col].
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

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

    var acc: array<vec4<f32>, 4>;
    var colsum = vec4<f32>(0.0);
    let sums_here = SUMS && tm == 0u && ty == 0u;
    for (var k0 = 0u; k0 < K; k0 += BK) {
        for (var q = 0u; q < 4u; q++) {
            let e = lid + 256u * q;
            // A slab: 64 rows x 16 k, k fastest (contiguous for row-major A).
            let ar = e / BK;
            let ak = e % BK;
            var av = 0.0;
            if (row0 + ar < M && k0 + ak < K) {
                av = load_a(a_base + (row0 + ar) * A_RS + (k0 + ak) * A_CS);
            }
            a_tile[ak * TS + ar] = av;
            // B slab: 16 k x 64 columns, columns fastest (contiguous for row-major B).
            let bk = e / TS;
            let bc = e % TS;
            var bv = 0.0;
            if (k0 + bk < K && col0 + bc < N) {
                bv = load_b(b_base + (k0 + bk) * B_RS + (col0 + bc) * B_CS);
            }
            b_tile[bk * TS + bc] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let b = vec4<f32>(
                b_tile[kk * TS + tx],
                b_tile[kk * TS + tx + 16u],
                b_tile[kk * TS + tx + 32u],
                b_tile[kk * TS + tx + 48u],
            );
            if (sums_here) {
                colsum += b;
            }
            for (var r = 0u; r < 4u; r++) {
                acc[r] = fma(vec4<f32>(a_tile[kk * TS + ty + 16u * r]), b, acc[r]);
            }
        }
        workgroupBarrier();
    }

    for (var r = 0u; r < 4u; r++) {
        let i = row0 + ty + 16u * r;
        if (i < M) {
            for (var c = 0u; c < 4u; c++) {
                let j = col0 + tx + 16u * c;
                if (j < N) {
                    epilogue(acc[r][c], bi, i, j);
                }
            }
        }
    }
    if (sums_here) {
        for (var c = 0u; c < 4u; c++) {
            let j = col0 + tx + 16u * c;
            if (j < N) {
                column_sum(colsum[c], j);
            }
        }
    }
}
