// ndflow._C: the pybind11 module. C++ errors become the matching Python
// exceptions with the C++ message (DESIGN.md §2).
#include "bindings.h"

PYBIND11_MODULE(_C, m) {
  using namespace ndflow;
  m.doc() = "ndflow's C++ core (use the ndflow package rather than this module)";

  static py::exception<python::TracingError> tracing_error(m, "TracingError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const python::TracingError& e) {
      PyErr_SetString(tracing_error.ptr(), e.what());
    } catch (const ndflow::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const ndflow::IndexError& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const ndflow::NotFoundError& e) {
      PyErr_SetString(PyExc_KeyError, e.what());
    } catch (const ndflow::ValueError& e) {  // FormatError included
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ndflow::ShapeError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ndflow::TimeoutError& e) {  // a peer that never answered
      PyErr_SetString(PyExc_TimeoutError, e.what());
    } catch (const ndflow::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  python::bind_tensor(m);
  python::bind_ops(m);
  python::bind_graph(m);
  python::bind_distributed(m);
  python::bind_ps(m);
}
