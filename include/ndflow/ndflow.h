// ndflow — a dataflow-graph deep learning engine. This one header is the C++ API.
//
//   #include <ndflow/ndflow.h>
//   using namespace ndflow;
//
//   Tensor x = randn({64, 784});                       // eager tensors, computed now
//   Tensor w = (randn({784, 10}) * 0.01).set_requires_grad();
//   Tensor loss = cross_entropy(matmul(x, w), labels); // ops are free functions
//   loss.backward();                                   // eager autograd
//   {
//     NoGradGuard no_grad;
//     w.sub_(w.grad() * 0.1);                          // in-place update, not recorded
//   }
//   w.zero_grad();
//
// Core types: Tensor (core/tensor.h), DType, Shape, Device. Ops: ops/api.h.
// Autograd: backward(), grad(), gradcheck() in runtime/autograd.h; NoGradGuard
// and thread settings in runtime/eager.h. Static graphs: GraphScope/trace in
// runtime/trace.h, run by Session (runtime/session.h). Modules, layers and
// optimizers (ndflow::nn, ndflow::optim): nn/module.h, nn/layers.h, nn/norm.h,
// nn/lstm.h, nn/optim.h; compiled training steps: nn/function.h. Errors: ndflow::Error
// and its subclasses (core/error.h).
#pragma once

#include "core/dtype.h"
#include "core/error.h"
#include "core/graph.h"
#include "core/op_registry.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "ops/api.h"
#include "runtime/autograd.h"
#include "runtime/eager.h"
#include "runtime/session.h"
#include "runtime/trace.h"
#include "core/format.h"
#include "core/npy.h"
#include "nn/function.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/lstm.h"
#include "nn/module.h"
#include "nn/norm.h"
#include "nn/optim.h"
