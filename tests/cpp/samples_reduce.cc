// Samples of the reduction ops (ops/reduce.cc) for the generic op tests.
// Expected values were computed with NumPy 2.4 from the same inputs (seq and
// rnd reproduced exactly in Python); tie and NaN cases are forward-only.
#include <cmath>

#include "op_samples.h"

namespace ndflow::testing {

namespace {
Tensor T(const std::vector<double>& v, const Shape& s) { return tensor(v, s); }
Tensor I(const std::vector<int64_t>& v, const Shape& s) { return tensor(v, s); }
// Attributes of sum/prod/max/min and of argmax/argmin ({} = flattened).
Attrs over(std::vector<int64_t> axes, bool keepdims = false) {
  return Attrs{{"axes", std::move(axes)}, {"keepdims", keepdims}};
}
Attrs along(std::vector<int64_t> axis, bool keepdims = false) {
  return Attrs{{"axis", std::move(axis)}, {"keepdims", keepdims}};
}
}  // namespace

SampleList reduce_samples() {
  SampleList s;
  s.push_back({"sum", {seq({2, 3})}, over({1}), {T({-2.25, 0.0}, {2})}});
  s.push_back({"sum",
               {rnd({2, 3, 4}, 1)},
               over({0, 2}),
               {T({0.14233384326787357, 0.44695860514461727, 1.60364704029111}, {3})}});
  s.push_back({"sum",
               {rnd({2, 3, 4}, 2)},
               over({-1}, true),
               {T({0.36058373996179083, -1.1191176472458244, 2.067161209019747, -0.5021872140266372,
                   -1.5075652192115805, -2.4340212088067457},
                  {2, 3, 1})}});
  s.push_back({"sum", {rnd({3, 4}, 3)}, over({}), {T({1.498620324763701}, {})}});
  s.push_back({"sum",
               {rnd({2, 3, 4}, 4)},
               over({-3, 1}, true),
               {T({1.0356962782511667, 1.029117367167918, -1.0488532475750953, -0.8072783961789425},
                  {1, 1, 4})}});
  s.push_back({"sum",
               {seq({2, 3}, -1.0, 0.25, DType::f32)},
               over({0}),
               {T({-1.25, -0.75, -0.25}, {3}).to(DType::f32)}});
  s.push_back({"sum", {seq({2, 3}, -3.0, 1.0, DType::i32)}, over({1}), {I({-6, 3}, {2})}, false});
  s.push_back({"sum",
               {tensor(std::vector<bool>{true, false, true, true}, {2, 2})},
               over({0}),
               {I({2, 1}, {2})},
               false});
  s.push_back({"sum", {scalar(2.5, DType::f64)}, over({-1}), {scalar(2.5, DType::f64)}});
  s.push_back({"sum", {zeros({0, 3}, DType::f64)}, over({0}), {zeros({3}, DType::f64)}});
  s.push_back({"sum", {seq({1, 3})}, over({0}, true), {T({-1.0, -0.75, -0.5}, {1, 3})}});
  s.push_back({"prod",
               {rnd({2, 3}, 5, 0.5, 1.5)},
               over({1}),
               {T({0.684344951950979, 0.6821804579796029}, {2})}});
  s.push_back({"prod",
               {T({1.5, 0, 2, 0, 0, 3, 0.5, 2, -1.5}, {3, 3})},
               over({1}),
               {T({0.0, 0.0, -1.5}, {3})}});
  s.push_back({"prod",
               {T({1.5, 0, 2, 0, 0, 3, 0.5, 2, -1.5}, {3, 3})},
               over({0}, true),
               {T({0.0, 0.0, -9.0}, {1, 3})}});
  s.push_back({"prod", {T({1.5, 0, 2, 0, 0, 3, 0.5, 2, -1.5}, {3, 3})}, over({}), {T({-0.0}, {})}});
  s.push_back({"prod",
               {rnd({2, 3, 2}, 6, 0.5, 1.5)},
               over({0, -1}, true),
               {T({1.787605380900273, 1.2623134670422718, 0.8502583737865198}, {1, 3, 1})}});
  s.push_back({"prod", {seq({2, 3}, -3.0, 1.0, DType::i32)}, over({1}), {I({-6, 0}, {2})}, false});
  s.push_back({"prod", {zeros({2, 0}, DType::f64)}, over({1}), {ones({2}, DType::f64)}});
  s.push_back({"max",
               {rnd({3, 4}, 7)},
               over({1}),
               {T({0.9113190768105721, 0.9626428737806072, 0.41922914114387266}, {3})}});
  s.push_back(
      {"max",
       {rnd({3, 4}, 8)},
       over({0}, true),
       {T({-0.07704601626166951, 0.8992237866616206, 0.45941730140153325, 0.8579770835596205},
          {1, 4})}});
  s.push_back({"max", {rnd({3, 4}, 9)}, over({}), {T({0.9852959293380148}, {})}});
  s.push_back({"max",
               {rnd({2, 3, 4}, 10)},
               over({0, -1}),
               {T({0.43977318436102375, 0.9147522558897359, 0.9304036689272461}, {3})}});
  s.push_back({"max",
               {rnd({2, 5}, 11, -1.0, 1.0, DType::f32)},
               over({-1}),
               {T({0.8273345511844219, 0.7407933955232069}, {2}).to(DType::f32)}});
  s.push_back({"max", {T({1, 3, 3, 2, 2, 2}, {2, 3})}, over({1}), {T({3.0, 2.0}, {2})}, false});
  s.push_back({"max", {T({1, NAN, 3, 4, 5, 6}, {2, 3})}, over({1}), {T({NAN, 6.0}, {2})}, false});
  s.push_back({"max", {seq({2, 3}, -3.0, 1.0, DType::i64)}, over({0}), {I({0, 1, 2}, {3})}, false});
  s.push_back({"min",
               {rnd({3, 4}, 7)},
               over({1}),
               {T({-0.46724106988652125, -0.7231576408768399, -0.612110077710609}, {3})}});
  s.push_back(
      {"min",
       {rnd({3, 4}, 8)},
       over({0}, true),
       {T({-0.8438543419546478, 0.0660149302556352, -0.937002833935251, -0.32349201713852116},
          {1, 4})}});
  s.push_back({"min", {rnd({3, 4}, 9)}, over({}), {T({-0.964551043032456}, {})}});
  s.push_back({"min",
               {rnd({2, 3, 4}, 10)},
               over({0, -1}),
               {T({-0.928631927985591, -0.8957617989767781, -0.8920224506700436}, {3})}});
  s.push_back({"min",
               {rnd({2, 5}, 11, -1.0, 1.0, DType::f32)},
               over({-1}),
               {T({-0.8425597853091968, -0.680363458742562}, {2}).to(DType::f32)}});
  s.push_back({"min", {T({1, 3, 3, 2, 2, 2}, {2, 3})}, over({1}), {T({1.0, 2.0}, {2})}, false});
  s.push_back({"min", {T({1, NAN, 3, 4, 5, 6}, {2, 3})}, over({1}), {T({NAN, 4.0}, {2})}, false});
  s.push_back(
      {"min", {seq({2, 3}, -3.0, 1.0, DType::i64)}, over({0}), {I({-3, -2, -1}, {3})}, false});
  s.push_back({"argmax", {rnd({3, 4}, 12)}, along({1}), {I({0, 2, 1}, {3})}, false});
  s.push_back({"argmax", {rnd({3, 4}, 12)}, along({-2}, true), {I({0, 2, 1, 2}, {1, 4})}, false});
  s.push_back({"argmax", {rnd({3, 4}, 12)}, along({}), {I({0}, {})}, false});
  s.push_back({"argmax", {rnd({3, 4}, 12)}, along({}, true), {I({0}, {1, 1})}, false});
  s.push_back(
      {"argmax", {rnd({2, 3, 4}, 13)}, along({1}), {I({1, 1, 2, 0, 0, 2, 2, 0}, {2, 4})}, false});
  s.push_back(
      {"argmax", {T({1, 3, 3, 2, 2, 1, 1, 2}, {2, 4})}, along({1}), {I({1, 0}, {2})}, false});
  s.push_back({"argmax", {T({1, 3, 3, 2, 2, 1, 1, 2}, {2, 4})}, along({}), {I({1}, {})}, false});
  s.push_back({"argmax", {T({1, NAN, 3, NAN}, {4})}, along({0}), {I({1}, {})}, false});
  s.push_back(
      {"argmax", {seq({2, 3}, 3.0, -1.0, DType::i32)}, along({0}), {I({0, 0, 0}, {3})}, false});
  s.push_back({"argmin", {rnd({3, 4}, 12)}, along({1}), {I({1, 3, 2}, {3})}, false});
  s.push_back({"argmin", {rnd({3, 4}, 12)}, along({-2}, true), {I({2, 0, 0, 0}, {1, 4})}, false});
  s.push_back({"argmin", {rnd({3, 4}, 12)}, along({}), {I({1}, {})}, false});
  s.push_back({"argmin", {rnd({3, 4}, 12)}, along({}, true), {I({1}, {1, 1})}, false});
  s.push_back(
      {"argmin", {rnd({2, 3, 4}, 13)}, along({1}), {I({2, 2, 0, 1, 1, 0, 0, 1}, {2, 4})}, false});
  s.push_back(
      {"argmin", {T({1, 3, 3, 2, 2, 1, 1, 2}, {2, 4})}, along({1}), {I({0, 1}, {2})}, false});
  s.push_back({"argmin", {T({1, 3, 3, 2, 2, 1, 1, 2}, {2, 4})}, along({}), {I({0}, {})}, false});
  s.push_back({"argmin", {T({1, NAN, 3, NAN}, {4})}, along({0}), {I({1}, {})}, false});
  s.push_back(
      {"argmin", {seq({2, 3}, 3.0, -1.0, DType::i32)}, along({0}), {I({1, 1, 1}, {3})}, false});
  s.push_back({"sum_to_like",
               {rnd({2, 3, 4}, 14), zeros({3, 1}, DType::f64)},
               {},
               {T({-1.548851282057486, 0.48961947431833, -0.012944480724311536}, {3, 1})},
               true,
               {0}});
  s.push_back({"sum_to_like",
               {rnd({2, 3}, 15), zeros({2, 3}, DType::f64)},
               {},
               {T({-0.5653420017985866, -0.4982712146036201, -0.7481519882206149,
                   0.12191017225536505, 0.31126875050069547, -0.5970289755220004},
                  {2, 3})},
               true,
               {0}});
  s.push_back({"sum_to_like",
               {rnd({2, 3}, 15), zeros({}, DType::f64)},
               {},
               {T({-1.9756152573887615}, {})},
               true,
               {0}});
  s.push_back({"sum_to_like",
               {rnd({4, 1, 3}, 16), zeros({1, 1, 3}, DType::f64)},
               {},
               {T({1.4750891117794491, -1.645750017311547, 0.13919052965964918}, {1, 1, 3})},
               true,
               {0}});
  s.push_back(
      {"sum_to_like",
       {rnd({2, 3, 4}, 17), zeros({4}, DType::f64)},
       {},
       {T({-1.1451282656341184, -1.6662778160189473, -0.4368052389392276, 0.19177754509027234},
          {4})},
       true,
       {0}});
  s.push_back({"sum_to_like",
               {seq({2, 3}, -3.0, 1.0, DType::i32), zeros({3}, DType::i32)},
               {},
               {T({-3.0, -1.0, 1.0}, {3}).to(DType::i32)},
               false});

  return s;
}

}  // namespace ndflow::testing
