// Samples of the random ops (ops/random.cc). Values are not compared here
// (test_creation_random.cc pins them against an independent Philox
// reference); the generic tests still run each draw and check its inferred
// shape and dtype.
#include "op_samples.h"

namespace ndflow::testing {

namespace {
using Ints = std::vector<int64_t>;
}  // namespace

SampleList random_samples() {
  SampleList s;
  s.push_back({"uniform", {}, {{"shape", Ints{4, 5}}, {"seed", int64_t{1}}}, {}, false});
  s.push_back({"uniform", {}, {{"shape", Ints{7}}, {"low", -2.0}, {"high", 3.0}, {"dtype", DType::f64},
                               {"seed", int64_t{2}}, {"offset", int64_t{8}}}, {}, false});
  s.push_back({"uniform", {}, {{"shape", Ints{3, 3}}, {"dtype", DType::bf16}}, {}, false});
  s.push_back({"normal", {}, {{"shape", Ints{3, 5}}, {"seed", int64_t{3}}}, {}, false});
  s.push_back({"normal", {}, {{"shape", Ints{5}}, {"mean", 1.0}, {"std", 0.5}, {"dtype", DType::f64}}, {}, false});
  s.push_back({"normal", {}, {{"shape", Ints{}}, {"dtype", DType::f16}}, {}, false});
  s.push_back({"bernoulli", {}, {{"shape", Ints{2, 8}}, {"p", 0.3}}, {}, false});
  s.push_back({"bernoulli", {}, {{"shape", Ints{6}}, {"p", 1.0}, {"dtype", DType::boolean}},
               {tensor(std::vector<bool>(6, true), {6})}, false});
  s.push_back({"bernoulli", {}, {{"shape", Ints{6}}, {"p", 0.0}, {"dtype", DType::i32}},
               {tensor(std::vector<int32_t>(6, 0), {6})}, false});
  s.push_back({"randint", {}, {{"shape", Ints{3, 4}}, {"low", int64_t{-5}}, {"high", int64_t{5}}}, {}, false});
  s.push_back({"randint", {}, {{"shape", Ints{4}}, {"low", int64_t{7}}, {"high", int64_t{8}}, {"dtype", DType::u8}},
               {tensor(std::vector<uint8_t>(4, 7), {4})}, false});
  s.push_back({"randint", {}, {{"shape", Ints{0, 3}}, {"high", int64_t{10}}, {"dtype", DType::i32}}, {}, false});
  return s;
}

}  // namespace ndflow::testing
