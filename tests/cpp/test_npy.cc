// The NumPy .npy reader and writer (core/npy.h): round trips, byte-exact
// agreement with what NumPy writes, big-endian and Fortran-order input, and
// malformed files rejected with a FormatError naming the problem.
#include <catch2/catch.hpp>

#include "format_test_util.h"

using namespace ndflow;
using namespace ndflow::testing;
using namespace std::string_literals;  // the byte strings below contain NULs

namespace {

// A .npy file around a header dict and data, padded as NumPy pads.
std::string npy(const std::string& dict, const std::string& data, int major = 1) {
  size_t prefix = major == 1 ? 10 : 12;
  std::string h = dict;
  h.append((64 - (prefix + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  for (size_t k = 0; k < prefix - 8; ++k) out += static_cast<char>((h.size() >> (8 * k)) & 0xff);
  return out + h + data;
}

std::string f32_bytes(std::initializer_list<float> v) {
  return std::string(reinterpret_cast<const char*>(std::data(v)), v.size() * 4);
}

// `s` with the bytes at `pos` overwritten (element-wise: GCC 12 warns
// spuriously on std::string::replace here).
std::string patched(std::string s, size_t pos, std::string_view bytes) {
  for (size_t k = 0; k < bytes.size(); ++k) s[pos + k] = bytes[k];
  return s;
}

std::string npy_error(const std::string& bytes) {
  try {
    parse_npy(as_bytes(bytes), "t.npy");
  } catch (const FormatError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("npy round-trips every NumPy dtype, 0-d, empty and non-contiguous tensors", "[format][npy]") {
  TempDir dir;
  Tensor h = Tensor::empty({2}, DType::f16);
  h.data<Half>()[0] = Half(1.5f);
  h.data<Half>()[1] = Half(-2.0f);
  std::vector<Tensor> cases = {
      tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}),
      tensor(std::vector<double>{1e-300, -3.5}, {2}),
      h,
      tensor(std::vector<int32_t>{-1, 7}, {1, 2}),
      tensor(std::vector<int64_t>{1ll << 40}, {1}),
      tensor(std::vector<uint8_t>{0, 200}, {2}),
      tensor(std::vector<bool>{true, false, true}, {3}),
      scalar(4.25, DType::f64),
      Tensor::empty({0, 5}, DType::i64),
      tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}).t(),
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i << ": " << cases[i].str());
    std::string path = dir / str_cat("c", i, ".npy");
    write_npy(path, cases[i]);
    Tensor back = read_npy(path);
    CHECK(same_tensor(back, cases[i]));
    CHECK(read_file(path).size() % 64 == cases[i].nbytes() % 64);  // header padded to 64 bytes
  }
  CHECK_THROWS_AS(serialize_npy(Tensor::empty({2}, DType::bf16)), TypeError);
}

TEST_CASE("npy output is byte-identical to numpy.save", "[format][npy]") {
  // np.save(f, np.array([[1, 2, 3], [4, 5, 6]], np.float32)) and np.save(f, np.float64(3))
  std::string want = "\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"s;
  want.append(127 - want.size(), ' ');
  want += '\n';
  want += f32_bytes({1, 2, 3, 4, 5, 6});
  CHECK(serialize_npy(tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3})) == want);
  CHECK(serialize_npy(scalar(3, DType::f64)).substr(10, 60) ==
        "{'descr': '<f8', 'fortran_order': False, 'shape': (), }     ");
  CHECK(serialize_npy(tensor(std::vector<bool>{true}, {1})).find("'shape': (1,), }") != std::string::npos);
}

TEST_CASE("npy reads big-endian, Fortran-order and version 2.0 files", "[format][npy]") {
  std::string be = "\x3f\x80\x00\x00\x40\x00\x00\x00"s;  // 1.0f, 2.0f big-endian
  Tensor t = parse_npy(as_bytes(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", be)));
  CHECK(t.to_vector<float>() == std::vector<float>{1, 2});
  // Column-major [[1, 2, 3], [4, 5, 6]] is stored 1 4 2 5 3 6.
  Tensor f = parse_npy(
      as_bytes(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f32_bytes({1, 4, 2, 5, 3, 6}))));
  CHECK(f.shape() == Shape{2, 3});
  CHECK(f.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  Tensor v2 = parse_npy(as_bytes(npy("{\"descr\": \"<f4\", \"shape\": (1,), \"fortran_order\": False}",
                                     f32_bytes({7}), 2)));
  CHECK(v2.item<float>() == 7);
}

TEST_CASE("malformed npy files are FormatErrors naming the problem", "[format][npy]") {
  const std::string d = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string two = f32_bytes({1, 2});
  std::vector<std::pair<std::string, std::string>> cases = {
      {"not numpy", "bad magic"},
      {patched(npy(d, two), 6, "\x09"), "unsupported .npy version 9.0"},
      {npy(d, two).substr(0, 9), "bad magic"},
      {patched(npy(d, two), 8, "\xff\x7f"), "runs past the end of the file"},
      {npy(d, two.substr(0, 5)), "needs 8 data bytes but the file has 5 (truncated)"},
      {npy(d, two + "xx"), "(trailing bytes)"},
      {npy("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", two), "unsupported dtype '<c8'"},
      {npy("{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", two), "unsupported dtype '|f4'"},
      {npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", two), "expected a quoted string"},
      {npy("{'descr': '<f4', 'fortran_order': False, }", two), "missing key 'shape'"},
      {npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", two), "duplicate key"},
      {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", two), "unknown key 'x'"},
      {npy("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", two), "expected True or False"},
      {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", two), "expected a non-negative integer"},
      {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", two), "overflows"},
      {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", two), "overflows"},
      {npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,) } junk", two), "unexpected text"},
      {npy("{'descr': '<f4", two), "unterminated string"},
      {npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", "\x01\x05"), "holds the byte 5"},
  };
  std::string rank65 = "{'descr': '|u1', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < 65; ++i) rank65 += "1,";
  rank65 += "), }";
  cases.emplace_back(npy(rank65, "\x01"), "rank exceeds 64");
  for (const auto& [bytes, text] : cases) {
    std::string msg = npy_error(bytes);
    INFO("expected '" << text << "', got: " << msg);
    CHECK(msg.find(text) != std::string::npos);
    CHECK(msg.rfind("[npy] t.npy: ", 0) == 0);
    CHECK(msg.find('\n') == std::string::npos);
  }
  TempDir dir;
  CHECK_THROWS_WITH(read_npy(dir / "missing.npy"), Catch::Contains("cannot open"));
}
