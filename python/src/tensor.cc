// ndflow.Tensor and NumPy/DLPack interop: dtypes, the buffer protocol,
// zero-copy from_numpy and numpy(), __dlpack__ / from_dlpack.
#include <pybind11/numpy.h>

#include <bit>
#include <cstring>
#include <functional>

#include "bindings.h"
#include "dlpack_abi.h"

namespace ndflow::python {

void require_eager(const Tensor& t, const char* what) {
  if (t.defined() && t.is_symbolic())
    throw TracingError(std::string(what) +
                       " needs a value, but this tensor is symbolic: the function is being traced into a graph, "
                       "where values exist only when it runs. Return the tensor from the traced function and "
                       "use the result, or use ndflow.where / tensor ops instead of Python control flow on "
                       "values.");
}

namespace {

// ------------------------------------------------------------ dtypes

py::dtype numpy_dtype(DType d) {
  switch (d) {
    case DType::f32: return py::dtype::of<float>();
    case DType::f64: return py::dtype::of<double>();
    case DType::f16: return py::dtype("float16");
    case DType::i32: return py::dtype::of<int32_t>();
    case DType::i64: return py::dtype::of<int64_t>();
    case DType::u8: return py::dtype::of<uint8_t>();
    case DType::boolean: return py::dtype::of<bool>();
    case DType::bf16: break;
  }
  throw py::type_error("NumPy has no bfloat16: convert first with t.to(ndflow.float32)");
}

DType dtype_of_numpy(const py::dtype& dt) {
  char kind = dt.kind();
  size_t size = static_cast<size_t>(dt.itemsize());
  if (kind == 'f' && size == 4) return DType::f32;
  if (kind == 'f' && size == 8) return DType::f64;
  if (kind == 'f' && size == 2) return DType::f16;
  if (kind == 'i' && size == 4) return DType::i32;
  if (kind == 'i' && size == 8) return DType::i64;
  if (kind == 'u' && size == 1) return DType::u8;
  if (kind == 'b' && size == 1) return DType::boolean;
  throw py::type_error("ndflow has no dtype for NumPy's " + std::string(py::str(dt)) +
                       "; supported: float32, float64, float16, int32, int64, uint8, bool");
}

std::string buffer_format(DType d) {
  switch (d) {
    case DType::f32: return "f";
    case DType::f64: return "d";
    case DType::f16: return "e";
    case DType::i32: return "i";
    case DType::i64: return "q";
    case DType::u8: return "B";
    case DType::boolean: return "?";
    case DType::bf16: break;
  }
  throw py::type_error("the buffer protocol has no bfloat16: convert first with t.to(ndflow.float32)");
}

// --------------------------------------------------------- NumPy interop

// Zero-copy: the tensor keeps the array alive (released under the GIL). A
// read-only array (np.frombuffer of bytes, np.broadcast_to, a read-only
// memory map) is copied instead: ndflow tensors are writable, and writing
// through such a view would change immutable objects or fault.
Tensor from_numpy(py::array a) {
  if (!a.writeable()) a = py::array(a.attr("copy")());
  DType dtype = dtype_of_numpy(a.dtype());
  if (a.dtype().byteorder() == (std::endian::native == std::endian::little ? '>' : '<'))
    throw py::type_error("from_numpy: the array is not in native byte order; use a.astype(a.dtype.newbyteorder('='))");
  Shape shape;
  Strides strides;
  size_t item = static_cast<size_t>(a.itemsize());
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    shape.push_back(a.shape(i));
    py::ssize_t s = a.strides(i);
    if (a.shape(i) > 1 && (s < 0 || static_cast<size_t>(s) % item != 0))
      throw py::value_error("from_numpy: negative or unaligned strides are not supported (array strides " +
                            std::string(py::str(py::cast(std::vector<py::ssize_t>(a.strides(), a.strides() + a.ndim())))) +
                            "); pass np.ascontiguousarray(a)");
    strides.push_back(s < 0 ? 0 : s / static_cast<py::ssize_t>(item));
  }
  auto* keep = new py::object(a);
  std::shared_ptr<void> owner(keep, [](void* p) {
    py::gil_scoped_acquire gil;
    delete static_cast<py::object*>(p);
  });
  return Tensor::from_blob(const_cast<void*>(a.data()), shape, strides, dtype, Device::cpu(), owner);
}

// A NumPy view of the tensor's memory (shares it, like torch's .numpy()).
py::array to_numpy(const Tensor& t) {
  require_eager(t, "Tensor.numpy()");
  if (t.requires_grad() && GradMode::enabled())
    throw py::value_error("Tensor.numpy(): the tensor requires grad; use t.detach().numpy()");
  std::vector<py::ssize_t> shape, strides;
  size_t item = dtype_size(t.dtype());
  for (int64_t i = 0; i < t.rank(); ++i) {
    shape.push_back(t.shape()[static_cast<size_t>(i)]);
    strides.push_back(t.strides()[static_cast<size_t>(i)] * static_cast<py::ssize_t>(item));
  }
  return py::array(numpy_dtype(t.dtype()), shape, strides, t.raw_data(), py::cast(t));
}

// -------------------------------------------------------------- DLPack

struct DLPackHolder {
  Tensor tensor;
  std::vector<int64_t> shape, strides;
  dlpack::DLManagedTensor managed;
  dlpack::DLManagedTensorVersioned versioned;
};

dlpack::DLDataType dl_dtype(DType d) {
  switch (d) {
    case DType::f32: return {dlpack::kDLFloat, 32, 1};
    case DType::f64: return {dlpack::kDLFloat, 64, 1};
    case DType::f16: return {dlpack::kDLFloat, 16, 1};
    case DType::bf16: return {dlpack::kDLBfloat, 16, 1};
    case DType::i32: return {dlpack::kDLInt, 32, 1};
    case DType::i64: return {dlpack::kDLInt, 64, 1};
    case DType::u8: return {dlpack::kDLUInt, 8, 1};
    case DType::boolean: return {dlpack::kDLBool, 8, 1};
  }
  throw py::type_error("no DLPack dtype");
}

DType dtype_of_dl(dlpack::DLDataType t) {
  if (t.lanes == 1) {
    if (t.code == dlpack::kDLFloat && t.bits == 32) return DType::f32;
    if (t.code == dlpack::kDLFloat && t.bits == 64) return DType::f64;
    if (t.code == dlpack::kDLFloat && t.bits == 16) return DType::f16;
    if (t.code == dlpack::kDLBfloat && t.bits == 16) return DType::bf16;
    if (t.code == dlpack::kDLInt && t.bits == 32) return DType::i32;
    if (t.code == dlpack::kDLInt && t.bits == 64) return DType::i64;
    if (t.code == dlpack::kDLUInt && t.bits == 8) return DType::u8;
    if (t.code == dlpack::kDLBool && t.bits == 8) return DType::boolean;
  }
  throw py::type_error("from_dlpack: unsupported DLPack dtype (code " + std::to_string(t.code) + ", bits " +
                       std::to_string(t.bits) + ", lanes " + std::to_string(t.lanes) + ")");
}

// A capsule still carrying its original name was never consumed: we own it.
void dlpack_capsule_destructor(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* m = static_cast<dlpack::DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (m && m->deleter) m->deleter(m);
  } else if (PyCapsule_IsValid(capsule, "dltensor_versioned")) {
    auto* m = static_cast<dlpack::DLManagedTensorVersioned*>(PyCapsule_GetPointer(capsule, "dltensor_versioned"));
    if (m && m->deleter) m->deleter(m);
  }
}

// __dlpack__(stream, max_version, dl_device, copy): the versioned ABI when the
// consumer accepts DLPack 1.x (then NumPy's view is writable), else the
// legacy one. copy=True exports a fresh copy; the export never copies
// otherwise.
py::capsule to_dlpack(const Tensor& src, py::object max_version, py::object dl_device, py::object copy) {
  require_eager(src, "Tensor.__dlpack__()");
  if (!dl_device.is_none()) {
    auto dev = dl_device.cast<std::pair<int, int>>();
    if (dev.first != dlpack::kDLCPU || dev.second != 0)
      throw py::buffer_error("__dlpack__: ndflow tensors live on the CPU (device (1, 0)); asked for (" +
                             std::to_string(dev.first) + ", " + std::to_string(dev.second) + ")");
  }
  bool copied = !copy.is_none() && copy.cast<bool>();
  Tensor t = copied ? src.clone() : src;
  bool versioned = false;
  if (!max_version.is_none()) versioned = max_version.cast<std::pair<int, int>>().first >= 1;
  auto* h = new DLPackHolder{t, {}, {}, {}, {}};
  for (int64_t i = 0; i < t.rank(); ++i) {
    h->shape.push_back(t.shape()[static_cast<size_t>(i)]);
    h->strides.push_back(t.strides()[static_cast<size_t>(i)]);
  }
  dlpack::DLTensor& d = versioned ? h->versioned.dl_tensor : h->managed.dl_tensor;
  d.data = t.raw_data();
  d.device = {dlpack::kDLCPU, 0};
  d.ndim = static_cast<int32_t>(t.rank());
  d.dtype = dl_dtype(t.dtype());
  d.shape = h->shape.data();
  d.strides = h->strides.data();
  d.byte_offset = 0;
  if (versioned) {
    h->versioned.version = {1, 0};
    h->versioned.manager_ctx = h;
    h->versioned.flags = copied ? dlpack::kFlagIsCopied : 0;
    h->versioned.deleter = [](dlpack::DLManagedTensorVersioned* m) { delete static_cast<DLPackHolder*>(m->manager_ctx); };
    return py::capsule(&h->versioned, "dltensor_versioned", &dlpack_capsule_destructor);
  }
  h->managed.manager_ctx = h;
  h->managed.deleter = [](dlpack::DLManagedTensor* m) { delete static_cast<DLPackHolder*>(m->manager_ctx); };
  return py::capsule(&h->managed, "dltensor", &dlpack_capsule_destructor);
}

// A tensor viewing a DLTensor; `release` frees the producer's side when the
// tensor's storage dies.
Tensor view_dl_tensor(const dlpack::DLTensor& d, std::function<void()> release) {
  if (d.device.device_type != dlpack::kDLCPU)
    throw py::value_error("from_dlpack: only CPU tensors can be imported (device type " +
                          std::to_string(d.device.device_type) + ")");
  if (d.ndim < 0 || d.ndim > 64) throw py::value_error("from_dlpack: bad ndim " + std::to_string(d.ndim));
  DType dtype = dtype_of_dl(d.dtype);
  Shape shape;
  Strides strides;
  std::vector<int64_t> compact(static_cast<size_t>(d.ndim));
  int64_t expected = 1;
  for (int i = d.ndim - 1; i >= 0; --i) {
    if (d.shape[i] < 0) throw py::value_error("from_dlpack: negative dimension");
    compact[static_cast<size_t>(i)] = expected;
    expected *= d.shape[i];
  }
  for (int i = 0; i < d.ndim; ++i) {
    shape.push_back(d.shape[i]);
    int64_t st = d.strides ? d.strides[i] : compact[static_cast<size_t>(i)];
    if (st < 0 && d.shape[i] > 1) throw py::value_error("from_dlpack: negative strides are not supported");
    strides.push_back(st);
  }
  size_t item = dtype_size(dtype);
  if (d.byte_offset % item != 0) throw py::value_error("from_dlpack: byte_offset not a multiple of the item size");
  void* data = static_cast<char*>(d.data) + d.byte_offset;
  std::shared_ptr<void> owner(data, [release = std::move(release)](void*) {
    py::gil_scoped_acquire gil;  // the producer may be a Python object
    release();
  });
  return Tensor::from_blob(data, shape, strides, dtype, Device::cpu(), owner);
}

Tensor from_dlpack(py::object obj) {
  py::object capsule = obj;
  if (py::hasattr(obj, "__dlpack__")) {
    try {
      capsule = obj.attr("__dlpack__")(py::arg("max_version") = py::make_tuple(1, 0));
    } catch (const py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;  // a producer that predates max_version
      capsule = obj.attr("__dlpack__")();
    }
  }
  PyObject* c = capsule.ptr();
  if (PyCapsule_IsValid(c, "dltensor_versioned")) {
    auto* m = static_cast<dlpack::DLManagedTensorVersioned*>(PyCapsule_GetPointer(c, "dltensor_versioned"));
    if (m->version.major != 1)
      throw py::buffer_error("from_dlpack: unsupported DLPack version " + std::to_string(m->version.major) + "." +
                             std::to_string(m->version.minor) + " (supported: 1.x)");
    Tensor t = view_dl_tensor(m->dl_tensor, [m] { if (m->deleter) m->deleter(m); });
    PyCapsule_SetName(c, "used_dltensor_versioned");  // consumed: its deleter runs with the tensor
    if (m->flags & dlpack::kFlagReadOnly) return t.clone();  // ndflow tensors are writable
    return t;
  }
  if (!PyCapsule_IsValid(c, "dltensor"))
    throw py::type_error("from_dlpack: expected an object with __dlpack__ or an unconsumed 'dltensor' capsule");
  auto* m = static_cast<dlpack::DLManagedTensor*>(PyCapsule_GetPointer(c, "dltensor"));
  Tensor t = view_dl_tensor(m->dl_tensor, [m] { if (m->deleter) m->deleter(m); });
  PyCapsule_SetName(c, "used_dltensor");
  return t;
}

py::tuple shape_tuple(const Tensor& t) { return py::cast(t.shape()); }

// A Python callable held by the C++ autograd (a gradient hook, a backward
// callback). NOTE: the engine may drop the last reference on a thread without
// the GIL, so the destructor takes it.
struct PyCallable {
  py::object fn;
  explicit PyCallable(py::object f) : fn(std::move(f)) {}
  PyCallable(const PyCallable&) = delete;
  PyCallable& operator=(const PyCallable&) = delete;
  ~PyCallable() {
    if (!Py_IsInitialized()) {
      fn.release();  // the interpreter is gone: leak rather than crash
      return;
    }
    py::gil_scoped_acquire gil;
    fn = py::object();
  }
};

// What Tensor.register_post_accumulate_grad_hook returns.
struct GradHookHandle {
  uint64_t id = 0;
};

}  // namespace

void bind_tensor(py::module_& m) {
  py::class_<GradHookHandle>(m, "GradHookHandle",
                             "Returned by Tensor.register_post_accumulate_grad_hook; remove() unregisters")
      .def_property_readonly("id", [](const GradHookHandle& h) { return h.id; })
      .def("remove", [](const GradHookHandle& h) { return remove_grad_hook(h.id); },
           "Unregisters the hook; False if it was already removed");
  m.def("_queue_backward_callback", [](py::function fn) {
          auto f = std::make_shared<PyCallable>(std::move(fn));
          queue_backward_callback([f] {
            py::gil_scoped_acquire gil;
            f->fn();
          });
        }, py::arg("fn"), "Runs fn() once when the backward running now ends (from a gradient hook)");
  m.def("_in_backward", &in_backward);

  py::enum_<DType>(m, "dtype")
      .value("float32", DType::f32)
      .value("float64", DType::f64)
      .value("float16", DType::f16)
      .value("bfloat16", DType::bf16)
      .value("int32", DType::i32)
      .value("int64", DType::i64)
      .value("uint8", DType::u8)
      .value("bool", DType::boolean)
      .def_property_readonly("itemsize", [](DType d) { return dtype_size(d); })
      .def_property_readonly("is_floating_point", [](DType d) { return is_floating(d); })
      .def("__repr__", [](DType d) { return "ndflow." + std::string(py::str(py::cast(d).attr("name"))); });
  m.def("numpy_dtype", &numpy_dtype);
  m.def("dtype_of_numpy", [](py::object dt) { return dtype_of_numpy(py::dtype::from_args(dt)); });
  m.def("promote_types", &promote_types);

  py::class_<Tensor>(m, "Tensor", py::buffer_protocol(), py::dynamic_attr())
      .def_buffer([](const Tensor& t) {
        require_eager(t, "the buffer protocol");
        std::vector<py::ssize_t> shape, strides;
        size_t item = dtype_size(t.dtype());
        for (int64_t i = 0; i < t.rank(); ++i) {
          shape.push_back(t.shape()[static_cast<size_t>(i)]);
          strides.push_back(t.strides()[static_cast<size_t>(i)] * static_cast<py::ssize_t>(item));
        }
        return py::buffer_info(t.raw_data(), static_cast<py::ssize_t>(item), buffer_format(t.dtype()),
                               t.rank(), shape, strides);
      })
      .def_property_readonly("shape", &shape_tuple)
      .def_property_readonly("dtype", &Tensor::dtype)
      .def_property_readonly("device", [](const Tensor& t) { return t.device().str(); })
      .def_property_readonly("ndim", &Tensor::rank)
      .def_property_readonly("is_symbolic", &Tensor::is_symbolic)
      .def_property_readonly("is_variable", &Tensor::is_variable)
      .def_property_readonly("is_leaf", &Tensor::is_leaf)
      .def_property_readonly("_version", [](const Tensor& t) {
        require_eager(t, "Tensor._version");
        return t.impl()->storage->version();
      })
      .def("numel", &Tensor::numel)
      .def("is_contiguous", &Tensor::is_contiguous)
      .def("strides", [](const Tensor& t) { return std::vector<int64_t>(t.strides().begin(), t.strides().end()); })
      .def_property("requires_grad", &Tensor::requires_grad,
                    [](Tensor& t, bool r) { t.set_requires_grad(r); })
      .def_property(
          "grad", [](const Tensor& t) -> py::object {
            Tensor g = t.grad();
            return g.defined() ? py::cast(g) : py::none();
          },
          [](Tensor& t, py::object g) { t.set_grad(g.is_none() ? Tensor() : g.cast<Tensor>()); })
      .def("backward", [](const Tensor& t, std::optional<Tensor> grad, bool retain_graph) {
             py::gil_scoped_release nogil;
             t.backward(grad.value_or(Tensor()), retain_graph);
           }, py::arg("gradient") = py::none(), py::arg("retain_graph") = false)
      .def("register_post_accumulate_grad_hook", [](const Tensor& t, py::function fn) {
             auto f = std::make_shared<PyCallable>(std::move(fn));
             uint64_t id = register_post_accumulate_grad_hook(t, [f](const Tensor& leaf) {
               py::gil_scoped_acquire gil;
               f->fn(leaf);
             });
             return GradHookHandle{id};
           }, py::arg("hook"),
           "hook(tensor) runs once per backward that reaches this leaf, as soon as tensor.grad holds "
           "every contribution of that backward; returns a handle whose remove() unregisters it")
      .def("detach", &Tensor::detach)
      .def("contiguous", &Tensor::contiguous, py::call_guard<py::gil_scoped_release>())
      .def("clone", &Tensor::clone, py::call_guard<py::gil_scoped_release>())
      .def("to", [](const Tensor& t, DType d) { return t.to(d); }, py::call_guard<py::gil_scoped_release>())
      .def("mark_variable", [](Tensor& t, const std::string& name) { t.mark_variable(name); return t; },
           py::arg("name") = "")
      .def("copy_", [](Tensor& t, const Tensor& src) { t.copy_(src); return t; },
           py::call_guard<py::gil_scoped_release>())
      .def("fill_", [](Tensor& t, double v) { t.fill_(v); return t; })
      .def("zero_", [](Tensor& t) { t.zero_(); return t; })
      .def("add_", [](Tensor& t, const Tensor& o, double alpha) { t.add_(o, alpha); return t; },
           py::arg("other"), py::arg("alpha") = 1.0, py::call_guard<py::gil_scoped_release>())
      .def("mul_", [](Tensor& t, const Tensor& o) { t.mul_(o); return t; }, py::call_guard<py::gil_scoped_release>())
      .def("mul_", [](Tensor& t, double s) { t.mul_(s); return t; })
      .def("item", [](const Tensor& t) -> py::object {
        require_eager(t, "Tensor.item()");
        if (t.numel() != 1)
          throw py::value_error("Tensor.item(): the tensor has " + std::to_string(t.numel()) +
                                " elements (shape " + shape_str(t.shape()) + "); item() needs exactly one");
        if (t.dtype() == DType::boolean) return py::bool_(t.item_double() != 0);
        if (is_floating(t.dtype())) return py::float_(t.item_double());
        return py::int_(t.contiguous().to(DType::i64).data<int64_t>()[0]);
      })
      .def("numpy", &to_numpy)
      .def("__dlpack__", [](const Tensor& t, py::object stream, py::object max_version, py::object dl_device,
                            py::object copy) { return to_dlpack(t, max_version, dl_device, copy); },
           py::arg("stream") = py::none(), py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
           py::arg("copy") = py::none())
      .def("__dlpack_device__", [](const Tensor&) { return py::make_tuple(int(dlpack::kDLCPU), 0); })
      .def("_str", [](const Tensor& t) { return t.is_symbolic() ? std::string() : t.str(); })
      .def("_same", &Tensor::same)
      // In-place writes under autograd (python/ndflow/_tensor.py): after the
      // data of `r` was copied into `t`, t takes r's place on the tape.
      .def("_rebase_history", [](Tensor& t, const Tensor& r) {
        require_eager(t, "an in-place write");
        if (t.shape() != r.shape() || t.dtype() != r.dtype())
          throw py::value_error("_rebase_history: shape/dtype mismatch");
        TensorImpl* ti = t.impl();
        ti->requires_grad = r.requires_grad();
        ti->grad_fn = r.impl()->grad_fn;
        ti->output_nr = r.impl()->output_nr;
      })
      // How many tensors (views, saved aliases) share this tensor's memory.
      .def("_storage_use_count", [](const Tensor& t) -> long {
        return t.impl() && t.impl()->storage ? t.impl()->storage.use_count() : 0;
      })
      .def("_id", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.impl()); });

  m.def("from_numpy", &from_numpy, py::arg("array"), "A tensor sharing the memory of a NumPy array (no copy)");
  m.def("from_dlpack", &from_dlpack, py::arg("obj"), "A tensor sharing the memory of a DLPack producer");
}

}  // namespace ndflow::python
