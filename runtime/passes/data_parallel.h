// Graph data parallelism (DESIGN.md §7 "Data parallel"): a rewrite of a
// training graph so that every rank applies the mean gradient over all ranks.
// For every gradient an optimizer update reads (the fused apply_* ops: they
// mutate a Variable and take a "grad" input), it inserts bucketed
// all_reduce_coalesced(mean) nodes (ops/collective.cc) right after the
// gradients and points the updates — and every other reader of the gradient
// that is not upstream of its bucket, such as a fetched .grad — at the
// reduced values, as PyTorch's DDP leaves averaged gradients in .grad.
//
//   PassReport r = data_parallel_pass(g, {.bucket_bytes = 25 << 20});
//   // r.detail: "2 buckets (all_reduce_coalesced mean) for 6 gradients, ..."
//
// Buckets hold gradients of one dtype, up to bucket_bytes each (a larger
// gradient gets a bucket of its own), filled in the order backward produces
// the gradients (the graph's topological order: last layers first), so the
// executor reduces the first bucket while backward computes the rest. A
// gradient that an all_reduce already produces is left alone, so the pass
// is idempotent. Known dims only count for the bucket sizes (-1 counts 1).
//
// Run it on the traced graph, before Session compile (ndflow.function does
// when data parallel is on); in a world of one the buckets are copies.
#pragma once

#include <cstdint>

#include "core/graph.h"
#include "runtime/passes/pass.h"

namespace ndflow {

struct DataParallelOptions {
  int64_t bucket_bytes = int64_t{25} << 20;  // as PyTorch DDP's bucket_cap_mb = 25
};

NDF_EXPORT PassReport data_parallel_pass(Graph& g, const DataParallelOptions& options = {});

// Whether `op` is an optimizer update the pass recognizes (mutates an input
// and takes its gradient as input 1, named "grad").
NDF_EXPORT bool is_gradient_update(const OpDef& op);

}  // namespace ndflow
