// TT-matrix shapes, the contraction plan (order chosen by FLOPs) and its scalar executor.
//
// Right-to-left keeps the intermediate as [j_1..j_k, a_k, i_{k+1}..i_K]: contracting core k sums over
// (j_k, a_k) and yields [j_1..j_{k-1}, a_{k-1}, i_k..i_K]. Left-to-right mirrors it with
// [i_1..i_{k-1}, a_{k-1}, j_k..j_K]. Either way every step is "P blocks of (core matrix) x (block)"
// with contiguous blocks, and a batch of vectors is just a larger P.
#include "kernels/tt_plan.h"


namespace qtf {

int64_t TTShape::rows() const {
  int64_t p = 1;
  for (int k = 0; k < K; ++k) p *= m[k];
  return p;
}

int64_t TTShape::cols() const {
  int64_t p = 1;
  for (int k = 0; k < K; ++k) p *= n[k];
  return p;
}

int64_t TTShape::params() const {
  int64_t p = 0;
  for (int k = 0; k < K; ++k) p += (int64_t)r[k] * m[k] * n[k] * r[k + 1];
  return p;
}

int64_t tt_matvec_flops(const TTShape& s, int rank) {
  TTMatrix shape_only;
  shape_only.shape = s;
  return tt::best_plan(shape_only, rank, 1).flops;
}

namespace tt {
namespace {

int64_t prod(const int* v, int begin, int end) {
  int64_t p = 1;
  for (int k = begin; k < end; ++k) p *= v[k];
  return p;
}

}  // namespace

Plan make_plan(const TTMatrix& W, int rank, int batch, Order order) {
  const TTShape& s = W.shape;
  const int K = s.K;
  if (rank < 1) rank = 1;
  int R[kMaxTTFactors + 1];  // bond ranks used at this run-time rank
  for (int b = 0; b <= K; ++b) R[b] = (b == 0 || b == K) ? 1 : (rank < s.r[b] ? rank : s.r[b]);

  Plan plan;
  plan.K = K;
  plan.order = order;
  for (int t = 0; t < K; ++t) {
    const int k = order == Order::right_to_left ? K - 1 - t : t;
    const int m = s.m[k], n = s.n[k];
    const ptrdiff_t rs = s.r[k + 1];  // stored right rank: the core's innermost stride is over it
    Step& st = plan.steps[t];
    st.core = W.cores[k];
    if (order == Order::right_to_left) {
      st.row_count[0] = R[k], st.row_stride[0] = (ptrdiff_t)m * n * rs;  // a_{k-1}
      st.row_count[1] = m, st.row_stride[1] = (ptrdiff_t)n * rs;         // i_k
      st.red_count[0] = n, st.red_stride[0] = rs;                        // j_k
      st.red_count[1] = R[k + 1], st.red_stride[1] = 1;                  // a_k
      st.P = (int64_t)batch * prod(s.n, 0, k);
      st.Q = prod(s.m, k + 1, K);
    } else {
      st.row_count[0] = m, st.row_stride[0] = (ptrdiff_t)n * rs;         // i_k
      st.row_count[1] = R[k + 1], st.row_stride[1] = 1;                  // a_k
      st.red_count[0] = R[k], st.red_stride[0] = (ptrdiff_t)m * n * rs;  // a_{k-1}
      st.red_count[1] = n, st.red_stride[1] = rs;                        // j_k
      st.P = (int64_t)batch * prod(s.m, 0, k);
      st.Q = prod(s.n, k + 1, K);
    }
    plan.flops += st.flops();
  }
  return plan;
}

Plan best_plan(const TTMatrix& W, int rank, int batch) {
  Plan rtl = make_plan(W, rank, batch, Order::right_to_left);
  Plan ltr = make_plan(W, rank, batch, Order::left_to_right);
  return rtl.flops < ltr.flops ? rtl : ltr;
}

namespace {
size_t round16(size_t n) { return (n + 15) / 16 * 16; }
size_t panel_floats(const Step& s) { return (size_t)(s.rows() + kPanelRows - 1) / kPanelRows * kPanelRows * s.red(); }
}  // namespace

size_t packed_floats(const Step& s) {
  return (s.Q == 1 ? round16((size_t)s.rows() * s.red()) : 0) + round16(panel_floats(s));
}

size_t packed_floats(const Plan& plan) {
  size_t n = 0;
  for (int t = 0; t < plan.K; ++t) n += packed_floats(plan.steps[t]);
  return n;
}

namespace {
// One step's copies (packed_floats(*s) floats at dst); points its `packed` and `panels` at them. f16
// and i8 cores are widened here, once (their values: Weights::value, the core's one scale applied).
void pack_step(Step* s, float* dst) {
  const int rows = s->rows(), red = s->red();
  const size_t n = packed_floats(*s);
  for (size_t i = 0; i < n; ++i) dst[i] = 0.f;  // the last panel's padding rows
  float* transposed = s->Q == 1 ? dst : nullptr;
  float* panels = dst + (s->Q == 1 ? round16((size_t)rows * red) : 0);
  for (int row = 0; row < rows; ++row) {
    const int ro = row / s->row_count[1], ri = row % s->row_count[1];
    const ptrdiff_t a_row = ro * s->row_stride[0] + ri * s->row_stride[1];
    for (int c = 0; c < red; ++c) {
      const int so = c / s->red_count[1], si = c % s->red_count[1];
      const float a = s->core.value(a_row + so * s->red_stride[0] + si * s->red_stride[1], 0);
      if (transposed) transposed[(size_t)c * rows + row] = a;
      panels[((size_t)(row / kPanelRows) * red + c) * kPanelRows + row % kPanelRows] = a;
    }
  }
  s->packed = transposed ? transposed : panels;
  s->panels = panels;
}
}  // namespace

void pack_plan(Plan* plan, float* dst) {
  for (int t = 0; t < plan->K; ++t) {
    pack_step(&plan->steps[t], dst);
    dst += packed_floats(plan->steps[t]);
  }
}

int64_t max_intermediate(const TTShape& s) {
  // Between cores b-1 and b (b = 1..K-1): right-to-left holds [n_1..n_b, r_b, m_{b+1}..m_K] (1-based),
  // left-to-right holds [m_1..m_b, r_b, n_{b+1}..n_K].
  // Two cores (a low-rank A B, as budget.py writes them, or any two-factor TT): both orders' FLOPs are
  // the one bond's rank times a constant (make_plan: 2 R n_1 m_2 (n_2 + m_1) right to left, 2 R m_1 n_2
  // (n_1 + m_2) left to right), so best_plan picks one order at every rank and only its intermediate is
  // ever held. The other one can be M r N: a 384 x 128 rank-64 A B would have sized 1.6 GB of workspace.
  if (s.K == 2) {
    const int64_t rtl = (int64_t)s.n[0] * s.m[1] * (s.n[1] + s.m[0]), ltr = (int64_t)s.m[0] * s.n[1] * (s.n[0] + s.m[1]);
    return rtl < ltr ? (int64_t)s.n[0] * s.r[1] * s.m[1] : (int64_t)s.m[0] * s.r[1] * s.n[1];  // ties: left to right
  }
  int64_t most = 0;
  for (int b = 1; b < s.K; ++b) {
    const int64_t rtl = prod(s.n, 0, b) * s.r[b] * prod(s.m, b, s.K);
    const int64_t ltr = prod(s.m, 0, b) * s.r[b] * prod(s.n, b, s.K);
    if (rtl > most) most = rtl;
    if (ltr > most) most = ltr;
  }
  return most;
}

namespace {
int buffers(const TTShape& s) { return s.K - 1 < 2 ? s.K - 1 : 2; }  // K-1 intermediates, ping-ponged
}  // namespace

size_t workspace_floats(const TTShape& s, int batch) {
  const int64_t M = s.rows(), N = s.cols();
  const size_t transposed = batch > 1 ? (size_t)(M > N ? M : N) : 0;  // run_columns' X^T, then Y^T
  return ((size_t)buffers(s) * (size_t)max_intermediate(s) + transposed) * (size_t)batch;
}

PartSplit part_split(const Plan& one) {
  PartSplit sp;
  if (one.K < 2) return sp;
  sp.sums = one.order == Order::right_to_left;
  sp.step = sp.sums ? one.K - 1 : 0;
  const Step& s = one.steps[sp.step];
  sp.count = sp.sums ? s.red_count[0] : s.row_count[0];  // j_1 (the last core's n) or i_1 (the first's m)
  return sp;
}

namespace {
// The divided step restricted to [lo, lo + n) of its outer row (or reduction) index, read in place.
Step part_step(const Step& s, const PartSplit& sp, int lo, int n) {
  Step sub = s;
  sub.packed = sub.panels = nullptr;
  if (sp.sums) {
    sub.red_count[0] = n;
    sub.core = s.core.from(lo * s.red_stride[0], 0);
  } else {
    sub.row_count[0] = n;
    sub.core = s.core.from(lo * s.row_stride[0], 0);
  }
  return sub;
}
void part_range(const PartSplit& sp, int part, int parts, int* lo, int* n) {
  *lo = sp.count * part / parts;
  *n = sp.count * (part + 1) / parts - *lo;
}
}  // namespace

bool part_plan(const Plan& one, int part, int parts, Plan* sub, int* lo, int* n, int64_t* x_offset) {
  const PartSplit sp = part_split(one);
  part_range(sp, part, parts, lo, n);
  if (*n <= 0) return false;
  *sub = one;
  sub->flops = 0;
  sub->parts = 0;
  sub->part_packed = nullptr;
  for (int t = 0; t < one.K; ++t) {
    const Step& s = one.steps[t];
    Step& d = sub->steps[t];
    if (t == sp.step) {
      d = part_step(s, sp, *lo, *n);
      if (one.part_packed && one.parts == parts) {  // after the earlier parts'
        const float* at = one.part_packed;
        for (int p = 0; p < part; ++p) {
          int plo, pn;
          part_range(sp, p, parts, &plo, &pn);
          if (pn > 0) at += packed_floats(part_step(s, sp, plo, pn));
        }
        d.packed = at;  // as pack_step lays it out
        d.panels = d.Q == 1 ? at + round16((size_t)d.rows() * d.red()) : at;
      }
    } else {  // the divided index is the outer factor of its blocks
      d.P = s.P / sp.count * *n;
    }
    sub->flops += d.flops();
  }
  // Left-to-right the first step reads all of x (one block); right-to-left block p of the first step
  // reads x[p * red .. (p + 1) * red), and the part's blocks are those with j_1 in range.
  *x_offset = sp.sums ? (int64_t)*lo * (one.steps[0].P / sp.count) * one.steps[0].red() * one.steps[0].Q : 0;
  return true;
}

size_t part_packed_floats(const Plan& one, int parts) {
  const PartSplit sp = part_split(one);
  size_t total = 0;
  for (int p = 0; sp.count > 0 && p < parts; ++p) {
    int lo, n;
    part_range(sp, p, parts, &lo, &n);
    if (n > 0) total += packed_floats(part_step(one.steps[sp.step], sp, lo, n));
  }
  return total;
}

void pack_parts(Plan* one, int parts, float* dst) {
  const PartSplit sp = part_split(*one);
  one->parts = parts;
  one->part_packed = parts > 0 ? dst : nullptr;
  for (int p = 0; sp.count > 0 && p < parts; ++p) {
    int lo, n;
    part_range(sp, p, parts, &lo, &n);
    if (n <= 0) continue;
    Step s = part_step(one->steps[sp.step], sp, lo, n);
    pack_step(&s, dst);
    dst += packed_floats(s);
  }
}

size_t part_workspace_floats(const TTShape& s) { return 2 * (size_t)max_intermediate(s) + (size_t)s.rows(); }

size_t workspace_floats(const TTShape& s, int batch, int threads) {
  const size_t vectors = workspace_floats(s, batch);
  if (threads < 2 || batch >= threads) return vectors;
  const size_t parts = (size_t)threads * part_workspace_floats(s);
  return parts > vectors ? parts : vectors;
}

void run_steps(const Plan& plan, const float* in, float* out, float* workspace, int64_t buffer, StepFn step) {
  for (int t = 0; t < plan.K; ++t) {
    float* o = t == plan.K - 1 ? out : workspace + (t % 2) * buffer;
    step(plan.steps[t], in, o);
    in = o;
  }
}

void run_plan(const Plan& plan, const TTMatrix& W, int batch, const float* X, float* Y, float* workspace,
              StepFn step) {
  run_steps(plan, X, Y, workspace, max_intermediate(W.shape) * batch, step);
  if (W.bias) {
    const int64_t M = W.shape.rows();
    for (int b = 0; b < batch; ++b)
      for (int64_t i = 0; i < M; ++i) Y[b * M + i] += W.bias[i];
  }
}

Plan columns_plan(const Plan& one, int batch) {
  Plan plan = one;
  plan.flops = 0;
  for (int t = 0; t < plan.K; ++t) {
    Step& s = plan.steps[t];
    s.Q *= batch;
    s.packed = s.panels;
    plan.flops += s.flops();
  }
  return plan;
}

bool columns_pay(const TTMatrix& W, const Plan& one, int batch) {
  if (batch < kColumnsMinBatch || one.K < 2) return false;
  if (one.flops < kColumnsMinFlops * (W.shape.rows() + W.shape.cols())) return false;
  for (int t = 0; t < one.K; ++t)
    if (one.steps[t].panels == nullptr) return false;
  return true;
}

void run_columns(const Plan& one, const TTMatrix& W, int batch, const float* X, float* Y, float* workspace,
                 StepFn step, TransposeFn transpose) {
  const int chunks = (batch + kColumnsMaxBatch - 1) / kColumnsMaxBatch;  // of equal size, within one
  const int64_t M = W.shape.rows(), N = W.shape.cols();
  for (int c = 0; c < chunks; ++c) {
    const int b0 = batch * c / chunks, b1 = batch * (c + 1) / chunks, B = b1 - b0;
    const Plan plan = columns_plan(one, B);
    const int64_t buffer = max_intermediate(W.shape) * B;
    float* T = workspace + buffers(W.shape) * buffer;  // X^T [N][B] (read by step 0), later Y^T [M][B]
    transpose(X + b0 * N, B, N, N, T, B);
    run_steps(plan, T, T, workspace, buffer, step);  // step 0 reads X^T from T before the last writes Y^T
    float* Yc = Y + b0 * M;
    transpose(T, M, B, B, Yc, M);
    for (int b = 0; W.bias && b < B; ++b)
      for (int64_t i = 0; i < M; ++i) Yc[b * M + i] += W.bias[i];
  }
}

namespace {
// One step with the core's values read by get(index) (the type switch stays outside the loops).
template <class Get>
void step_scalar_by(const Step& s, const float* in, float* out, int64_t q_begin, Get get) {
  const int rows = s.rows(), red = s.red();
  const int64_t Q = s.Q;
  for (int64_t p = 0; p < s.P; ++p) {
    const float* B = in + p * red * Q;
    float* C = out + p * rows * Q;
    for (int ro = 0; ro < s.row_count[0]; ++ro) {
      for (int ri = 0; ri < s.row_count[1]; ++ri) {
        const ptrdiff_t a_row = ro * s.row_stride[0] + ri * s.row_stride[1];
        float* c = C + ((int64_t)ro * s.row_count[1] + ri) * Q;
        for (int64_t q = q_begin; q < Q; ++q) c[q] = 0.f;
        const float* b = B;
        for (int so = 0; so < s.red_count[0]; ++so) {
          for (int si = 0; si < s.red_count[1]; ++si, b += Q) {
            const float a = get(a_row + so * s.red_stride[0] + si * s.red_stride[1]);
            for (int64_t q = q_begin; q < Q; ++q) c[q] += a * b[q];
          }
        }
      }
    }
  }
}
}  // namespace

void step_scalar(const Step& s, const float* in, float* out, int64_t q_begin) {
  const void* data = s.core.data;
  switch (s.core.type) {
    case WType::f32: {
      const float* a = static_cast<const float*>(data);
      return step_scalar_by(s, in, out, q_begin, [a](ptrdiff_t i) { return a[i]; });
    }
    case WType::f16: {
      const uint16_t* a = static_cast<const uint16_t*>(data);
      return step_scalar_by(s, in, out, q_begin, [a](ptrdiff_t i) { return qtf::f16_to_f32(a[i]); });
    }
    case WType::i8: {
      const int8_t* a = static_cast<const int8_t*>(data);
      const float scale = s.core.scale;
      return step_scalar_by(s, in, out, q_begin, [a, scale](ptrdiff_t i) { return scale * (float)a[i]; });
    }
    case WType::q4: break;  // never a core: the loader converts q4 cores to f32 (model.cpp)
  }
}

}  // namespace tt
}  // namespace qtf
