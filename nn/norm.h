// Normalization and embedding layers over the ops of ops/norm.cc, with
// torch.nn's arguments, parameter/buffer names and initialization:
// BatchNorm1d/BatchNorm2d (weight, bias; buffers running_mean, running_var,
// num_batches_tracked), LayerNorm and Embedding.
//
// The running statistics are buffers, i.e. Variables: in a compiled training
// step (nn/function.h) their updates are graph nodes writing those Variables,
// so eager and compiled steps leave the same statistics behind.
#pragma once

#include <optional>
#include <vector>

#include "nn/module.h"
#include "ops/api.h"

namespace ndflow::nn {

struct BatchNormOptions {
  double eps = 1e-5;
  // Weight of the newest batch in the running statistics; nullopt: their
  // plain average over all batches so far (torch's momentum=None).
  std::optional<double> momentum = 0.1;
  bool affine = true;               // learnable weight (ones) and bias (zeros)
  bool track_running_stats = true;  // false: batch statistics in eval mode too
  DType dtype = DType::f32;
};

// Shared by BatchNorm1d ([N, C] or [N, C, L]) and BatchNorm2d ([N, C, H, W]).
class NDF_EXPORT BatchNorm : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  void reset_running_stats();
  void reset_parameters();
  std::string extra_repr() const override;

  int64_t num_features;
  BatchNormOptions options;
  Tensor weight, bias;                                   // undefined unless affine
  Tensor running_mean, running_var, num_batches_tracked;  // undefined unless tracked

 protected:
  BatchNorm(const char* name, std::vector<int64_t> ranks, int64_t num_features, const BatchNormOptions& o);

 private:
  Tensor cumulative(const Tensor& x);
  std::vector<int64_t> ranks_;
};

class NDF_EXPORT BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, const BatchNormOptions& o = {})
      : BatchNorm("BatchNorm1d", {2, 3}, num_features, o) {}
};

class NDF_EXPORT BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, const BatchNormOptions& o = {})
      : BatchNorm("BatchNorm2d", {4}, num_features, o) {}
};

// Normalizes over the trailing `normalized_shape` dims, then an elementwise
// affine map (weight ones, bias zeros) of that shape.
class NDF_EXPORT LayerNorm : public Module {
 public:
  explicit LayerNorm(std::vector<int64_t> normalized_shape, double eps = 1e-5, bool elementwise_affine = true,
                     bool bias = true, DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  std::vector<int64_t> normalized_shape;
  double eps;
  Tensor weight, bias;
};

// A lookup table weight [num_embeddings, embedding_dim], N(0, 1) as
// torch.nn.Embedding, with the padding_idx row zero and never updated by
// gradients. forward takes i32/i64 indices of any shape.
class NDF_EXPORT Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx = std::nullopt,
            DType dtype = DType::f32);
  // An Embedding holding a copy of `embeddings` [V, D]; frozen (no grad) by default.
  static std::shared_ptr<Embedding> from_pretrained(const Tensor& embeddings, bool freeze = true,
                                                    std::optional<int64_t> padding_idx = std::nullopt);
  Tensor forward(const Tensor& indices) override;
  void reset_parameters();
  std::string extra_repr() const override;

  int64_t num_embeddings, embedding_dim;
  std::optional<int64_t> padding_idx;  // normalized to [0, num_embeddings)
  Tensor weight;

 private:
  void zero_padding_row();
};

}  // namespace ndflow::nn
