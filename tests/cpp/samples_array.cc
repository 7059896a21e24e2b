// Samples of the shape/array ops (ops/array.cc) for the generic op tests.
// Expected values were computed with NumPy (np.pad, np.take_along_axis,
// np.add.at, slicing) on the same seq() data.
#include <cmath>
#include <limits>

#include "op_samples.h"

namespace ndflow::testing {

namespace {

using Ints = std::vector<int64_t>;

Tensor f64(std::vector<double> v, const Shape& s) { return tensor(v, s); }
Tensor i64(std::vector<int64_t> v, const Shape& s) { return tensor(v, s); }
Tensor i32(std::vector<int32_t> v, const Shape& s) { return tensor(v, s); }

void views(SampleList& s) {
  Tensor x23 = seq({2, 3});
  s.push_back({"reshape", {x23}, {{"shape", Ints{3, -1}}}, {seq({3, 2})}});
  s.push_back({"reshape", {seq({2, 3, 4})}, {{"shape", Ints{4, -1, 2}}}, {seq({4, 3, 2})}});
  s.push_back({"reshape", {f64({7.5}, {})}, {{"shape", Ints{1, 1}}}, {f64({7.5}, {1, 1})}});
  s.push_back({"reshape", {f64({}, {0, 3})}, {{"shape", Ints{3, 0}}}, {f64({}, {3, 0})}});

  s.push_back({"permute", {seq({2, 3, 4})}, {{"axes", Ints{2, 0, 1}}},
               {f64({-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, -0.75, 0.25, 1.25, 2.25, 3.25, 4.25,
                     -0.5, 0.5, 1.5, 2.5, 3.5, 4.5, -0.25, 0.75, 1.75, 2.75, 3.75, 4.75},
                    {4, 2, 3})}});
  s.push_back({"permute", {x23}, {{"axes", Ints{-1, 0}}},
               {f64({-1.0, -0.25, -0.75, 0.0, -0.5, 0.25}, {3, 2})}});

  s.push_back({"squeeze", {seq({1, 3, 1})}, {}, {seq({3})}});
  s.push_back({"squeeze", {seq({1, 3, 1})}, {{"axes", Ints{-1}}}, {seq({1, 3})}});
  s.push_back({"unsqueeze", {x23}, {{"axis", int64_t{-1}}}, {seq({2, 3, 1})}});
  s.push_back({"unsqueeze", {x23}, {{"axis", int64_t{0}}}, {seq({1, 2, 3})}});

  Tensor col = f64({1, 2, 3}, {3, 1});
  Tensor bcast = f64({1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}, {2, 3, 4});
  s.push_back({"expand", {col}, {{"shape", Ints{2, 3, 4}}}, {bcast}});
  s.push_back({"expand", {col}, {{"shape", Ints{-1, 2}}}, {f64({1, 1, 2, 2, 3, 3}, {3, 2})}});
  s.push_back({"broadcast_to", {col}, {{"shape", Ints{2, 3, 4}}}, {bcast}});
  s.push_back({"broadcast_to", {f64({1, 2, 3}, {3})}, {{"shape", Ints{2, 3}}},
               {f64({1, 2, 3, 1, 2, 3}, {2, 3})}});
  s.push_back({"broadcast_like", {col, seq({2, 3, 4})}, {}, {bcast}});
  s.push_back({"broadcast_like", {f64({4}, {}), seq({2, 2})}, {}, {f64({4, 4, 4, 4}, {2, 2})}});

  Tensor x45 = seq({4, 5});
  Attrs sl{{"axis", int64_t{1}}, {"start", int64_t{1}}, {"stop", int64_t{-1}}, {"step", int64_t{2}}};
  s.push_back({"slice", {x45}, sl, {f64({-0.75, -0.25, 0.5, 1.0, 1.75, 2.25, 3.0, 3.5}, {4, 2})}});
  s.push_back({"slice", {x45}, {{"axis", int64_t{-2}}, {"start", int64_t{-3}}, {"stop", int64_t{100}}},
               {f64({0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75},
                    {3, 5})}});
  s.push_back({"slice", {x45}, {{"axis", int64_t{0}}, {"start", int64_t{3}}, {"stop", int64_t{1}}},
               {f64({}, {0, 5})}});
  OpSample sb{"slice_backward", {seq({4, 2}, 1.0, 1.0), x45}, sl,
              {f64({0, 1, 0, 2, 0, 0, 3, 0, 4, 0, 0, 5, 0, 6, 0, 0, 7, 0, 8, 0}, {4, 5})}};
  sb.grad_inputs = {0};
  s.push_back(sb);
}

void copies(SampleList& s) {
  Tensor x23 = seq({2, 3});
  s.push_back({"cast", {x23}, {{"dtype", DType::f64}}, {x23}});
  Tensor fl = f64({-1.5, -0.5, 0, 0.5, 2.7, 300}, {2, 3});
  s.push_back({"cast", {fl}, {{"dtype", DType::i32}}, {i32({-1, 0, 0, 0, 2, 300}, {2, 3})}, false});
  // NumPy gives the same on x86: -1.5 -> -1 -> 255, 300 -> 44 (mod 256).
  s.push_back({"cast", {fl}, {{"dtype", DType::u8}}, {tensor(std::vector<uint8_t>{255, 0, 0, 0, 2, 44}, {2, 3})},
               false});
  double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  s.push_back({"cast", {f64({nan, inf, -inf, 3e10}, {4})}, {{"dtype", DType::i32}},
               {i32({0, 2147483647, -2147483647 - 1, 2147483647}, {4})}, false});
  s.push_back({"cast", {tensor(std::vector<float>{1, 0.1f, 65504, 1e5f, -2.5e-8f}, {5})}, {{"dtype", DType::f16}},
               {f64({1, 0.0999755859375, 65504, inf, -0.0}, {5})}, false});
  s.push_back({"cast", {f64({0.1, -3.0}, {2})}, {{"dtype", DType::bf16}}, {f64({0.10009765625, -3.0}, {2})}, false});
  s.push_back({"cast", {f64({1, 0.5, -4}, {3}).to(DType::f16)}, {{"dtype", DType::bf16}},
               {f64({1, 0.5, -4}, {3})}, false});
  s.push_back({"cast", {tensor(std::vector<bool>{true, false}, {2})}, {{"dtype", DType::f32}},
               {f64({1, 0}, {2})}, false});
  s.push_back({"cast", {i64({0, -7, 256, 1}, {2, 2})}, {{"dtype", DType::boolean}},
               {tensor(std::vector<bool>{false, true, true, true}, {2, 2})}, false});
  s.push_back({"cast", {i64({300, -1}, {2})}, {{"dtype", DType::u8}},
               {tensor(std::vector<uint8_t>{44, 255}, {2})}, false});

  s.push_back({"contiguous", {seq({3, 2}).transpose(0, 1)}, {},
               {f64({-1.0, -0.5, 0.0, -0.75, -0.25, 0.25}, {2, 3})}});
  s.push_back({"contiguous", {i64({1, 2, 3, 4}, {2, 2})}, {}, {i64({1, 2, 3, 4}, {2, 2})}, false});

  Tensor b21 = f64({5, 6}, {2, 1});
  s.push_back({"concat", {x23, b21}, {{"axis", int64_t{-1}}},
               {f64({-1.0, -0.75, -0.5, 5.0, -0.25, 0.0, 0.25, 6.0}, {2, 4})}});
  s.push_back({"concat", {x23, f64({}, {0, 3}), seq({1, 3}, 7.0, 1.0)}, {},
               {f64({-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 7, 8, 9}, {3, 3})}});
  s.push_back({"concat", {i32({1, 2}, {2}), f64({0.5}, {1})}, {}, {f64({1, 2, 0.5}, {3})}, false});
}

void indexing(SampleList& s) {
  Tensor x43 = seq({4, 3});
  Tensor idx = i64({3, 0, 3}, {3});
  s.push_back({"index_select", {x43, idx}, {{"axis", int64_t{0}}},
               {f64({1.25, 1.5, 1.75, -1.0, -0.75, -0.5, 1.25, 1.5, 1.75}, {3, 3})}});
  s.push_back({"index_select", {x43, i32({2, 0}, {2})}, {{"axis", int64_t{-1}}},
               {f64({-0.5, -1.0, 0.25, -0.25, 1.0, 0.5, 1.75, 1.25}, {4, 2})}});
  s.push_back({"index_select", {x43, i64({}, {0})}, {{"axis", int64_t{0}}}, {f64({}, {0, 3})}});
  OpSample isb{"index_select_backward", {seq({3, 3}, 1.0, 1.0), idx, x43}, {{"axis", int64_t{0}}},
               {f64({4, 5, 6, 0, 0, 0, 0, 0, 0, 8, 10, 12}, {4, 3})}};
  isb.grad_inputs = {0};
  s.push_back(isb);

  Tensor x34 = seq({3, 4});
  Tensor gi1 = i64({0, 3, 1, 1, 2, 0}, {3, 2});
  Tensor gi0 = i64({2, 0, 1, 2, 0, 0, 2, 1}, {2, 4});
  s.push_back({"gather", {x34, gi1}, {{"axis", int64_t{1}}}, {f64({-1.0, -0.25, 0.25, 0.25, 1.5, 1.0}, {3, 2})}});
  s.push_back({"gather", {x34, gi0}, {{"axis", int64_t{-2}}},
               {f64({1.0, -0.75, 0.5, 1.75, -1.0, -0.75, 1.5, 0.75}, {2, 4})}});
  s.push_back({"gather", {x34, i32({3, 2}, {1, 2})}, {{"axis", int64_t{1}}}, {f64({-0.25, -0.5}, {1, 2})}});

  s.push_back({"scatter_add", {x34, gi1, seq({3, 2}, 1.0, 1.0)}, {{"axis", int64_t{1}}},
               {f64({0.0, -0.75, -0.5, 1.75, 0.0, 7.25, 0.5, 0.75, 7.0, 1.25, 6.5, 1.75}, {3, 4})}});
  s.push_back({"scatter_add", {i64({0, 0, 0}, {3}), i64({2, 2, 0, 2}, {4}), i64({1, 2, 3, 4}, {4})},
               {{"axis", int64_t{0}}}, {i64({3, 0, 7}, {3})}, false});

  s.push_back({"one_hot", {i64({0, 2, 1, 2}, {2, 2})}, {{"num_classes", int64_t{3}}},
               {f64({1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1}, {2, 2, 3})}});
  s.push_back({"one_hot", {i32({1, 0}, {2})}, {{"num_classes", int64_t{2}}, {"dtype", DType::boolean}},
               {tensor(std::vector<bool>{false, true, true, false}, {2, 2})}});
  s.push_back({"one_hot", {i64({}, {0})}, {{"num_classes", int64_t{3}}}, {f64({}, {0, 3})}});
}

void padding(SampleList& s) {
  Tensor x23 = seq({2, 3});
  s.push_back({"pad", {x23}, {{"pads", Ints{1, 2, 0, 1}}, {"value", 0.5}},
               {f64({0.5, 0.5, 0.5, 0.5, -1.0, -0.75, -0.5, 0.5, -0.25, 0.0, 0.25, 0.5, 0.5, 0.5, 0.5,
                     0.5, 0.5, 0.5, 0.5, 0.5},
                    {5, 4})}});
  s.push_back({"pad", {x23}, {{"pads", Ints{1, 1, 2, 2}}, {"mode", std::string("reflect")}},
               {f64({0.25, 0.0, -0.25, 0.0, 0.25, 0.0, -0.25, -0.5, -0.75, -1.0, -0.75, -0.5, -0.75, -1.0,
                     0.25, 0.0, -0.25, 0.0, 0.25, 0.0, -0.25, -0.5, -0.75, -1.0, -0.75, -0.5, -0.75, -1.0},
                    {4, 7})}});
  s.push_back({"pad", {x23}, {{"pads", Ints{2, 0, 1, 3}}, {"mode", std::string("replicate")}},
               {f64({-1.0, -1.0, -0.75, -0.5, -0.5, -0.5, -0.5, -1.0, -1.0, -0.75, -0.5, -0.5, -0.5, -0.5,
                     -1.0, -1.0, -0.75, -0.5, -0.5, -0.5, -0.5, -0.25, -0.25, 0.0, 0.25, 0.25, 0.25, 0.25},
                    {4, 7})}});
  // Only the first axis is padded; the others are left alone.
  s.push_back({"pad", {seq({2, 1, 2})}, {{"pads", Ints{0, 1}}, {"value", 9.0}},
               {f64({-1.0, -0.75, -0.5, -0.25, 9, 9}, {3, 1, 2})}});
  s.push_back({"pad", {f64({}, {0, 2})}, {{"pads", Ints{1, 0}}, {"value", 2.0}}, {f64({2, 2}, {1, 2})}});
  s.push_back({"pad", {i32({1, 2, 3}, {3})}, {{"pads", Ints{1, 1}}, {"mode", std::string("reflect")}},
               {i32({2, 1, 2, 3, 2}, {5})}, false});

  Tensor g47 = seq({4, 7}, 0.5, 0.5);
  OpSample r{"pad_backward", {g47, x23}, {{"pads", Ints{1, 1, 2, 2}}, {"mode", std::string("reflect")}},
             {f64({38, 54, 34, 24, 33, 20}, {2, 3})}};
  r.grad_inputs = {0};
  s.push_back(r);
  OpSample e{"pad_backward", {g47, x23}, {{"pads", Ints{2, 0, 1, 3}}, {"mode", std::string("replicate")}},
             {f64({25.5, 15, 75, 22.5, 12, 53}, {2, 3})}};
  e.grad_inputs = {0};
  s.push_back(e);
  OpSample k{"pad_backward", {seq({5, 4}, 0.5, 0.5), x23}, {{"pads", Ints{1, 2, 0, 1}}},
             {f64({2.5, 3, 3.5, 4.5, 5, 5.5}, {2, 3})}};
  k.grad_inputs = {0};
  s.push_back(k);
}

}  // namespace

SampleList array_samples() {
  SampleList s;
  views(s);
  copies(s);
  indexing(s);
  padding(s);
  return s;
}

}  // namespace ndflow::testing
