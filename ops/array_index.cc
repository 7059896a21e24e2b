// Shape and array ops, part 2: indexing (index_select, gather, scatter_add,
// one_hot) and padding, with the backward ops their gradients use. Kernels
// are in kernels/cpu/array.cc; they check every index against its axis.
#include <algorithm>
#include <limits>

#include "ops/api.h"
#include "ops/array_internal.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using namespace array_detail;

Metas one(TensorMeta m) { return Metas{std::move(m)}; }

TensorMeta with_shape(const TensorMeta& m, Shape s) {
  TensorMeta o = m;
  o.shape = std::move(s);
  return o;
}

void check_index_dtype(const std::string& op, const TensorMeta& idx) {
  NDF_CHECK(idx.dtype == DType::i32 || idx.dtype == DType::i64, TypeError, "[", op,
            "] index must be i32 or i64, got ", dtype_name(idx.dtype), " (shape ", shape_str(idx.shape), ")");
}

// Ops that index along an axis need one.
int64_t indexed_axis(const std::string& op, const Shape& x, const Attrs& a) {
  NDF_CHECK(!x.empty(), ShapeError, "[", op, "] needs an input with at least one axis, got a 0-d tensor");
  return normalize_axis(a.get<int64_t>("axis", 0), static_cast<int64_t>(x.size()), op);
}

// index_select (and its backward, given the shape of the selected input).
Shape index_select_shape(const std::string& op, const Shape& x, const TensorMeta& idx, int64_t ax) {
  check_index_dtype(op, idx);
  NDF_CHECK(idx.shape.size() == 1, ShapeError, "[", op, "] index must be 1-d, got shape ",
            shape_str(idx.shape));
  Shape out = x;
  out[ax] = idx.shape[0];
  return out;
}

void check_gather_shapes(const std::string& op, const Shape& x, const Shape& idx, int64_t ax) {
  NDF_CHECK(x.size() == idx.size(), ShapeError, "[", op, "] index has rank ", idx.size(),
            " but the input has rank ", x.size(), " (shapes ", shape_str(idx), " and ", shape_str(x),
            "); they must be equal");
  for (size_t d = 0; d < x.size(); ++d)
    NDF_CHECK(static_cast<int64_t>(d) == ax || idx[d] <= x[d] || idx[d] < 0 || x[d] < 0, ShapeError,
              "[", op, "] index shape ", shape_str(idx), " exceeds input shape ", shape_str(x),
              " on axis ", d, " (only axis ", ax, " may be longer)");
}

Ints pads_of(const std::vector<std::pair<int64_t, int64_t>>& widths) {
  Ints p;
  for (auto [b, e] : widths) {
    p.push_back(b);
    p.push_back(e);
  }
  return p;
}

// (before, after) pairs from the flat "pads" attr, checked against the input.
std::vector<std::pair<int64_t, int64_t>> pad_pairs(const std::string& op, const Shape& in,
                                                   const Attrs& a) {
  Ints p = req<Ints>(a, op, "pads");
  std::string mode = a.get<std::string>("mode", "constant");
  NDF_CHECK(mode == "constant" || mode == "reflect" || mode == "replicate", ValueError, "[", op,
            "] unknown mode '", mode, "' (valid: constant, reflect, replicate)");
  NDF_CHECK(p.size() % 2 == 0 && p.size() / 2 <= in.size(), ValueError, "[", op, "] got ",
            p.size(), " pad widths for a tensor of shape ", shape_str(in),
            "; need a (before, after) pair for each of up to ", in.size(), " axes");
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (size_t d = 0; d < p.size() / 2; ++d) {
    int64_t b = p[2 * d], e = p[2 * d + 1], n = in[d];
    NDF_CHECK(b >= 0 && e >= 0, ValueError, "[", op, "] pad widths must be >= 0, got (", b, ", ",
              e, ") for axis ", d);
    if (n >= 0 && mode == "reflect")
      NDF_CHECK(b < n && e < n, ValueError, "[", op, "] reflect padding (", b, ", ", e,
                ") on axis ", d, " needs each width below the axis size ", n, " (shape ",
                shape_str(in), ")");
    if (n >= 0 && mode == "replicate")
      NDF_CHECK(n > 0 || b + e == 0, ValueError, "[", op, "] replicate padding of axis ", d,
                " which is empty (shape ", shape_str(in), ")");
    pairs.emplace_back(b, e);
  }
  return pairs;
}

}  // namespace

void register_array_index_ops(OpRegistry& r) {
  const auto Int = AttrType::Int, IntsT = AttrType::Ints;

  r.add(OpDef("index_select").input("x").input("index").output("y").attr("axis", Int, int64_t{0})
            .doc("y[..., i, ...] = x[..., index[i], ...] along `axis`; index is 1-d i32/i64")
            .infer([](const InferContext& c) {
              int64_t ax = indexed_axis("index_select", c.input(0).shape, c.attrs);
              Shape s = index_select_shape("index_select", c.input(0).shape, c.input(1), ax);
              return one(with_shape(c.input(0), s));
            })
            .grad([](G g) {
              static const OpDef& back = op_def("index_select_backward");
              return Grads{call_op1(back, {g.grad_output(0), g.input(1), g.input(0)}, g.attrs()), Tensor()};
            }));
  r.add(OpDef("index_select_backward").input("grad").input("index").input("like").output("dx")
            .attr("axis", Int, int64_t{0})
            .doc("zeros shaped like `like`, with grad[..., i, ...] added at [..., index[i], ...]")
            .infer([](const InferContext& c) {
              const Shape& like = c.input(2).shape;
              int64_t ax = indexed_axis("index_select_backward", like, c.attrs);
              Shape want = index_select_shape("index_select_backward", like, c.input(1), ax);
              NDF_CHECK(want == c.input(0).shape || !all_known(want) || !all_known(c.input(0).shape),
                        ShapeError, "[index_select_backward] grad has shape ", shape_str(c.input(0).shape),
                        " but selecting ", shape_str(c.input(1).shape), " indices from ", shape_str(like),
                        " gives ", shape_str(want));
              return one(with_shape(c.input(0), like));
            })
            .saves({1}, {})
            .grad([](G g) {
              return Grads{index_select(g.grad_output(0), g.attrs().get<int64_t>("axis", 0), g.input(1)),
                           Tensor(), Tensor()};
            }));

  r.add(OpDef("gather").input("x").input("index").output("y").attr("axis", Int, int64_t{0})
            .doc("torch.gather: y has index's shape, y[i][j] = x[index[i][j]][j] (axis 0)")
            .infer([](const InferContext& c) {
              const Shape& x = c.input(0).shape;
              int64_t ax = indexed_axis("gather", x, c.attrs);
              check_index_dtype("gather", c.input(1));
              check_gather_shapes("gather", x, c.input(1).shape, ax);
              return one(with_shape(c.input(0), c.input(1).shape));
            })
            .grad([](G g) {
              const Tensor& x = g.input(0);
              return Grads{scatter_add(zeros_like(x), g.attrs().get<int64_t>("axis", 0), g.input(1),
                                       g.grad_output(0)),
                           Tensor()};
            }));

  r.add(OpDef("scatter_add").input("x").input("index").input("src").output("y")
            .attr("axis", Int, int64_t{0}).promote_inputs({0, 2})
            .doc("torch.scatter_add: a copy of x with src[i][j] added at [index[i][j]][j] (axis 0)")
            .infer([](const InferContext& c) {
              const Shape& x = c.input(0).shape;
              int64_t ax = indexed_axis("scatter_add", x, c.attrs);
              check_index_dtype("scatter_add", c.input(1));
              check_gather_shapes("scatter_add", x, c.input(1).shape, ax);
              NDF_CHECK(c.input(1).shape == c.input(2).shape, ShapeError, "[scatter_add] index shape ",
                        shape_str(c.input(1).shape), " differs from src shape ", shape_str(c.input(2).shape));
              TensorMeta m = c.input(0);
              m.dtype = promote_types(m.dtype, c.input(2).dtype);
              return one(m);
            })
            .saves({1}, {})
            .grad([](G g) {
              const Tensor& go = g.grad_output(0);
              return Grads{g.needs_input_grad(0) ? go : Tensor(), Tensor(),
                           g.needs_input_grad(2) ? gather(go, g.attrs().get<int64_t>("axis", 0), g.input(1))
                                                 : Tensor()};
            }));

  r.add(OpDef("pad").input("x").output("y").attr("pads", IntsT)
            .attr("mode", AttrType::String, std::string("constant")).attr("value", AttrType::Float, 0.0)
            .doc("pads (before, after) per leading axis; constant (with value), reflect or replicate")
            .infer([](const InferContext& c) {
              Shape s = c.input(0).shape;
              auto pairs = pad_pairs("pad", s, c.attrs);
              for (size_t d = 0; d < pairs.size(); ++d)
                if (s[d] >= 0) s[d] += pairs[d].first + pairs[d].second;
              return one(with_shape(c.input(0), s));
            })
            .saves({0}, {})
            .grad([](G g) {
              const Tensor& go = g.grad_output(0);
              if (g.attrs().get<std::string>("mode", "constant") != "constant") {
                static const OpDef& back = op_def("pad_backward");
                Attrs a{{"pads", g.attrs().get<Ints>("pads")}, {"mode", g.attrs().get<std::string>("mode")}};
                return Grads{call_op1(back, {go, g.input(0)}, a)};
              }
              Ints p = g.attrs().get<Ints>("pads");
              Tensor dx = go;
              for (size_t d = 0; d < p.size() / 2; ++d)
                if (p[2 * d] || p[2 * d + 1])
                  dx = slice(dx, static_cast<int64_t>(d), p[2 * d], p[2 * d + 1] ? -p[2 * d + 1] : kEnd);
              return Grads{dx};
            }));
  r.add(OpDef("pad_backward").input("grad").input("like").output("dx").attr("pads", IntsT)
            .attr("mode", AttrType::String, std::string("constant"))
            .doc("adjoint of pad: sums grad back onto the elements each padded element copies")
            .infer([](const InferContext& c) {
              const Shape& like = c.input(1).shape;
              auto pairs = pad_pairs("pad_backward", like, c.attrs);
              Shape want = like;
              for (size_t d = 0; d < pairs.size(); ++d)
                if (want[d] >= 0) want[d] += pairs[d].first + pairs[d].second;
              NDF_CHECK(want == c.input(0).shape || !all_known(want) || !all_known(c.input(0).shape),
                        ShapeError, "[pad_backward] grad has shape ", shape_str(c.input(0).shape),
                        " but padding ", shape_str(like), " gives ", shape_str(want));
              return one(with_shape(c.input(0), like));
            })
            .saves({}, {})
            .grad([](G g) {
              std::vector<std::pair<int64_t, int64_t>> w;
              Ints p = g.attrs().get<Ints>("pads");
              for (size_t d = 0; d + 1 < p.size(); d += 2) w.emplace_back(p[d], p[d + 1]);
              return Grads{pad(g.grad_output(0), w, g.attrs().get<std::string>("mode", "constant"), 0.0),
                           Tensor()};
            }));

  r.add(OpDef("one_hot").input("labels").output("y").attr("num_classes", Int)
            .attr("dtype", AttrType::DType, DType::f32)
            .doc("y[..., k] = (labels[...] == k); labels are integers in [0, num_classes)")
            .infer([](const InferContext& c) {
              const TensorMeta& l = c.input(0);
              NDF_CHECK(is_integral(l.dtype), TypeError,
                        "[one_hot] labels must be integers (i32, i64, u8), got ", dtype_name(l.dtype),
                        " (shape ", shape_str(l.shape), ")");
              int64_t n = req<int64_t>(c.attrs, "one_hot", "num_classes");
              NDF_CHECK(n >= 0, ValueError, "[one_hot] num_classes must be >= 0, got ", n);
              TensorMeta m = l;
              m.shape.push_back(n);
              m.dtype = c.attrs.get<DType>("dtype", DType::f32);
              return one(m);
            }));
}

// ------------------------------------------------------------------ the API

Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index) {
  static const OpDef& op = op_def("index_select");
  return call_op1(op, {x, index}, Attrs{{"axis", axis}});
}

Tensor gather(const Tensor& x, int64_t axis, const Tensor& index) {
  static const OpDef& op = op_def("gather");
  return call_op1(op, {x, index}, Attrs{{"axis", axis}});
}

Tensor scatter_add(const Tensor& x, int64_t axis, const Tensor& index, const Tensor& src) {
  static const OpDef& op = op_def("scatter_add");
  return call_op1(op, {x, index, src}, Attrs{{"axis", axis}});
}

Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& widths,
           const std::string& mode, double value) {
  static const OpDef& op = op_def("pad");
  return call_op1(op, {x}, Attrs{{"pads", pads_of(widths)}, {"mode", mode}, {"value", value}});
}

Tensor one_hot(const Tensor& labels, int64_t num_classes, DType dtype) {
  static const OpDef& op = op_def("one_hot");
  return call_op1(op, {labels}, Attrs{{"num_classes", num_classes}, {"dtype", dtype}});
}

}  // namespace ndflow
