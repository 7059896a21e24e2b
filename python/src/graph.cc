// Graphs, tracing, sessions, autograd entry points, files, and the generic
// registry-driven op call (every registered op by name).
#include <pybind11/functional.h>

#include <algorithm>

#include "bindings.h"
#include "core/device_name.h"
#include "runtime/multi_device.h"
#include "runtime/executor.h"

namespace ndflow::python {

namespace {

using nogil = py::call_guard<py::gil_scoped_release>;

// A Python value converted to the attribute type the op declares.
AttrValue to_attr(const std::string& op, const OpDef::AttrSpec& spec, py::handle v) {
  auto bad = [&](const char* want) {
    return py::type_error("[" + op + "] attribute '" + spec.name + "' must be " + want + ", got " +
                          std::string(py::str(py::type::handle_of(v).attr("__name__"))));
  };
  switch (spec.type) {
    case AttrType::Int:
      if (py::isinstance<py::bool_>(v) || !PyIndex_Check(v.ptr())) throw bad("an int");
      return v.cast<int64_t>();
    case AttrType::Float:
      if (!PyFloat_Check(v.ptr()) && !PyLong_Check(v.ptr())) throw bad("a float");
      return v.cast<double>();
    case AttrType::Bool:
      if (!py::isinstance<py::bool_>(v)) throw bad("a bool");
      return v.cast<bool>();
    case AttrType::String:
      if (!py::isinstance<py::str>(v)) throw bad("a str");
      return v.cast<std::string>();
    case AttrType::Ints:
      try { return v.cast<std::vector<int64_t>>(); } catch (const py::cast_error&) { throw bad("a list of ints"); }
    case AttrType::Floats:
      try { return v.cast<std::vector<double>>(); } catch (const py::cast_error&) { throw bad("a list of floats"); }
    case AttrType::DType:
      try { return v.cast<DType>(); } catch (const py::cast_error&) { throw bad("an ndflow.dtype"); }
    case AttrType::Tensor:
      try { return v.cast<Tensor>(); } catch (const py::cast_error&) { throw bad("a Tensor"); }
  }
  throw py::type_error("unknown attribute type");
}

std::vector<Tensor> call_registered(const std::string& name, const std::vector<Tensor>& inputs, py::dict attrs) {
  const OpDef& op = op_def(name);
  Attrs a;
  for (auto [k, v] : attrs) {
    std::string key = py::str(k);
    const OpDef::AttrSpec* spec = nullptr;
    for (const auto& s : op.attr_specs())
      if (s.name == key) spec = &s;
    if (!spec) {
      std::string valid;
      for (const auto& s : op.attr_specs()) valid += (valid.empty() ? "" : ", ") + s.name;
      throw py::type_error("[" + name + "] has no attribute '" + key + "'; valid: " +
                           (valid.empty() ? "none" : valid));
    }
    a.set(key, to_attr(name, *spec, v));
  }
  // Declared defaults fill the attributes not given (as in graph mode); a
  // required one missing is a TypeError, like a missing Python argument.
  for (const auto& s : op.attr_specs())
    if (!a.has(s.name) && !s.default_value)
      throw py::type_error("[" + name + "] missing required attribute '" + s.name + "' (" +
                           std::string(attr_type_name(s.type)) + ")");
  a = op.complete_attrs(a);
  py::gil_scoped_release nogil;
  return call_op(op, inputs, a);
}

py::dict op_schema(const OpDef& op) {
  py::dict d;
  d["name"] = op.name();
  d["inputs"] = op.input_names();
  d["outputs"] = op.output_names();
  d["variadic"] = op.is_variadic();
  d["differentiable"] = op.differentiable();
  d["graph_only"] = op.is_graph_only();
  d["asynchronous"] = op.is_asynchronous();
  d["doc"] = op.doc();
  py::list attrs;
  for (const auto& s : op.attr_specs())
    attrs.append(py::make_tuple(s.name, std::string(attr_type_name(s.type)), s.default_value.has_value()));
  d["attrs"] = attrs;
  return d;
}

// A Python context manager around GraphScope (entered and left on one thread).
struct PyGraphScope {
  Graph graph;
  std::unique_ptr<GraphScope> scope;
};

// A compiled graph with its feed, fetch and target names: one call per step.
// It holds the CompiledGraph itself and feeds it by position, so a step costs
// no name lookups (the per-step overhead of a traced training step).
struct CompiledFunction {
  std::shared_ptr<Session> session;
  std::vector<std::string> inputs, fetches, targets;
  CompiledGraph* graph = nullptr;
  std::vector<size_t> order;  // graph feed k <- argument order[k]

  void bind() {
    graph = &session->compiled(fetches, targets);
    order.clear();
    for (const std::string& name : graph->feed_names()) {
      auto it = std::find(inputs.begin(), inputs.end(), name);
      NDF_CHECK(it != inputs.end(), InternalError, "compiled function: the graph needs input '", name,
                "' that is not among its arguments");
      order.push_back(static_cast<size_t>(it - inputs.begin()));
    }
  }

  std::vector<Tensor> run(const std::vector<Tensor>& args) {
    if (args.size() != inputs.size())
      throw py::type_error("compiled function takes " + std::to_string(inputs.size()) + " tensors, got " +
                           std::to_string(args.size()));
    for (size_t i = 0; i < args.size(); ++i)
      if (!args[i].defined()) throw py::type_error("compiled function: argument " + std::to_string(i) + " is None");
    if (graph->source_id_bound() != session->graph().id_bound()) bind();  // the graph grew: recompile
    std::vector<Tensor> feeds;
    feeds.reserve(order.size());
    for (size_t i : order) feeds.push_back(args[i]);
    py::gil_scoped_release nogil;
    return graph->run_ordered(feeds);
  }
};

// Undefined tensors (e.g. the gradient of an unused input) become None.
py::list tensors_or_none(const std::vector<Tensor>& ts) {
  py::list l;
  for (const Tensor& t : ts) l.append(t.defined() ? py::cast(t) : py::none());
  return l;
}

SessionOptions session_options(bool optimize, int inter, int intra, bool stats) {
  SessionOptions o;
  if (!optimize) o.passes = PassOptions::none();
  o.inter_op_threads = inter;
  o.intra_op_threads = intra;
  o.collect_stats = stats;
  return o;
}

}  // namespace

void bind_graph(py::module_& m) {
  // ---------------------------------------------------------- registry
  m.def("op_names", [] {
    std::vector<std::string> names;
    for (const OpDef* op : OpRegistry::global().all()) names.push_back(op->name());
    return names;
  });
  m.def("op_schema", [](const std::string& name) { return op_schema(op_def(name)); });
  m.def("call_op", &call_registered, py::arg("name"), py::arg("inputs"), py::arg("attrs") = py::dict(),
        "Runs (or, while tracing, records) the registered op `name`");

  // ---------------------------------------------------------- modes
  m.def("is_grad_enabled", &GradMode::enabled);
  m.def("set_grad_enabled", &GradMode::set_enabled);
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("is_tracing", [] { return current_graph_builder() != nullptr; });

  // ---------------------------------------------------------- autograd
  m.def("backward", &backward, py::arg("outputs"), py::arg("grad_outputs") = std::vector<Tensor>{},
        py::arg("retain_graph") = false, nogil());
  m.def("grad", [](const std::vector<Tensor>& ys, const std::vector<Tensor>& xs, const std::vector<Tensor>& gys,
                   bool retain, bool zeros) {
    std::vector<Tensor> g;
    {
      py::gil_scoped_release nogil;
      g = grad(ys, xs, gys, retain, zeros);
    }
    return tensors_or_none(g);
  }, py::arg("outputs"), py::arg("inputs"), py::arg("grad_outputs") = std::vector<Tensor>{},
        py::arg("retain_graph") = false, py::arg("zeros_for_unused") = false);

  // ---------------------------------------------------------- graphs
  py::class_<Graph>(m, "Graph")
      .def(py::init<>())
      .def("placeholder", &Graph::placeholder, py::arg("name"), py::arg("shape"), py::arg("dtype") = DType::f32)
      .def("mark_output", &Graph::mark_output, py::arg("name"), py::arg("tensor"))
      .def("num_nodes", &Graph::num_nodes)
      .def("validate", &Graph::validate)
      .def("__str__", &Graph::to_string)
      .def("input_names", [](const Graph& g) {
        std::vector<std::string> n;
        for (auto& [name, id] : g.inputs()) n.push_back(name);
        return n;
      })
      .def("input_shapes", [](const Graph& g) {
        std::vector<std::pair<Shape, DType>> r;
        for (auto& [name, id] : g.inputs()) r.emplace_back(g.node(id)->outputs[0].shape, g.node(id)->outputs[0].dtype);
        return r;
      })
      .def("output_names", [](const Graph& g) {
        std::vector<std::string> n;
        for (auto& [name, e] : g.outputs()) n.push_back(name);
        return n;
      })
      .def("side_effect_nodes", [](const Graph& g) {
        std::vector<std::string> n;
        for (const Node* node : g.nodes())
          if (node->op->has_side_effects()) n.push_back(node->name);
        return n;
      })
      .def("op_counts", [](const Graph& g) {
        std::map<std::string, int> c;
        for (const Node* node : g.nodes()) ++c[node->op->name()];
        return c;
      });
  py::class_<PyGraphScope>(m, "GraphScope")
      .def(py::init([](Graph g) { return PyGraphScope{std::move(g), nullptr}; }))
      .def("__enter__", [](PyGraphScope& s) {
        s.scope = std::make_unique<GraphScope>(s.graph);
        return s.graph;
      })
      .def("__exit__", [](PyGraphScope& s, py::args) { s.scope.reset(); });
  m.def("gradients", [](const std::vector<Tensor>& ys, const std::vector<Tensor>& xs,
                        const std::vector<Tensor>& gys, bool zeros) {
    return tensors_or_none(gradients(ys, xs, gys, zeros));
  }, py::arg("ys"), py::arg("xs"), py::arg("grad_ys") = std::vector<Tensor>{}, py::arg("zeros_for_unused") = false);
  m.def("set_grads", [](const std::vector<Tensor>& params, const std::vector<Tensor>& grads) {
    NDF_CHECK(params.size() <= grads.size(), ValueError, "set_grads: ", params.size(), " params but ",
              grads.size(), " gradients");
    for (size_t i = 0; i < params.size(); ++i) Tensor(params[i]).set_grad(grads[i]);
  }, py::arg("params"), py::arg("grads"), "Sets params[i].grad = grads[i] (one call per compiled step)");
  m.def("trainable_variables", &trainable_variables, py::arg("ys"));

  py::class_<RunStats>(m, "RunStats")
      .def_readonly("kernels_executed", &RunStats::kernels_executed)
      .def_readonly("kernel_seconds", &RunStats::kernel_seconds)
      .def_readonly("total_seconds", &RunStats::total_seconds)
      .def_readonly("peak_bytes", &RunStats::peak_bytes);
  py::class_<Session, std::shared_ptr<Session>>(m, "Session")
      .def(py::init([](Graph g, bool optimize, int inter, int intra, bool stats) {
             return std::make_shared<Session>(std::move(g), session_options(optimize, inter, intra, stats));
           }), py::arg("graph"), py::arg("optimize") = true, py::arg("inter_op_threads") = 0,
           py::arg("intra_op_threads") = 0, py::arg("collect_stats") = false)
      .def("run", &Session::run, py::arg("feeds"), py::arg("fetches"), py::arg("targets") = std::vector<std::string>{},
           nogil())
      .def("last_run_stats", &Session::last_run_stats);
  py::class_<CompiledFunction>(m, "CompiledFunction")
      .def(py::init([](std::shared_ptr<Session> s, std::vector<std::string> in, std::vector<std::string> fetch,
                       std::vector<std::string> targets) {
             CompiledFunction f{std::move(s), std::move(in), std::move(fetch), std::move(targets)};
             f.bind();
             return f;
           }), py::arg("session"), py::arg("inputs"), py::arg("fetches"), py::arg("targets"))
      .def("__call__", &CompiledFunction::run)
      .def_property_readonly("session", [](const CompiledFunction& f) { return f.session; })
      .def("placement_report", [](const CompiledFunction& f) { return f.graph->placement_report(); })
      .def("placement", [](const CompiledFunction& f) {
        // {node name: device} of the optimized graph that runs.
        py::dict d;
        const Graph& g = f.graph->graph();
        for (auto& n : f.graph->placement().nodes)
          d[py::str(g.node(n.node)->name)] = f.graph->placement().devices[static_cast<size_t>(n.device)].str();
        return d;
      })
      .def("transfer_counts", [](const CompiledFunction& f) {
        // (send/recv pairs in the partitioned graph, tensors + control edges the placement reports crossing)
        int64_t pairs = f.graph->multi_device() ? f.graph->multi_device()->partitions().num_sends : 0;
        int64_t reported = 0;
        for (auto& t : f.graph->placement().transfers) reported += t.tensors + t.controls;
        return py::make_tuple(pairs, reported);
      });

  // ---------------------------------------------------------- devices
  struct PyDeviceScope {
    std::string request;
    std::unique_ptr<DeviceScope> scope;
  };
  py::class_<PyDeviceScope>(m, "DeviceScope")
      .def(py::init([](const std::string& r) {
        DeviceName::parse(r);  // a bad name fails here, where the user wrote it
        return PyDeviceScope{r, nullptr};
      }), py::arg("device"))
      .def("__enter__", [](PyDeviceScope& s) { s.scope = std::make_unique<DeviceScope>(s.request); })
      .def("__exit__", [](PyDeviceScope& s, py::args) { s.scope.reset(); });
  m.def("current_device_request", &DeviceScope::current);
  m.def("num_cpu_devices", &num_cpu_devices);
  m.def("set_num_cpu_devices", &set_num_cpu_devices, py::arg("n"));
  m.def("canonical_device_name", [](const std::string& s) { return DeviceName::parse(s).str(); });

  // ---------------------------------------------------------- files
  m.def("save_graph", [](const std::string& path, const Graph& g, const Metadata& meta) { save_graph(path, g, meta); },
        py::arg("path"), py::arg("graph"), py::arg("metadata") = Metadata{}, nogil());
  m.def("load_graph", [](const std::string& path) {
    Metadata meta;
    Graph g = load_graph(path, LoadOptions{}, &meta);
    return std::make_pair(g, meta);
  }, py::arg("path"), nogil());
  m.def("save_tensors", [](const std::string& path, const NamedTensors& t, const Metadata& meta) {
    save_tensors(path, t, meta);
  }, py::arg("path"), py::arg("tensors"), py::arg("metadata") = Metadata{}, nogil());
  m.def("load_tensors", [](const std::string& path) {
    Checkpoint c = load_tensors(path);
    return std::make_pair(c.tensors, c.metadata);
  }, py::arg("path"), nogil());
  m.def("read_npy", &read_npy, py::arg("path"), nogil());
  m.def("write_npy", &write_npy, py::arg("path"), py::arg("tensor"), nogil());
}

}  // namespace ndflow::python
