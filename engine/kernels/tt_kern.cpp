// kern::tt_matvec / tt_matmul: run the cost-chosen plan (tt_plan.h) with SIMD step kernels.
//
// A step is P blocks of C[rows, Q] = A[rows, red] * B[red, Q]. Two SIMD forms cover the model shapes:
//  - Q >= W (most steps): vectors run along Q. A register tile of RB rows x QV vectors accumulates
//    broadcast(A[row, c]) * B[c, q..q+QV*W) over the reduction; each B load feeds RB FMAs.
//  - Q == 1 (the first step, whose reduction is one contiguous core fibre): W rows at a time as dot
//    products along the reduction, folded with one haddp.
// Everything else (odd shapes, the Q % W columns) goes to the scalar step.
#include "kernels/kernels.h"
#include "kernels/simd.h"
#include "kernels/tt_plan.h"

namespace qtf {
namespace {

#if QTF_SIMD
using simd::V;
using simd::W;

// Core offsets of rows [r0, r0 + count): one division, then a walk over (outer, inner).
void row_offsets(const tt::Step& s, int r0, int count, ptrdiff_t* off) {
  int ro = r0 / s.row_count[1], ri = r0 - ro * s.row_count[1];
  for (int r = 0; r < count; ++r) {
    off[r] = ro * s.row_stride[0] + ri * s.row_stride[1];
    if (++ri == s.row_count[1]) ri = 0, ++ro;
  }
}

// Rows [r0, r0+RB) (row offsets `off`), columns [q0, q0 + QV*W), one block: B and C point at the block.
template <int RB, int QV>
inline void tile(const tt::Step& s, const ptrdiff_t* off, const float* B, float* C, int64_t q0) {
  const int64_t Q = s.Q;
  V acc[RB][QV];
  for (int r = 0; r < RB; ++r)
    for (int v = 0; v < QV; ++v) acc[r][v] = V(0.f);
  const float* b = B + q0;
  for (int so = 0; so < s.red_count[0]; ++so) {
    const float* a = s.core + so * s.red_stride[0];
    for (int si = 0; si < s.red_count[1]; ++si, b += Q) {
      const ptrdiff_t c = si * s.red_stride[1];
      V bv[QV];
      for (int v = 0; v < QV; ++v) bv[v] = V::load_unaligned(b + v * W);
      for (int r = 0; r < RB; ++r) {
        const V av(a[off[r] + c]);
        for (int v = 0; v < QV; ++v) acc[r][v] = xsimd::fma(av, bv[v], acc[r][v]);
      }
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int v = 0; v < QV; ++v) acc[r][v].store_unaligned(C + r * Q + q0 + v * W);
}

// All rows, columns [q_begin, q_end) (a multiple of QV*W). The P loop sits inside the row loop so a
// tile's core rows stay in L1 across blocks.
template <int RB, int QV>
void tile_pass(const tt::Step& s, const float* in, float* out, int64_t q_begin, int64_t q_end) {
  const int rows = s.rows();
  const int64_t Q = s.Q, block_in = (int64_t)s.red() * Q, block_out = (int64_t)rows * Q;
  int r0 = 0;
  for (; r0 + RB <= rows; r0 += RB) {
    ptrdiff_t off[RB];
    row_offsets(s, r0, RB, off);
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q0 = q_begin; q0 < q_end; q0 += QV * W)
        tile<RB, QV>(s, off, in + p * block_in, out + p * block_out + r0 * Q, q0);
  }
  for (; r0 < rows; ++r0) {
    ptrdiff_t off;
    row_offsets(s, r0, 1, &off);
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q0 = q_begin; q0 < q_end; q0 += QV * W)
        tile<1, QV>(s, &off, in + p * block_in, out + p * block_out + r0 * Q, q0);
  }
}

// The reduction as `outer` runs of `inner` contiguous floats (A: run o starts at o*outer_stride).
struct Runs {
  int outer;
  ptrdiff_t outer_stride;
  int inner;
};

// True when the reduction of `s` is contiguous in the core along its inner axis, with runs of >= W.
bool contiguous_runs(const tt::Step& s, Runs* runs) {
  int oc = s.red_count[0], ic = s.red_count[1];
  ptrdiff_t os = s.red_stride[0], is = s.red_stride[1];
  if (ic == 1) oc = 1, ic = s.red_count[0], is = os, os = 0;
  if (is != 1) return false;
  if (oc > 1 && os == ic) ic *= oc, oc = 1, os = 0;  // back-to-back runs: one long run
  *runs = Runs{oc, os, ic};
  return ic >= W;
}

// Scalar part of <A row, B> over the run tails [vec_end, inner) (odd shapes only).
float run_tails(const Runs& runs, int vec_end, const float* a, const float* b) {
  float sum = 0.f;
  for (int o = 0; o < runs.outer; ++o)
    for (int t = vec_end; t < runs.inner; ++t) sum += a[o * runs.outer_stride + t] * b[o * runs.inner + t];
  return sum;
}

// Q == 1: C[row] = <A[row, :], B> for each block, W rows per haddp.
void dot_pass(const tt::Step& s, const Runs& runs, const float* in, float* out) {
  const int rows = s.rows(), red = s.red();
  const int vec_end = runs.inner - runs.inner % W;
  int r0 = 0;
  for (; r0 + W <= rows; r0 += W) {
    ptrdiff_t off[W];
    row_offsets(s, r0, W, off);
    for (int64_t p = 0; p < s.P; ++p) {
      const float* B = in + p * red;
      V acc[W];
      for (int r = 0; r < W; ++r) acc[r] = V(0.f);
      for (int o = 0; o < runs.outer; ++o) {
        const float* a = s.core + o * runs.outer_stride;
        const float* b = B + o * runs.inner;
        for (int t = 0; t < vec_end; t += W) {
          const V bv = V::load_unaligned(b + t);
          for (int r = 0; r < W; ++r) acc[r] = xsimd::fma(V::load_unaligned(a + off[r] + t), bv, acc[r]);
        }
      }
      // Not xsimd::haddp: xsimd 8.1's AVX-512 haddp returns the sums of rows 2,3 and 4,5 (and 10,11
      // and 12,13) swapped, which made this step wrong under AVX-512 (tests/kernels).
      alignas(64) float lane_sums[W];
      for (int r = 0; r < W; ++r) lane_sums[r] = xsimd::hadd(acc[r]);
      V sums = V::load_aligned(lane_sums);
      if (vec_end < runs.inner) {
        alignas(64) float tails[W];
        for (int r = 0; r < W; ++r) tails[r] = run_tails(runs, vec_end, s.core + off[r], B);
        sums += V::load_aligned(tails);
      }
      sums.store_unaligned(out + p * rows + r0);
    }
  }
  for (; r0 < rows; ++r0) {
    ptrdiff_t off;
    row_offsets(s, r0, 1, &off);
    for (int64_t p = 0; p < s.P; ++p) {
      const float* B = in + p * red;
      V acc(0.f);
      for (int o = 0; o < runs.outer; ++o) {
        const float* a = s.core + o * runs.outer_stride + off;
        const float* b = B + o * runs.inner;
        for (int t = 0; t < vec_end; t += W) acc = xsimd::fma(V::load_unaligned(a + t), V::load_unaligned(b + t), acc);
      }
      out[p * rows + r0] = xsimd::hadd(acc) + run_tails(runs, vec_end, s.core + off, B);
    }
  }
}

void step_simd(const tt::Step& s, const float* in, float* out) {
  Runs runs;
  if (s.Q == 1 && contiguous_runs(s, &runs)) return dot_pass(s, runs, in, out);
  const int64_t q2 = s.Q - s.Q % (2 * W), q1 = s.Q - s.Q % W;
  if (q2 > 0) tile_pass<4, 2>(s, in, out, 0, q2);
  if (q1 > q2) tile_pass<8, 1>(s, in, out, q2, q1);
  if (s.Q > q1) tt::step_scalar(s, in, out, q1);
}
#else
void step_simd(const tt::Step& s, const float* in, float* out) { tt::step_scalar(s, in, out, 0); }
#endif

}  // namespace

namespace kern {

size_t tt_workspace_floats(const TTShape& s, int batch) { return tt::workspace_floats(s, batch); }

void tt_matmul(const TTMatrix& W, int rank, const float* X, int batch, float* Y, float* workspace) {
  tt::run_plan(tt::best_plan(W, rank, batch), W, batch, X, Y, workspace, step_simd);
}

void tt_matvec(const TTMatrix& W, int rank, const float* x, float* y, float* workspace) {
  tt_matmul(W, rank, x, 1, y, workspace);
}

}  // namespace kern
}  // namespace qtf
