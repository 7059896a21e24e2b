// Shape and array ops, part 1: views and copies. Views (reshape, permute,
// squeeze, unsqueeze, expand, slice) share storage with their input; their
// geometry is computed here, device-independently, by the OpDef's view
// function. cast, contiguous, broadcast_to/broadcast_like and concat write a
// fresh buffer through a kernel (kernels/cpu/array.cc). transpose, stack,
// split and flatten are compositions. Indexing and padding ops are in
// ops/array_index.cc.
#include <algorithm>
#include <limits>
#include <numeric>
#include <optional>

#include "ops/api.h"
#include "ops/array_internal.h"
#include "runtime/eager.h"

namespace ndflow {

void register_array_index_ops(OpRegistry& r);  // ops/array_index.cc

namespace {

using namespace array_detail;

// --------------------------------------------------- geometry (infer + view)

// The target shape of a reshape with its -1 resolved. With unknown input dims
// (graph mode) the -1 stays unknown.
Shape reshape_shape(const Shape& in, const Ints& target) {
  Shape out(target);
  int64_t infer_at = -1;
  Ints known;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == -1) {
      NDF_CHECK(infer_at < 0, ValueError, "[reshape] only one dimension may be -1; target shape ",
                shape_str(target));
      infer_at = static_cast<int64_t>(i);
    } else {
      NDF_CHECK(target[i] >= 0, ValueError, "[reshape] invalid dimension ", target[i],
                " in target shape ", shape_str(target));
      known.push_back(target[i]);
    }
  }
  if (!all_known(in)) return out;
  int64_t n = shape_numel(in), p = shape_numel(known);
  if (infer_at >= 0) {
    NDF_CHECK(p != 0 && n % p == 0, ShapeError, "[reshape] cannot reshape a tensor of shape ",
              shape_str(in), " (", n, " elements) into shape ", shape_str(target),
              p == 0 ? " (-1 is ambiguous next to a 0 dimension)" : "");
    out[infer_at] = n / p;
  } else {
    NDF_CHECK(p == n, ShapeError, "[reshape] cannot reshape a tensor of shape ", shape_str(in), " (",
              n, " elements) into shape ", shape_str(target), " (", p, " elements)");
  }
  return out;
}

// Strides that let `ns` view data laid out as (os, ost) without a copy, or
// nullopt when the layout does not allow it. Port of PyTorch's computeStride:
// dims are grouped into chunks that are contiguous with each other, and each
// chunk of the old shape must map onto whole dims of the new one.
std::optional<Strides> view_strides(const Shape& os, const Strides& ost, const Shape& ns) {
  Strides st;
  st.resize(ns.size());
  if (os.empty()) {
    std::fill(st.begin(), st.end(), 1);
    return st;
  }
  if (shape_numel(os) == 0) return os == ns ? ost : contiguous_strides(ns);
  int64_t view_d = static_cast<int64_t>(ns.size()) - 1;
  int64_t chunk_base = ost.back(), tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(os.size()) - 1; d >= 0; --d) {
    tensor_numel *= os[d];
    if (d == 0 || (os[d - 1] != 1 && ost[d - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || ns[view_d] == 1)) {
        st[view_d] = view_numel * chunk_base;
        view_numel *= ns[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base = ost[d - 1];
        tensor_numel = view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

Ints permutation(const std::string& op, const Ints& axes, int64_t rank, const Shape& shape) {
  NDF_CHECK(static_cast<int64_t>(axes.size()) == rank, ValueError, "[", op, "] got ", axes.size(),
            " axes ", shape_str(axes), " for a tensor of rank ", rank, " (shape ", shape_str(shape),
            "); need a permutation of all ", rank, " axes");
  Ints p(axes.size());
  std::vector<bool> seen(axes.size(), false);
  for (size_t i = 0; i < axes.size(); ++i) {
    p[i] = normalize_axis(axes[i], rank, op);
    NDF_CHECK(!seen[p[i]], ValueError, "[", op, "] axis ", p[i], " appears twice in ",
              shape_str(axes));
    seen[p[i]] = true;
  }
  return p;
}

// The axes a squeeze removes (sorted); all size-1 axes when `axes` is empty.
Ints squeeze_axes(const Shape& in, const Ints& axes) {
  int64_t r = static_cast<int64_t>(in.size());
  if (axes.empty()) {
    Ints out;
    for (int64_t d = 0; d < r; ++d)
      if (in[d] == 1) out.push_back(d);
    return out;
  }
  Ints out = normalize_axes(axes, r, "squeeze");
  for (int64_t d : out)
    NDF_CHECK(in[d] == 1 || in[d] == -1, ShapeError, "[squeeze] axis ", d, " has size ", in[d],
              ", not 1 (shape ", shape_str(in), ")");
  return out;
}

// expand/broadcast_to: -1 keeps an existing dim; only size-1 dims grow.
Shape expand_shape(const std::string& op, const Shape& in, const Ints& target) {
  NDF_CHECK(target.size() >= in.size(), ShapeError, "[", op, "] cannot broadcast shape ",
            shape_str(in), " to ", shape_str(target), ": the target has fewer dimensions");
  size_t lead = target.size() - in.size();
  Shape out(target);
  for (size_t d = 0; d < target.size(); ++d) {
    int64_t t = target[d];
    if (d < lead) {
      NDF_CHECK(t >= 0, ValueError, "[", op, "] target shape ", shape_str(target), " has ", t,
                " at new leading dimension ", d, "; -1 may only keep an existing dimension");
      continue;
    }
    int64_t s = in[d - lead];
    if (t == -1) {
      out[d] = s;
      continue;
    }
    NDF_CHECK(t >= 0, ValueError, "[", op, "] invalid dimension ", t, " in target shape ",
              shape_str(target));
    NDF_CHECK(s == t || s == 1 || s == -1, ShapeError, "[", op, "] cannot broadcast shape ",
              shape_str(in), " to ", shape_str(target), ": dimension ", d, " is ", s, " vs ", t,
              " (only size-1 dimensions can be expanded)");
  }
  return out;
}

// Python slice of an axis of length n (step > 0): first index and count.
struct Range {
  int64_t start, len;
};
Range slice_range(int64_t n, int64_t start, int64_t stop, int64_t step) {
  auto clampi = [n](int64_t i) { return i < 0 ? std::max<int64_t>(i + n, 0) : std::min(i, n); };
  int64_t b = clampi(start), e = clampi(stop);
  return {b, e > b ? (e - b - 1) / step + 1 : 0};
}

struct SliceArgs {
  int64_t axis, start, stop, step;
};
SliceArgs slice_args(const std::string& op, const Attrs& a, int64_t rank) {
  SliceArgs s{normalize_axis(a.get<int64_t>("axis", 0), rank, op), a.get<int64_t>("start", 0),
              a.get<int64_t>("stop", kEnd), a.get<int64_t>("step", 1)};
  NDF_CHECK(s.step > 0, ValueError, "[", op, "] step must be positive, got ", s.step);
  NDF_CHECK(rank > 0, IndexError, "[", op, "] cannot slice a 0-d tensor");
  return s;
}

Shape slice_shape(const std::string& op, const Shape& in, const Attrs& a) {
  SliceArgs s = slice_args(op, a, static_cast<int64_t>(in.size()));
  Shape out = in;
  if (in[s.axis] >= 0) out[s.axis] = slice_range(in[s.axis], s.start, s.stop, s.step).len;
  return out;
}

// --------------------------------------------------------------- view fns

Tensor reshape_view(const Tensor& x, const Attrs& a) {
  Shape ns = reshape_shape(x.shape(), a.get<Ints>("shape"));
  if (auto st = view_strides(x.shape(), x.strides(), ns)) return Tensor::make_view(x, ns, *st, x.offset());
  // NOTE: the layout cannot be viewed, so reshape materializes here, inside
  // the view fn: one OpDef keeps reshape's semantics in one place.
  static const OpDef& copy_op = op_def("contiguous");
  KernelFn k = copy_op.kernel(x.device().type);
  NDF_CHECK(k, NotFoundError, "[reshape] no copy kernel for device ", x.device().str());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Attrs none;
  KernelContext ctx(copy_op, std::span<const Tensor>(&x, 1), std::span<Tensor>(&out, 1), none,
                    get_num_threads());
  k(ctx);
  return Tensor::make_view(out, ns, contiguous_strides(ns), 0);
}

Tensor permute_view(const Tensor& x, const Attrs& a) {
  Ints p = permutation("permute", a.get<Ints>("axes"), x.rank(), x.shape());
  Shape s;
  Strides st;
  for (int64_t d : p) {
    s.push_back(x.shape()[d]);
    st.push_back(x.strides()[d]);
  }
  return Tensor::make_view(x, s, st, x.offset());
}

Tensor squeeze_view(const Tensor& x, const Attrs& a) {
  Ints drop = squeeze_axes(x.shape(), a.get<Ints>("axes", {}));
  Shape s;
  Strides st;
  for (int64_t d = 0; d < x.rank(); ++d) {
    if (std::binary_search(drop.begin(), drop.end(), d)) continue;
    s.push_back(x.shape()[d]);
    st.push_back(x.strides()[d]);
  }
  return Tensor::make_view(x, s, st, x.offset());
}

Tensor unsqueeze_view(const Tensor& x, const Attrs& a) {
  int64_t r = x.rank();
  int64_t ax = normalize_axis(req<int64_t>(a, "unsqueeze", "axis"), r + 1, "unsqueeze");
  Shape s = x.shape();
  Strides st = x.strides();
  s.insert(ax, 1);
  st.insert(ax, ax < r ? x.strides()[ax] * x.shape()[ax] : 1);
  return Tensor::make_view(x, s, st, x.offset());
}

Tensor expand_view(const Tensor& x, const Attrs& a) {
  Shape s = expand_shape("expand", x.shape(), a.get<Ints>("shape"));
  size_t lead = s.size() - x.shape().size();
  Strides st(s.size(), 0);
  for (size_t d = lead; d < s.size(); ++d) {
    size_t xd = d - lead;
    st[d] = (x.shape()[xd] == 1 && s[d] != 1) ? 0 : x.strides()[xd];
  }
  return Tensor::make_view(x, s, st, x.offset());
}

Tensor slice_view(const Tensor& x, const Attrs& a) {
  SliceArgs s = slice_args("slice", a, x.rank());
  Range r = slice_range(x.shape()[s.axis], s.start, s.stop, s.step);
  Shape sh = x.shape();
  Strides st = x.strides();
  sh[s.axis] = r.len;
  int64_t offset = x.offset();
  if (r.len > 0) offset += r.start * st[s.axis];  // empty views stay at the base offset
  st[s.axis] *= s.step;
  return Tensor::make_view(x, sh, st, offset);
}

// ------------------------------------------------------------ infer rules

Metas one(TensorMeta m) { return Metas{std::move(m)}; }

TensorMeta with_shape(const TensorMeta& m, Shape s) {
  TensorMeta o = m;
  o.shape = std::move(s);
  return o;
}

Metas infer_concat(const InferContext& c) {
  const std::string& op = c.op.name();
  const TensorMeta& f = c.input(0);
  int64_t r = static_cast<int64_t>(f.shape.size());
  NDF_CHECK(r > 0, ShapeError, "[", op, "] cannot concatenate 0-d tensors; use stack");
  int64_t ax = normalize_axis(c.attrs.get<int64_t>("axis", 0), r, op);
  TensorMeta out = f;
  for (size_t i = 1; i < c.inputs.size(); ++i) {
    const TensorMeta& m = c.input(i);
    NDF_CHECK(m.shape.size() == f.shape.size(), ShapeError, "[", op, "] inputs have ranks ", r,
              " and ", m.shape.size(), " (shapes ", shape_str(f.shape), " and ", shape_str(m.shape),
              " at positions 0 and ", i, "); all inputs need the same rank");
    for (int64_t d = 0; d < r; ++d) {
      if (d == ax) continue;
      int64_t a = out.shape[d], b = m.shape[d];
      NDF_CHECK(a == b || a == -1 || b == -1, ShapeError, "[", op, "] input ", i, " has shape ",
                shape_str(m.shape), " but input 0 has shape ", shape_str(f.shape),
                "; they must match on every axis except ", ax);
      if (a == -1) out.shape[d] = b;
    }
    out.shape[ax] = (out.shape[ax] < 0 || m.shape[ax] < 0) ? -1 : out.shape[ax] + m.shape[ax];
    out.dtype = promote_types(out.dtype, m.dtype);
  }
  return one(out);
}


}  // namespace

void register_array_ops(OpRegistry& r) {
  const auto Int = AttrType::Int, IntsT = AttrType::Ints;

  r.add(OpDef("cast").input("x").output("y").attr("dtype", AttrType::DType)
            .doc("converts to `dtype` into a fresh buffer; floats to ints truncate and saturate, NaN -> 0")
            .infer([](const InferContext& c) {
              TensorMeta m = c.input(0);
              m.dtype = req<DType>(c.attrs, "cast", "dtype");
              return one(m);
            })
            .grad([](G g) {
              DType in = g.input(0).dtype();
              return Grads{is_floating(in) ? cast(g.grad_output(0), in) : Tensor()};
            }));

  r.add(OpDef("contiguous").input("x").output("y").doc("a row-major copy of x")
            .infer(same_as_input(0)).saves({}, {})
            .grad([](G g) { return Grads{g.grad_output(0)}; }));

  r.add(OpDef("reshape").input("x").output("y").attr("shape", IntsT)
            .doc("same elements in a new shape (one dim may be -1); a view whenever the layout allows")
            .infer([](const InferContext& c) {
              Ints target = req<Ints>(c.attrs, "reshape", "shape");
              return one(with_shape(c.input(0), reshape_shape(c.input(0).shape, target)));
            })
            .view(reshape_view)
            .grad([](G g) { return Grads{reshape(g.grad_output(0), g.input(0).shape())}; }));

  r.add(OpDef("permute").input("x").output("y").attr("axes", IntsT)
            .doc("view with axes reordered: y.shape[i] = x.shape[axes[i]]")
            .infer([](const InferContext& c) {
              const Shape& in = c.input(0).shape;
              Ints p = permutation("permute", req<Ints>(c.attrs, "permute", "axes"),
                                   static_cast<int64_t>(in.size()), in);
              Shape s;
              for (int64_t d : p) s.push_back(in[d]);
              return one(with_shape(c.input(0), s));
            })
            .view(permute_view).saves({}, {})
            .grad([](G g) {
              Ints p = g.attrs().get<Ints>("axes");
              int64_t rank = static_cast<int64_t>(p.size());
              Ints inv(p.size());
              for (int64_t i = 0; i < rank; ++i) inv[normalize_axis(p[i], rank, "permute")] = i;
              return Grads{permute(g.grad_output(0), inv)};
            }));

  r.add(OpDef("squeeze").input("x").output("y").attr("axes", IntsT, Ints{})
            .doc("view without the given size-1 axes (all size-1 axes when empty)")
            .infer([](const InferContext& c) {
              const Shape& in = c.input(0).shape;
              Ints drop = squeeze_axes(in, c.attrs.get<Ints>("axes", {}));
              Shape s;
              for (int64_t d = 0; d < static_cast<int64_t>(in.size()); ++d)
                if (!std::binary_search(drop.begin(), drop.end(), d)) s.push_back(in[d]);
              return one(with_shape(c.input(0), s));
            })
            .view(squeeze_view)
            .grad([](G g) { return Grads{reshape(g.grad_output(0), g.input(0).shape())}; }));

  r.add(OpDef("unsqueeze").input("x").output("y").attr("axis", Int)
            .doc("view with a size-1 axis inserted at `axis` (of the result)")
            .infer([](const InferContext& c) {
              Shape s = c.input(0).shape;
              int64_t ax = normalize_axis(req<int64_t>(c.attrs, "unsqueeze", "axis"),
                                          static_cast<int64_t>(s.size()) + 1, "unsqueeze");
              s.insert(ax, 1);
              return one(with_shape(c.input(0), s));
            })
            .view(unsqueeze_view).saves({}, {})
            .grad([](G g) { return Grads{squeeze(g.grad_output(0), {g.attrs().get<int64_t>("axis")})}; }));

  auto expand_infer = [](const InferContext& c) {
    return one(with_shape(c.input(0), expand_shape(c.op.name(), c.input(0).shape,
                                                   req<Ints>(c.attrs, c.op.name(), "shape"))));
  };
  auto unbroadcast = [](G g) {
    Grads gs(g.num_inputs());
    if (g.needs_input_grad(0)) gs[0] = sum_to_like(g.grad_output(0), g.input(0));
    return gs;
  };
  r.add(OpDef("expand").input("x").output("y").attr("shape", IntsT)
            .doc("broadcasting view (stride 0 on expanded dims); -1 keeps a dim")
            .infer(expand_infer).view(expand_view).saves({0}, {}).grad(unbroadcast));
  r.add(OpDef("broadcast_to").input("x").output("y").attr("shape", IntsT)
            .doc("x broadcast to `shape`, materialized (also the copy behind Tensor::copy_)")
            .infer(expand_infer).saves({0}, {}).grad(unbroadcast));
  r.add(OpDef("broadcast_like").input("x").input("like").output("y")
            .doc("x broadcast to like's shape, materialized; `like` gives only its shape")
            .infer([](const InferContext& c) {
              const Shape& t = c.input(1).shape;
              return one(with_shape(c.input(0), expand_shape("broadcast_like", c.input(0).shape, t.vec())));
            })
            .saves({0}, {}).grad(unbroadcast));

  auto slice_attrs = [](OpDef& d) -> OpDef& {
    return d.attr("axis", Int, int64_t{0}).attr("start", Int, int64_t{0}).attr("stop", Int, kEnd)
        .attr("step", Int, int64_t{1});
  };
  slice_attrs(r.add(OpDef("slice").input("x").output("y")))
      .doc("view of x[start:stop:step] along `axis`, Python-style bounds")
      .infer([](const InferContext& c) {
        return one(with_shape(c.input(0), slice_shape("slice", c.input(0).shape, c.attrs)));
      })
      .view(slice_view).saves({0}, {})
      .grad([](G g) {
        static const OpDef& back = op_def("slice_backward");
        return Grads{call_op1(back, {g.grad_output(0), g.input(0)}, g.attrs())};
      });
  slice_attrs(r.add(OpDef("slice_backward").input("grad").input("like").output("dx")))
      .doc("zeros shaped like `like` with `grad` written at like[start:stop:step] along `axis`")
      .infer([](const InferContext& c) {
        Shape want = slice_shape("slice_backward", c.input(1).shape, c.attrs);
        NDF_CHECK(c.input(0).shape == want || !all_known(want) || !all_known(c.input(0).shape),
                  ShapeError, "[slice_backward] grad has shape ", shape_str(c.input(0).shape),
                  " but the slice of ", shape_str(c.input(1).shape), " has shape ", shape_str(want));
        return one(with_shape(c.input(0), c.input(1).shape));
      })
      .saves({}, {})
      .grad([](G g) {
        const Attrs& a = g.attrs();
        return Grads{slice(g.grad_output(0), a.get<int64_t>("axis", 0), a.get<int64_t>("start", 0),
                           a.get<int64_t>("stop", kEnd), a.get<int64_t>("step", 1)),
                     Tensor()};
      });

  r.add(OpDef("concat").variadic_input("xs").output("y").attr("axis", Int, int64_t{0})
            .doc("joins tensors along an existing axis (dtypes promoted)")
            .promote_inputs().infer(infer_concat)
            .grad([](G g) {
              const Tensor& go = g.grad_output(0);
              int64_t ax = normalize_axis(g.attrs().get<int64_t>("axis", 0), go.rank(), "concat");
              Grads gs(g.num_inputs());
              int64_t off = 0;
              for (size_t i = 0; i < gs.size(); ++i) {
                int64_t n = g.input(i).shape()[ax];
                if (g.needs_input_grad(i)) gs[i] = slice(go, ax, off, off + n);
                off += n;
              }
              return gs;
            }));

  register_array_index_ops(r);
}

// ------------------------------------------------------------------ the API

Tensor cast(const Tensor& x, DType dtype) {
  static const OpDef& op = op_def("cast");
  if (x.dtype() == dtype) return x;
  return call_op1(op, {x}, Attrs{{"dtype", dtype}});
}

Tensor contiguous(const Tensor& x) {
  static const OpDef& op = op_def("contiguous");
  if (!x.is_symbolic() && x.is_contiguous()) return x;
  return call_op1(op, {x});
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  static const OpDef& op = op_def("reshape");
  return call_op1(op, {x}, Attrs{{"shape", shape.vec()}});
}

Tensor permute(const Tensor& x, const Axes& axes) {
  static const OpDef& op = op_def("permute");
  return call_op1(op, {x}, Attrs{{"axes", axes}});
}

Tensor transpose(const Tensor& x, int64_t a, int64_t b) {
  int64_t r = x.rank();
  Ints p(static_cast<size_t>(r));
  std::iota(p.begin(), p.end(), int64_t{0});
  int64_t ia = normalize_axis(a, r, "transpose"), ib = normalize_axis(b, r, "transpose");
  if (r > 0) std::swap(p[ia], p[ib]);
  return permute(x, p);
}

Tensor squeeze(const Tensor& x, const Axes& axes) {
  static const OpDef& op = op_def("squeeze");
  return call_op1(op, {x}, Attrs{{"axes", axes}});
}

Tensor unsqueeze(const Tensor& x, int64_t axis) {
  static const OpDef& op = op_def("unsqueeze");
  return call_op1(op, {x}, Attrs{{"axis", axis}});
}

Tensor expand(const Tensor& x, const Shape& shape) {
  static const OpDef& op = op_def("expand");
  return call_op1(op, {x}, Attrs{{"shape", shape.vec()}});
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  static const OpDef& op = op_def("broadcast_to");
  return call_op1(op, {x}, Attrs{{"shape", shape.vec()}});
}

Tensor broadcast_like(const Tensor& x, const Tensor& like) {
  static const OpDef& op = op_def("broadcast_like");
  return call_op1(op, {x, like});
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t stop, int64_t step) {
  static const OpDef& op = op_def("slice");
  return call_op1(op, {x}, Attrs{{"axis", axis}, {"start", start}, {"stop", stop}, {"step", step}});
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  static const OpDef& op = op_def("concat");
  return call_op1(op, std::span<const Tensor>(xs), Attrs{{"axis", axis}});
}

Tensor stack(const std::vector<Tensor>& xs, int64_t axis) {
  NDF_CHECK(!xs.empty(), ValueError, "[stack] needs at least one tensor");
  const Shape& s0 = xs[0].shape();
  auto same = [&](const Shape& s) {  // unknown (-1) graph dims match anything
    auto dim_eq = [](int64_t a, int64_t b) { return a == b || a < 0 || b < 0; };
    return s.size() == s0.size() && std::equal(s.begin(), s.end(), s0.begin(), dim_eq);
  };
  for (size_t i = 1; i < xs.size(); ++i)
    NDF_CHECK(same(xs[i].shape()), ShapeError, "[stack] input ", i, " has shape ",
              shape_str(xs[i].shape()), " but input 0 has shape ", shape_str(s0),
              "; all inputs need the same shape");
  int64_t ax = normalize_axis(axis, static_cast<int64_t>(s0.size()) + 1, "stack");
  std::vector<Tensor> us;
  us.reserve(xs.size());
  for (auto& x : xs) us.push_back(unsqueeze(x, ax));
  return concat(us, ax);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis) {
  int64_t ax = normalize_axis(axis, x.rank(), "split");
  int64_t n = x.shape()[ax], total = 0;
  for (int64_t s : sizes) {
    NDF_CHECK(s >= 0, ValueError, "[split] sizes must be >= 0, got ", shape_str(sizes));
    total += s;
  }
  NDF_CHECK(total == n, ShapeError, "[split] sizes ", shape_str(sizes), " sum to ", total,
            " but axis ", ax, " of shape ", shape_str(x.shape()), " has length ", n);
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(slice(x, ax, off, off + s));
    off += s;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t sections, int64_t axis) {
  int64_t ax = normalize_axis(axis, x.rank(), "split");
  int64_t n = x.shape()[ax];
  NDF_CHECK(sections > 0, ValueError, "[split] sections must be positive, got ", sections);
  NDF_CHECK(n % sections == 0, ShapeError, "[split] axis ", ax, " of shape ", shape_str(x.shape()),
            " has length ", n, ", which does not divide into ", sections, " equal sections");
  return split(x, Ints(static_cast<size_t>(sections), n / sections), ax);
}

Tensor flatten(const Tensor& x, int64_t start_axis, int64_t end_axis) {
  int64_t r = x.rank();
  int64_t s = normalize_axis(start_axis, r, "flatten"), e = normalize_axis(end_axis, r, "flatten");
  if (r == 0) return reshape(x, {1});
  NDF_CHECK(s <= e, ValueError, "[flatten] start axis ", start_axis, " comes after end axis ",
            end_axis, " (shape ", shape_str(x.shape()), ")");
  const Shape& in = x.shape();
  Shape out;
  for (int64_t d = 0; d < s; ++d) out.push_back(in[d]);
  bool known = true;
  int64_t n = 1;
  for (int64_t d = s; d <= e; ++d) {
    known = known && in[d] >= 0;
    n *= std::max<int64_t>(in[d], 0);
  }
  out.push_back(known ? n : -1);
  for (int64_t d = e + 1; d < r; ++d) out.push_back(in[d]);
  return reshape(x, out);
}

}  // namespace ndflow
