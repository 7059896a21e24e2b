// The op API of ops/api.h, one binding per function. Kernels run with the
// GIL released. Python-side conveniences (scalars, axis spellings, methods)
// live in python/ndflow/_ops.py.
#include "bindings.h"

namespace ndflow::python {

namespace {

using nogil = py::call_guard<py::gil_scoped_release>;
using Unary = Tensor (*)(const Tensor&);
using Binary = Tensor (*)(const Tensor&, const Tensor&);
using Reduce = Tensor (*)(const Tensor&, const Axes&, bool);

Reduction reduction_of(const std::string& r) {
  if (r == "mean") return Reduction::Mean;
  if (r == "sum") return Reduction::Sum;
  if (r == "none") return Reduction::None;
  throw py::value_error("reduction must be 'mean', 'sum' or 'none', got '" + r + "'");
}

// Optional slots of the fused updates: None -> undefined tensor.
Tensor opt(const std::optional<Tensor>& t) { return t.value_or(Tensor()); }

void bind_elementwise(py::module_& m) {
  const std::pair<const char*, Unary> unary[] = {
      {"neg", &neg}, {"abs", &abs}, {"exp", &exp}, {"log", &log}, {"log1p", &log1p}, {"sqrt", &sqrt},
      {"rsqrt", &rsqrt}, {"square", &square}, {"sin", &sin}, {"cos", &cos}, {"tanh", &tanh},
      {"sigmoid", &sigmoid}, {"relu", &relu}, {"gelu", &gelu}, {"silu", &silu}, {"softplus", &softplus},
      {"sign", &sign}, {"floor", &floor}, {"ceil", &ceil}, {"round", &round}, {"logical_not", &logical_not},
      {"identity", &identity}, {"stop_gradient", &stop_gradient}, {"contiguous", &contiguous}};
  for (auto [name, f] : unary) m.def(name, f, py::arg("x"), nogil());
  const std::pair<const char*, Binary> binary[] = {
      {"add", &add}, {"sub", &sub}, {"mul", &mul}, {"div", &div}, {"pow", &pow}, {"maximum", &maximum},
      {"minimum", &minimum}, {"eq", &eq}, {"ne", &ne}, {"lt", &lt}, {"le", &le}, {"gt", &gt}, {"ge", &ge},
      {"logical_and", &logical_and}, {"logical_or", &logical_or}, {"matmul", &matmul},
      {"sum_to_like", &sum_to_like}, {"broadcast_like", &broadcast_like}};
  for (auto [name, f] : binary) m.def(name, f, py::arg("a"), py::arg("b"), nogil());
  m.def("leaky_relu", &leaky_relu, py::arg("x"), py::arg("negative_slope") = 0.01, nogil());
  m.def("where", &where, py::arg("cond"), py::arg("a"), py::arg("b"), nogil());
  m.def("clamp", &clamp, py::arg("x"), py::arg("min") = py::none(), py::arg("max") = py::none(), nogil());
  m.def("scalar_like", &scalar_like, py::arg("value"), py::arg("like"));
}

void bind_reductions(py::module_& m) {
  const std::pair<const char*, Reduce> reduce[] = {{"sum", &sum}, {"mean", &mean}, {"prod", &prod},
                                                   {"max", &max}, {"min", &min}, {"logsumexp", &logsumexp}};
  for (auto [name, f] : reduce) m.def(name, f, py::arg("x"), py::arg("axes") = Axes{}, py::arg("keepdims") = false, nogil());
  m.def("argmax", &argmax, py::arg("x"), py::arg("axis") = py::none(), py::arg("keepdims") = false, nogil());
  m.def("argmin", &argmin, py::arg("x"), py::arg("axis") = py::none(), py::arg("keepdims") = false, nogil());
  m.def("var", &var, py::arg("x"), py::arg("axes") = Axes{}, py::arg("keepdims") = false,
        py::arg("correction") = 1, nogil());
  m.def("std", &ndflow::std, py::arg("x"), py::arg("axes") = Axes{}, py::arg("keepdims") = false,
        py::arg("correction") = 1, nogil());
}

void bind_arrays(py::module_& m) {
  m.def("reshape", &reshape, py::arg("x"), py::arg("shape"), nogil());
  m.def("transpose", &transpose, py::arg("x"), py::arg("a"), py::arg("b"), nogil());
  m.def("permute", &permute, py::arg("x"), py::arg("axes"), nogil());
  m.def("squeeze", &squeeze, py::arg("x"), py::arg("axes") = Axes{}, nogil());
  m.def("unsqueeze", &unsqueeze, py::arg("x"), py::arg("axis"), nogil());
  m.def("expand", &expand, py::arg("x"), py::arg("shape"), nogil());
  m.def("broadcast_to", &broadcast_to, py::arg("x"), py::arg("shape"), nogil());
  m.def("slice", &slice, py::arg("x"), py::arg("axis"), py::arg("start"), py::arg("stop"), py::arg("step") = 1, nogil());
  m.def("concat", &concat, py::arg("xs"), py::arg("axis") = 0, nogil());
  m.def("stack", &stack, py::arg("xs"), py::arg("axis") = 0, nogil());
  m.def("split", py::overload_cast<const Tensor&, const std::vector<int64_t>&, int64_t>(&split), py::arg("x"),
        py::arg("sizes"), py::arg("axis") = 0, nogil());
  m.def("split", py::overload_cast<const Tensor&, int64_t, int64_t>(&split), py::arg("x"), py::arg("sections"),
        py::arg("axis") = 0, nogil());
  m.def("index_select", &index_select, py::arg("x"), py::arg("axis"), py::arg("index"), nogil());
  m.def("gather", &gather, py::arg("x"), py::arg("axis"), py::arg("index"), nogil());
  m.def("scatter_add", &scatter_add, py::arg("x"), py::arg("axis"), py::arg("index"), py::arg("src"), nogil());
  m.def("pad", &pad, py::arg("x"), py::arg("widths"), py::arg("mode") = "constant", py::arg("value") = 0.0, nogil());
  m.def("one_hot", &one_hot, py::arg("labels"), py::arg("num_classes"), py::arg("dtype") = DType::f32, nogil());
  m.def("cast", &cast, py::arg("x"), py::arg("dtype"), nogil());
  m.def("flatten", &flatten, py::arg("x"), py::arg("start_axis") = 0, py::arg("end_axis") = -1, nogil());
}

void bind_creation_and_random(py::module_& m) {
  m.def("zeros", &zeros, py::arg("shape"), py::arg("dtype") = DType::f32, nogil());
  m.def("ones", &ones, py::arg("shape"), py::arg("dtype") = DType::f32, nogil());
  m.def("full", &full, py::arg("shape"), py::arg("value"), py::arg("dtype") = DType::f32, nogil());
  m.def("zeros_like", &zeros_like, py::arg("x"), nogil());
  m.def("ones_like", &ones_like, py::arg("x"), nogil());
  m.def("full_like", &full_like, py::arg("x"), py::arg("value"), nogil());
  m.def("scalar", &scalar, py::arg("value"), py::arg("dtype") = DType::f32);
  m.def("arange", py::overload_cast<double, double, double, DType>(&arange), py::arg("start"), py::arg("stop"),
        py::arg("step") = 1.0, py::arg("dtype") = DType::f32, nogil());
  m.def("linspace", &linspace, py::arg("start"), py::arg("stop"), py::arg("num"), py::arg("dtype") = DType::f32, nogil());
  m.def("eye", &eye, py::arg("n"), py::arg("m") = py::none(), py::arg("dtype") = DType::f32, nogil());

  py::class_<Generator>(m, "Generator")
      .def(py::init<uint64_t>(), py::arg("seed") = 0)
      .def("manual_seed", [](Generator& g, uint64_t s) { g.manual_seed(s); return &g; }, py::return_value_policy::reference)
      .def("initial_seed", &Generator::seed)
      .def_property_readonly("offset", &Generator::offset)
      .def("get_state", [](const Generator& g) { return g.state().clone(); })
      .def("set_state", [](Generator& g, const Tensor& s) { Tensor(g.state()).copy_(s); });
  m.def("default_generator", &default_generator, py::return_value_policy::reference);
  m.def("manual_seed", &manual_seed, py::arg("seed"));
  m.def("uniform", &uniform, py::arg("shape"), py::arg("low") = 0.0, py::arg("high") = 1.0,
        py::arg("dtype") = DType::f32, py::arg("generator") = nullptr, nogil());
  m.def("normal", &normal, py::arg("shape"), py::arg("mean") = 0.0, py::arg("std") = 1.0,
        py::arg("dtype") = DType::f32, py::arg("generator") = nullptr, nogil());
  m.def("bernoulli", &bernoulli, py::arg("shape"), py::arg("p"), py::arg("dtype") = DType::f32,
        py::arg("generator") = nullptr, nogil());
  m.def("randint", &randint, py::arg("low"), py::arg("high"), py::arg("shape"), py::arg("dtype") = DType::i64,
        py::arg("generator") = nullptr, nogil());
}

void bind_nn_and_state(py::module_& m) {
  m.def("softmax", &softmax, py::arg("x"), py::arg("axis") = -1, nogil());
  m.def("log_softmax", &log_softmax, py::arg("x"), py::arg("axis") = -1, nogil());
  m.def("cross_entropy", [](const Tensor& l, const Tensor& y, const std::string& r) {
    Reduction red = reduction_of(r);
    py::gil_scoped_release nogil;
    return cross_entropy(l, y, red);
  }, py::arg("logits"), py::arg("labels"), py::arg("reduction") = "mean");
  m.def("mse_loss", [](const Tensor& p, const Tensor& t, const std::string& r) {
    Reduction red = reduction_of(r);
    py::gil_scoped_release nogil;
    return mse_loss(p, t, red);
  }, py::arg("pred"), py::arg("target"), py::arg("reduction") = "mean");
  m.def("dropout", &dropout, py::arg("x"), py::arg("p"), py::arg("training"), py::arg("generator") = nullptr, nogil());
  m.def("assign", &assign, py::arg("var"), py::arg("value"), nogil());
  m.def("assign_add", &assign_add, py::arg("var"), py::arg("value"), nogil());
}

void bind_optimizer_updates(py::module_& m) {
  m.def("apply_sgd", [](const Tensor& p, const Tensor& g, const Tensor& lr, double wd) {
    apply_sgd(p, g, lr, SGDOptions{wd});
  }, py::arg("param"), py::arg("grad"), py::arg("lr"), py::arg("weight_decay") = 0.0, nogil());
  m.def("apply_momentum", [](const Tensor& p, const Tensor& g, const Tensor& v, const Tensor& step, const Tensor& lr,
                             double momentum, double dampening, bool nesterov, double wd) {
    apply_momentum(p, g, v, step, lr, MomentumOptions{momentum, dampening, nesterov, wd});
  }, py::arg("param"), py::arg("grad"), py::arg("velocity"), py::arg("step"), py::arg("lr"), py::arg("momentum") = 0.9,
        py::arg("dampening") = 0.0, py::arg("nesterov") = false, py::arg("weight_decay") = 0.0, nogil());
  m.def("apply_adagrad", [](const Tensor& p, const Tensor& g, const Tensor& acc, const Tensor& step, const Tensor& lr,
                            double eps, double wd, double lr_decay) {
    apply_adagrad(p, g, acc, step, lr, AdagradOptions{eps, wd, lr_decay});
  }, py::arg("param"), py::arg("grad"), py::arg("accum"), py::arg("step"), py::arg("lr"), py::arg("eps") = 1e-10,
        py::arg("weight_decay") = 0.0, py::arg("lr_decay") = 0.0, nogil());
  m.def("apply_rmsprop", [](const Tensor& p, const Tensor& g, const Tensor& sq, const Tensor& lr, double alpha,
                            double eps, double wd, double momentum, bool centered, std::optional<Tensor> buf,
                            std::optional<Tensor> avg) {
    apply_rmsprop(p, g, sq, lr, RMSPropOptions{alpha, eps, wd, momentum, centered}, opt(buf), opt(avg));
  }, py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("lr"), py::arg("alpha") = 0.99,
        py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0, py::arg("centered") = false,
        py::arg("momentum_buffer") = py::none(), py::arg("grad_avg") = py::none(), nogil());
  m.def("apply_adam", [](const Tensor& p, const Tensor& g, const Tensor& m1, const Tensor& v, const Tensor& step,
                         const Tensor& lr, double b1, double b2, double eps, double wd, bool decoupled, bool amsgrad,
                         std::optional<Tensor> max_v) {
    apply_adam(p, g, m1, v, step, lr, AdamOptions{b1, b2, eps, wd, decoupled, amsgrad}, opt(max_v));
  }, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"), py::arg("step"), py::arg("lr"),
        py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0,
        py::arg("decoupled_weight_decay") = false, py::arg("amsgrad") = false, py::arg("max_v") = py::none(), nogil());
}


// Normalization and embedding (ops/norm.cc); None -> undefined tensor.
void bind_norm_and_embedding(py::module_& m) {
  m.def("batch_norm", [](const Tensor& x, std::optional<Tensor> w, std::optional<Tensor> b,
                         std::optional<Tensor> rm, std::optional<Tensor> rv, bool training, double momentum,
                         double eps) {
    return batch_norm(x, opt(w), opt(b), opt(rm), opt(rv), training, momentum, eps);
  },
        py::arg("x"), py::arg("weight") = py::none(), py::arg("bias") = py::none(),
        py::arg("running_mean") = py::none(), py::arg("running_var") = py::none(), py::arg("training") = false,
        py::arg("momentum") = 0.1, py::arg("eps") = 1e-5, nogil());
  m.def("batch_norm_update_stats", &batch_norm_update_stats, py::arg("running_mean"), py::arg("running_var"),
        py::arg("mean"), py::arg("var"), py::arg("x_like"), py::arg("momentum") = 0.1, nogil());
  m.def("layer_norm", [](const Tensor& x, const std::vector<int64_t>& shape, std::optional<Tensor> w,
                         std::optional<Tensor> b, double eps) {
    return layer_norm(x, shape, opt(w), opt(b), eps);
  },
        py::arg("x"), py::arg("normalized_shape"), py::arg("weight") = py::none(), py::arg("bias") = py::none(),
        py::arg("eps") = 1e-5, nogil());
  m.def("embedding", &embedding, py::arg("weight"), py::arg("indices"), py::arg("padding_idx") = py::none(),
        nogil());
  m.def("embedding_backward", &embedding_backward, py::arg("grad"), py::arg("indices"), py::arg("num_rows"),
        py::arg("padding_idx") = -1, nogil());
}

}  // namespace

void bind_ops(py::module_& m) {
  bind_elementwise(m);
  bind_reductions(m);
  bind_arrays(m);
  bind_creation_and_random(m);
  bind_nn_and_state(m);
  bind_optimizer_updates(m);
  bind_norm_and_embedding(m);
}

}  // namespace ndflow::python
