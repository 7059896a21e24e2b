// core/: dtypes and promotion, f16/bf16 conversion, shapes, the caching
// allocator, tensor handles, element access and printing.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;

TEST_CASE("type promotion follows NumPy/PyTorch categories", "[core]") {
  CHECK(promote_types(DType::i32, DType::f32) == DType::f32);
  CHECK(promote_types(DType::f32, DType::f64) == DType::f64);
  CHECK(promote_types(DType::f16, DType::bf16) == DType::f32);
  CHECK(promote_types(DType::u8, DType::i32) == DType::i32);
  CHECK(promote_types(DType::i32, DType::i64) == DType::i64);
  CHECK(promote_types(DType::boolean, DType::u8) == DType::u8);
  CHECK(promote_types(DType::i64, DType::f16) == DType::f16);
  CHECK(dtype_from_name("bf16") == DType::bf16);
  CHECK(dtype_from_name("float32") == DType::f32);
  REQUIRE_THROWS_AS(dtype_from_name("f128"), NotFoundError);
  CHECK(dtype_size(DType::bf16) == 2);
}

TEST_CASE("f16 and bf16 round-trip and round to nearest even", "[core]") {
  for (float v : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f,
                  0.333251953125f}) {
    CHECK(static_cast<float>(Half(v)) == v);
  }
  CHECK(std::isinf(static_cast<float>(Half(70000.0f))));
  CHECK(std::isnan(static_cast<float>(Half(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(static_cast<float>(Half(1.0f + 1.0f / 2048)) == 1.0f);           // tie -> even (down)
  CHECK(static_cast<float>(Half(1.0f + 3.0f / 2048)) == 1.0f + 1.0f / 512);  // tie -> even (up)
  CHECK(static_cast<float>(BFloat16(1.0f)) == 1.0f);
  CHECK(static_cast<float>(BFloat16(3.140625f)) == 3.140625f);
  CHECK(static_cast<float>(BFloat16(1.00390625f)) == 1.0f);  // tie -> even
  CHECK(std::isnan(static_cast<float>(BFloat16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("shape helpers: broadcasting, axes, overflow", "[core]") {
  CHECK(broadcast_shapes(Shape{2, 1, 3}, Shape{4, 1}, "t") == Shape{2, 4, 3});
  CHECK(broadcast_shapes(Shape{}, Shape{5}, "t") == Shape{5});
  CHECK(broadcast_shapes(Shape{0, 3}, Shape{1, 3}, "t") == Shape{0, 3});
  REQUIRE_THROWS_AS(broadcast_shapes(Shape{2, 3}, Shape{3, 2}, "t"), ShapeError);
  CHECK(normalize_axis(-1, 3, "t") == 2);
  REQUIRE_THROWS_AS(normalize_axis(3, 3, "t"), IndexError);
  REQUIRE_THROWS_WITH(normalize_axis(-4, 3, "t"), Catch::Contains("valid: -3..2"));
  REQUIRE_THROWS_AS(normalize_axes(std::vector<int64_t>{0, -3}, 3, "t"), ValueError);
  REQUIRE_THROWS_AS(shape_numel(Shape{int64_t(1) << 40, int64_t(1) << 40}), ValueError);
  REQUIRE_THROWS_AS(shape_numel(Shape{2, -1}), ValueError);
}

TEST_CASE("shapes with more dims than the inline capacity", "[core]") {
  Shape s{1, 2, 1, 2, 1, 2, 1, 2};
  Shape copy = s;
  copy.push_back(3);
  CHECK(copy.size() == 9);
  CHECK(shape_numel(copy) == 48);
  Tensor t = ones(s);
  CHECK(t.numel() == 16);
  CHECK(sum(t).item<double>() == 16);
}

TEST_CASE("the CPU allocator is aligned and reuses freed blocks", "[core]") {
  Allocator& a = cpu_allocator();
  void* p = a.allocate(1000);
  CHECK(reinterpret_cast<uintptr_t>(p) % kCpuAlignment == 0);
  a.deallocate(p, 1000);
  auto before = a.stats();
  void* q = a.allocate(1000);
  auto after = a.stats();
  CHECK(after.num_system_allocs == before.num_system_allocs);  // served from the cache
  a.deallocate(q, 1000);
  void* big = a.allocate(size_t(3) << 20);
  CHECK(reinterpret_cast<uintptr_t>(big) % kCpuAlignment == 0);
  a.deallocate(big, size_t(3) << 20);
}

TEST_CASE("tensor handles: metadata, element access, printing", "[core]") {
  Tensor t = tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t.rank() == 2);
  CHECK(t.size(-1) == 3);
  CHECK(t.numel() == 6);
  CHECK(t.is_contiguous());
  CHECK(t.at({1, 2}) == 6);
  CHECK(t.at({-1, 0}) == 4);
  REQUIRE_THROWS_AS(t.at({2, 0}), IndexError);
  REQUIRE_THROWS_AS(t.at({0}), IndexError);
  REQUIRE_THROWS_AS(t.item<float>(), ValueError);
  REQUIRE_THROWS_AS(t.data<double>(), TypeError);
  Tensor copy = t;  // handles share
  CHECK(copy.same(t));
  std::string s = t.str();
  CHECK(s.find("[[1, 2, 3],") != std::string::npos);
  CHECK(s.find("shape=[2,3], dtype=f32") != std::string::npos);
  CHECK(Tensor().str() == "Tensor(undefined)");
  REQUIRE_THROWS_AS(Tensor().shape(), ValueError);
  Tensor long_vec = arange(100, DType::i64);
  CHECK(long_vec.str().find("...") != std::string::npos);
}

TEST_CASE("views share storage, contiguous and clone copy", "[core]") {
  Tensor base = seq({3, 4}, 0, 1);
  Tensor tr = base.t();
  CHECK_FALSE(tr.is_contiguous());
  CHECK(tr.raw_data() == base.raw_data());
  CHECK(tr.at({3, 2}) == base.at({2, 3}));
  Tensor c = tr.contiguous();
  CHECK(c.is_contiguous());
  CHECK(c.raw_data() != base.raw_data());
  REQUIRE_CLOSE(c, tr);
  Tensor cl = base.clone();
  CHECK(cl.raw_data() != base.raw_data());
  REQUIRE_CLOSE(cl, base);
  Tensor row = base.slice(0, 1, 2);
  row.fill_(7);
  CHECK(base.at({1, 0}) == 7);
  CHECK(base.at({0, 0}) == 0);
}

TEST_CASE("casts between all dtypes", "[core]") {
  Tensor f = tensor(std::vector<float>{-1.5f, 0.f, 2.25f, 3.f}, {4});
  for (DType dt : {DType::f64, DType::f16, DType::bf16}) {
    Tensor back = f.to(dt).to(DType::f32);
    REQUIRE_CLOSE(back, f, 0, 0);
  }
  CHECK(f.to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{-1, 0, 2, 3});
  CHECK(f.to(DType::boolean).to_vector<bool>() == std::vector<bool>{true, false, true, true});
}

TEST_CASE("devices parse and print", "[core]") {
  CHECK(Device::parse("cpu") == Device::cpu());
  CHECK(Device::parse("cuda:1") == Device::cuda(1));
  CHECK(Device::cuda(1).str() == "cuda:1");
  REQUIRE_THROWS_AS(Device::parse("tpu:0"), ValueError);
  REQUIRE_THROWS_AS(Device::parse("cpu:x"), ValueError);
}

TEST_CASE("op registry lookups give helpful errors", "[core]") {
  REQUIRE_THROWS_AS(op_def("no_such_op"), NotFoundError);
  REQUIRE_THROWS_WITH(op_def("relux"), Catch::Contains("relu"));
  const OpDef& add_op = op_def("add");
  CHECK(add_op.kernel(DeviceType::CPU) != nullptr);
  CHECK(add_op.differentiable());
  REQUIRE_THROWS_AS(add_op.complete_attrs(Attrs{{"bogus", int64_t(1)}}), ValueError);
  REQUIRE_THROWS_AS(call_op(add_op, std::vector<Tensor>{ones({1})}), ValueError);
}
