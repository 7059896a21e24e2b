// Samples of the creation ops (ops/creation.cc). They have no inputs; the
// attributes say everything. Expected values follow NumPy (np.full, np.arange,
// np.linspace, np.eye), checked with NumPy 2.4.
#include "op_samples.h"

namespace ndflow::testing {

namespace {
Tensor f64(const Shape& shape, const std::vector<double>& v) { return tensor(v, shape); }
Tensor as(DType dtype, const Shape& shape, const std::vector<double>& v) { return tensor(v, shape).to(dtype); }
using Ints = std::vector<int64_t>;
}  // namespace

SampleList creation_samples() {
  SampleList s;
  // full: every dtype, 0-d to 3-d, empty
  s.push_back({"full", {}, {{"shape", Ints{2, 3}}, {"value", 1.5}, {"dtype", DType::f64}},
               {f64({2, 3}, {1.5, 1.5, 1.5, 1.5, 1.5, 1.5})}});
  s.push_back({"full", {}, {{"shape", Ints{}}, {"value", -2.25}, {"dtype", DType::f32}}, {as(DType::f32, {}, {-2.25})}});
  s.push_back({"full", {}, {{"shape", Ints{2, 0, 3}}, {"value", 7.0}}, {as(DType::f32, {2, 0, 3}, {})}});
  s.push_back({"full", {}, {{"shape", Ints{3}}, {"value", 0.5}, {"dtype", DType::f16}}, {as(DType::f16, {3}, {0.5, 0.5, 0.5})}});
  s.push_back({"full", {}, {{"shape", Ints{3}}, {"value", -3.0}, {"dtype", DType::bf16}}, {as(DType::bf16, {3}, {-3, -3, -3})}});
  s.push_back({"full", {}, {{"shape", Ints{2, 2}}, {"value", -7.9}, {"dtype", DType::i32}}, {as(DType::i32, {2, 2}, {-7, -7, -7, -7})}});
  s.push_back({"full", {}, {{"shape", Ints{2}}, {"value", 4e15}, {"dtype", DType::i64}}, {as(DType::i64, {2}, {4e15, 4e15})}});
  s.push_back({"full", {}, {{"shape", Ints{2}}, {"value", 255.0}, {"dtype", DType::u8}}, {as(DType::u8, {2}, {255, 255})}});
  s.push_back({"full", {}, {{"shape", Ints{1, 2}}, {"value", 1.0}, {"dtype", DType::boolean}}, {as(DType::boolean, {1, 2}, {1, 1})}});
  // full_like: the input gives shape, dtype and device
  s.push_back({"full_like", {seq({2, 3})}, {{"value", 0.0}}, {f64({2, 3}, {0, 0, 0, 0, 0, 0})}});
  s.push_back({"full_like", {as(DType::i32, {4}, {9, 8, 7, 6})}, {{"value", 3.0}}, {as(DType::i32, {4}, {3, 3, 3, 3})}});
  s.push_back({"full_like", {as(DType::boolean, {2}, {0, 1})}, {{"value", 1.0}}, {as(DType::boolean, {2}, {1, 1})}});
  // arange: np.arange(0, 1, 0.1), np.arange(5, -1, -2), np.arange(-3, 3, dtype=int32)
  s.push_back({"arange", {}, {{"start", 0.0}, {"stop", 1.0}, {"step", 0.1}, {"dtype", DType::f64}},
               {f64({10}, {0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6000000000000001, 0.7000000000000001, 0.8, 0.9})}});
  s.push_back({"arange", {}, {{"start", 5.0}, {"stop", -1.0}, {"step", -2.0}, {"dtype", DType::i64}}, {as(DType::i64, {3}, {5, 3, 1})}});
  s.push_back({"arange", {}, {{"start", -3.0}, {"stop", 3.0}, {"dtype", DType::i32}}, {as(DType::i32, {6}, {-3, -2, -1, 0, 1, 2})}});
  s.push_back({"arange", {}, {{"start", 0.5}, {"stop", 2.0}, {"step", 0.5}, {"dtype", DType::f32}}, {as(DType::f32, {3}, {0.5, 1.0, 1.5})}});
  s.push_back({"arange", {}, {{"start", 2.0}, {"stop", 2.0}}, {as(DType::f32, {0}, {})}});
  // linspace: np.linspace(-1, 2, 7), np.linspace(0, 10, 4, dtype=np.int64) (floor), num = 1 and 0
  s.push_back({"linspace", {}, {{"start", -1.0}, {"stop", 2.0}, {"num", int64_t{7}}, {"dtype", DType::f64}},
               {f64({7}, {-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0})}});
  s.push_back({"linspace", {}, {{"start", 0.0}, {"stop", 1.0}, {"num", int64_t{4}}, {"dtype", DType::f32}},
               {as(DType::f32, {4}, {0.0, 0.3333333333333333, 0.6666666666666666, 1.0})}});
  s.push_back({"linspace", {}, {{"start", 0.0}, {"stop", 10.0}, {"num", int64_t{4}}, {"dtype", DType::i64}},
               {as(DType::i64, {4}, {0, 3, 6, 10})}});
  s.push_back({"linspace", {}, {{"start", -2.0}, {"stop", 2.0}, {"num", int64_t{4}}, {"dtype", DType::i32}},
               {as(DType::i32, {4}, {-2, -1, 0, 2})}});
  s.push_back({"linspace", {}, {{"start", 3.0}, {"stop", 5.0}, {"num", int64_t{1}}, {"dtype", DType::f64}}, {f64({1}, {3.0})}});
  s.push_back({"linspace", {}, {{"start", 3.0}, {"stop", 5.0}, {"num", int64_t{0}}}, {as(DType::f32, {0}, {})}});
  // eye: square, wide, tall, empty
  s.push_back({"eye", {}, {{"n", int64_t{3}}, {"dtype", DType::f64}}, {f64({3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1})}});
  s.push_back({"eye", {}, {{"n", int64_t{2}}, {"m", int64_t{4}}, {"dtype", DType::i32}},
               {as(DType::i32, {2, 4}, {1, 0, 0, 0, 0, 1, 0, 0})}});
  s.push_back({"eye", {}, {{"n", int64_t{3}}, {"m", int64_t{2}}, {"dtype", DType::boolean}},
               {as(DType::boolean, {3, 2}, {1, 0, 0, 1, 0, 0})}});
  s.push_back({"eye", {}, {{"n", int64_t{0}}, {"m", int64_t{3}}}, {as(DType::f32, {0, 3}, {})}});
  // constant: a copy of its tensor attribute, also from a non-contiguous view
  s.push_back({"constant", {}, {{"value", f64({2, 2}, {1, 2, 3, 4})}}, {f64({2, 2}, {1, 2, 3, 4})}});
  s.push_back({"constant", {}, {{"value", tensor(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {2, 3}).t()}},
               {as(DType::i32, {3, 2}, {1, 4, 2, 5, 3, 6})}});
  return s;
}

}  // namespace ndflow::testing
