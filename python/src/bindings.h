// Shared pieces of the pybind11 module ndflow._C (python/src/*.cc): type
// casters for ndflow's small value types and the per-file bind functions.
// The module binds the C++ API and adds no logic of its own (DESIGN.md §2).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <ndflow/ndflow.h>

namespace py = pybind11;

namespace pybind11::detail {

// Shape <-> any sequence of ints / tuple.
template <>
struct type_caster<ndflow::Shape> {
  PYBIND11_TYPE_CASTER(ndflow::Shape, const_name("Sequence[int]"));
  bool load(handle src, bool) {
    if (!src || !PySequence_Check(src.ptr()) || PyUnicode_Check(src.ptr())) return false;
    auto seq = reinterpret_borrow<sequence>(src);
    value = ndflow::Shape();
    for (auto item : seq) {
      if (!PyLong_Check(item.ptr()) && !PyIndex_Check(item.ptr())) return false;
      value.push_back(PyNumber_AsSsize_t(item.ptr(), PyExc_OverflowError));
      if (PyErr_Occurred()) {
        PyErr_Clear();
        return false;
      }
    }
    return true;
  }
  static handle cast(const ndflow::Shape& s, return_value_policy, handle) {
    tuple t(s.size());
    for (size_t i = 0; i < s.size(); ++i) t[i] = int_(s[i]);
    return t.release();
  }
};

}  // namespace pybind11::detail

namespace ndflow::python {

// Raised by operations that need a value while a function is being traced.
class TracingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws TracingError when `t` is symbolic: `what` names the operation.
void require_eager(const Tensor& t, const char* what);

void bind_tensor(py::module_& m);
void bind_ops(py::module_& m);
void bind_graph(py::module_& m);
void bind_distributed(py::module_& m);
void bind_ps(py::module_& m);

}  // namespace ndflow::python
