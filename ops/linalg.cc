// Linear algebra: matmul with NumPy semantics. A 1-d left operand is treated
// as a row vector and a 1-d right operand as a column vector, the added dim is
// removed from the result, and the batch dims (all but the last two) broadcast.
// The gradient is written with matmul itself: dA = g @ B^T, dB = A^T @ g, then
// summed over broadcast batch dims.
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using G = const GradContext&;
using Grads = std::vector<Tensor>;

// Dims equal, or unknown (-1) in graph mode.
bool dims_match(int64_t a, int64_t b) { return a == b || a == -1 || b == -1; }

std::vector<TensorMeta> infer_matmul(const InferContext& c) {
  const Shape& a = c.input(0).shape;
  const Shape& b = c.input(1).shape;
  DType dt = c.input(0).dtype;  // inputs are already promoted to one dtype
  NDF_CHECK(a.size() >= 1 && b.size() >= 1, ShapeError,
            "[matmul] operands must be at least 1-d: a has shape ", shape_str(a), ", b has shape ",
            shape_str(b), " (multiply by a 0-d tensor with mul instead)");
  NDF_CHECK(is_floating(dt), TypeError, "[matmul] integer and bool matmul are not supported: a is ",
            dtype_name(c.input(0).dtype), ", b is ", dtype_name(c.input(1).dtype),
            "; cast to f32 or f64 first");
  int64_t ka = a[a.size() - 1];
  int64_t kb = b.size() == 1 ? b[0] : b[b.size() - 2];
  if (!dims_match(ka, kb))
    fail<ShapeError>("[matmul] inner dimensions differ: a has shape ", shape_str(a),
                     ", b has shape ", shape_str(b), " (a's last dim ", ka, " must equal b's ",
                     b.size() == 1 ? "length " : "second-to-last ", kb, ")");

  // Batch dims broadcast as in NumPy, right-aligned.
  size_t ba = a.size() >= 2 ? a.size() - 2 : 0, bb = b.size() >= 2 ? b.size() - 2 : 0;
  size_t nb = std::max(ba, bb);
  Shape out;
  out.resize(nb);
  for (size_t i = 0; i < nb; ++i) {
    int64_t da = i < nb - ba ? 1 : a[i - (nb - ba)];
    int64_t db = i < nb - bb ? 1 : b[i - (nb - bb)];
    if (da == db || db == 1) out[i] = da;
    else if (da == 1) out[i] = db;
    else if (da == -1 || db == -1) out[i] = da == -1 ? db : da;
    else
      fail<ShapeError>("[matmul] batch dimensions do not broadcast: a has shape ", shape_str(a),
                       ", b has shape ", shape_str(b), " (batch dim ", i, " is ", da, " vs ", db,
                       "; each must be equal or 1)");
  }
  if (a.size() >= 2) out.push_back(a[a.size() - 2]);
  if (b.size() >= 2) out.push_back(b[b.size() - 1]);
  return {TensorMeta{out, dt, c.input(0).device}};
}

// Gradient of y = a @ b. 1-d operands are promoted to matrices exactly as the
// forward pass does, so the 2-d formulas apply; the promoted dims are squeezed
// off again at the end.
Grads grad_matmul(G g) {
  const Tensor &a = g.input(0), &b = g.input(1);
  Tensor go = g.grad_output(0);
  bool a_vec = a.rank() == 1, b_vec = b.rank() == 1;
  Tensor a2 = a_vec ? unsqueeze(a, 0) : a;   // [K] -> [1, K]
  Tensor b2 = b_vec ? unsqueeze(b, 1) : b;   // [K] -> [K, 1]
  if (a_vec && b_vec) go = unsqueeze(unsqueeze(go, 0), 1);   // [] -> [1, 1]
  else if (a_vec) go = unsqueeze(go, -2);                      // [..., N] -> [..., 1, N]
  else if (b_vec) go = unsqueeze(go, -1);                      // [..., M] -> [..., M, 1]

  Tensor ga, gb;
  if (g.needs_input_grad(0)) {
    ga = sum_to_like(matmul(go, transpose(b2, -1, -2)), a2);
    if (a_vec) ga = squeeze(ga, {0});
  }
  if (g.needs_input_grad(1)) {
    if (b2.rank() == 2 && a2.rank() > 2) {
      // A matrix applied to a batch (a Linear layer on [B, T, D]): the sum
      // over the batch of A_i^T g_i is one GEMM over the stacked rows,
      // instead of a batch of products and a reduction.
      int64_t last = a2.rank() - 2;
      gb = matmul(transpose(flatten(a2, 0, last), 0, 1), flatten(go, 0, last));
    } else {
      gb = sum_to_like(matmul(transpose(a2, -1, -2), go), b2);
    }
    if (b_vec) gb = squeeze(gb, {1});
  }
  return {ga, gb};
}

}  // namespace

void register_linalg_ops(OpRegistry& r) {
  r.add(OpDef("matmul").input("a").input("b").output("y")
            .doc("matrix product with NumPy semantics: 1-d operands are promoted to a row "
                 "(a) or column (b) vector and the added dim removed; batch dims broadcast")
            .promote_inputs()
            .infer(infer_matmul)
            .grad(grad_matmul));
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  static const OpDef& op = op_def("matmul");
  return call_op1(op, {a, b});
}

}  // namespace ndflow
