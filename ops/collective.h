// Graph collectives as ops (DESIGN.md §7; schema in ops/collective.cc, CPU
// kernels in kernels/cpu/collective.cc). Functional: each returns new
// tensors and leaves its inputs alone, so it works eagerly (a blocking call
// through the world Communicator, with its per-call signature check) and in
// graphs (an asynchronous kernel issued in plan order by the communication
// thread of distributed/collective_queue.h). In a world of one they copy.
//
//   Tensor g = all_reduce(grad, "mean");             // over every rank
//   auto bucket = all_reduce_coalesced({g1, g2}, "mean");  // one message
//   Tensor w = broadcast_from(w0, /*root=*/0);
//   Tensor all = all_gather(x);                      // [world_size, *x.shape]
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"

namespace ndflow {

// op: "sum", "mean" (f32/f64 only) or "max". Gradient: the same all_reduce
// of the output gradient (sum, mean); max has none.
NDF_EXPORT Tensor all_reduce(const Tensor& x, const std::string& op = "sum");
// Several tensors of one dtype reduced as one message (a bucket).
NDF_EXPORT std::vector<Tensor> all_reduce_coalesced(const std::vector<Tensor>& xs, const std::string& op = "sum");
// Rank `root`'s x on every rank (op "broadcast"). Gradient: the sum of every
// rank's output gradient, on the root; zeros elsewhere.
NDF_EXPORT Tensor broadcast_from(const Tensor& x, int64_t root = 0);
// Every rank's x stacked along a new first axis. Gradient: row `rank` of the
// sum over ranks of the output gradient.
NDF_EXPORT Tensor all_gather(const Tensor& x);

}  // namespace ndflow
