// ndflow._C._distributed: the cluster (rank, size) and the host-tensor
// Communicator (distributed/). Collectives release the GIL while they wait.
#include "bindings.h"
#include "distributed/cluster.h"
#include "distributed/communicator.h"
#include "runtime/passes/data_parallel.h"

namespace ndflow::python {

namespace {

using nogil = py::call_guard<py::gil_scoped_release>;
namespace dist = ndflow::distributed;

dist::Communicator& comm_for(const Tensor& t) {
  require_eager(t, "ndflow.distributed collectives");
  return dist::world(t.device());
}

}  // namespace

void bind_distributed(py::module_& root) {
  py::module_ m = root.def_submodule("_distributed", "MPI cluster and collectives (use ndflow.distributed)");
  m.def("launched_by_mpi", &dist::launched_by_mpi);
  m.def("init", &dist::init, nogil());
  m.def("is_initialized", &dist::is_initialized);
  m.def("uses_mpi", &dist::uses_mpi);
  m.def("rank", &dist::rank, nogil());
  m.def("world_size", &dist::world_size, nogil());
  m.def("mpi_thread_level", &dist::mpi_thread_level);
  m.def("finalize", &dist::finalize, nogil());
  m.def("abort", [](const std::string& message, int code) { dist::abort_job(message, code); },
        py::arg("message"), py::arg("exit_code") = 1);
  m.def("backend", []() { return std::string(dist::world().backend()); }, nogil());

  m.def("all_reduce", [](const Tensor& t, const std::string& op) {
          auto rop = dist::reduce_op_from_name(op);
          dist::Communicator& c = comm_for(t);
          py::gil_scoped_release release;
          c.allreduce(t, rop);
        }, py::arg("tensor"), py::arg("op") = "sum");
  m.def("all_reduce_coalesced", [](const std::vector<Tensor>& ts, const std::string& op) {
          auto rop = dist::reduce_op_from_name(op);
          if (ts.empty()) return;
          dist::Communicator& c = comm_for(ts[0]);
          py::gil_scoped_release release;
          c.allreduce_coalesced(ts, rop);
        }, py::arg("tensors"), py::arg("op") = "sum");
  m.def("broadcast", [](const Tensor& t, int src) {
          dist::Communicator& c = comm_for(t);
          py::gil_scoped_release release;
          c.broadcast(t, src);
        }, py::arg("tensor"), py::arg("src") = 0);
  m.def("all_gather", [](const Tensor& t) {
          dist::Communicator& c = comm_for(t);
          py::gil_scoped_release release;
          return c.allgather(t);
        }, py::arg("tensor"));
  m.def("barrier", []() { dist::world().barrier(); }, nogil());
  m.def("set_check_collectives", [](bool on) { dist::world().set_check_signatures(on); }, py::arg("on"));
  m.def("check_collectives", []() { return dist::world().check_signatures(); });

  // Graph data parallelism (runtime/passes/data_parallel.h): rewrites `graph`
  // in place; returns the pass's report line.
  m.def("data_parallel_pass", [](Graph& g, int64_t bucket_bytes) {
          PassReport r = data_parallel_pass(g, DataParallelOptions{bucket_bytes});
          return str_cat(r.pass, ": ", r.nodes_before, " -> ", r.nodes_after, " nodes (", r.detail, ")");
        }, py::arg("graph"), py::arg("bucket_bytes") = DataParallelOptions{}.bucket_bytes);
}

}  // namespace ndflow::python
