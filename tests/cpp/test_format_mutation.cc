// Deterministic mutation testing of the .ndf loader: truncations, bit flips,
// byte overwrites, edited header fields and length prefixes of a valid model
// file. Every mutant must be rejected with a FormatError or load; one that
// loads is run, and one whose change is confined to weight bytes must load
// and run. Any other exception, a crash (or a sanitizer report under the asan
// preset) or a hang fails the test. Seeded, so every run sees the same mutants.
#include <catch2/catch.hpp>

#include <chrono>

#include "format_test_util.h"
#include "runtime/session.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

// splitmix64: a fixed generator, so the mutants do not depend on the
// standard library's distributions.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

struct Model {
  Graph graph;
  std::string bytes;
  Tensor x;                                        // a feed for "x"
  std::vector<std::pair<size_t, size_t>> weights;  // file byte ranges of the f32 tensors
  size_t header_end = 0, data_start = 0;
};

Model make_model() {
  Model m;
  Tensor w = rnd({4, 3}, 1, -1, 1, DType::f32);
  w.mark_variable("fc.w");
  Tensor bias = rnd({3}, 2, -1, 1, DType::f32);  // made eagerly: a constant in the graph
  {
    GraphScope scope(m.graph);
    Tensor x = m.graph.placeholder("x", {-1, 4});
    Tensor h = leaky_relu(matmul(x, w) + bias, 0.1);
    Tensor keep = tensor(std::vector<bool>{true, false, true}, {3});
    Tensor y = where(keep, h, h * 2.0);
    m.graph.mark_output("y", sum(y, {1}));
  }
  m.bytes = serialize_graph(m.graph, {{"purpose", "mutation test"}});
  m.x = rnd({2, 4}, 3, -1, 1, DType::f32);
  uint64_t header_bytes = 0;
  for (int i = 0; i < 8; ++i) header_bytes |= uint64_t{static_cast<uint8_t>(m.bytes[8 + i])} << (8 * i);
  m.header_end = 16 + header_bytes;
  m.data_start = (m.header_end + 63) / 64 * 64;
  // Where the f32 tensors' bytes sit in the file (random values: unique).
  Checkpoint c = parse_tensors(as_bytes(m.bytes));
  for (const auto& [name, t] : c.tensors)
    if (t.dtype() == DType::f32) {
      std::string raw(static_cast<const char*>(t.raw_data()), t.nbytes());
      size_t off = m.bytes.find(raw, m.data_start);
      REQUIRE(off != std::string::npos);
      m.weights.emplace_back(off, off + raw.size());
    }
  REQUIRE(m.weights.size() == 2);
  return m;
}

// The same container around an edited header.
std::string reframe(const Model& m, const std::string& header) {
  std::string out = m.bytes.substr(0, 8);
  for (int i = 0; i < 8; ++i) out += static_cast<char>((uint64_t{header.size()} >> (8 * i)) & 0xff);
  out += header;
  out.append((64 - out.size() % 64) % 64, '\0');
  return out + m.bytes.substr(m.data_start);
}

// Spans of the header's JSON scalars (numbers, strings, literals) to edit.
std::vector<std::pair<size_t, size_t>> scalar_tokens(const std::string& h) {
  std::vector<std::pair<size_t, size_t>> tokens;
  for (size_t i = 0; i < h.size();) {
    char c = h[i];
    if (c == '"') {
      size_t j = i + 1;
      while (j < h.size() && h[j] != '"') j += h[j] == '\\' ? 2 : 1;
      tokens.emplace_back(i, j + 1 - i);
      i = j + 1;
    } else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n') {
      size_t j = i;
      while (j < h.size() && std::string_view(",]}:").find(h[j]) == std::string_view::npos) ++j;
      tokens.emplace_back(i, j - i);
      i = j;
    } else {
      ++i;
    }
  }
  return tokens;
}

enum class Outcome { rejected, ran, run_error };

Outcome try_mutant(const Model& m, const std::string& bytes) {
  Graph g;
  try {
    g = parse_graph(as_bytes(bytes));
  } catch (const FormatError&) {  // anything else escapes and fails the test
    return Outcome::rejected;
  }
  try {
    SessionOptions opts;
    opts.inter_op_threads = 1;
    opts.intra_op_threads = 1;
    Session s(g, opts);
    s.run({{"x", m.x}}, {"y"});
    return Outcome::ran;
  } catch (const Error&) {  // e.g. a renamed input or output: a clean error
    return Outcome::run_error;
  }
}

}  // namespace

TEST_CASE("mutated .ndf files are rejected cleanly or run, weight-only mutants run", "[format]") {
  Model m = make_model();
  REQUIRE(try_mutant(m, m.bytes) == Outcome::ran);
  Rng rng{20240611};
  const std::string header = m.bytes.substr(16, m.header_end - 16);
  auto tokens = scalar_tokens(header);
  REQUIRE(tokens.size() > 50);
  const std::vector<std::string> replacements = {
      "0", "-1", "1", "2", "63", "64", "65", "4294967296", "9223372036854775807", "9223372036854775808",
      "18446744073709551615", "-9223372036854775808", "1e308", "-0.5", "null", "true", "\"\"", "\"f128\"",
      "\"x\"", "\"y\"", "\"fc.w\"", "\"variable\"", "\"placeholder\"", "\"nan\"", "[]", "{}", "[-1]",
      "[4294967296,4294967296]", "{\"node\":\"x\",\"output\":0}", "\"cpu:0\"", "\"\\u0000\""};
  std::map<Outcome, int> counts;
  int weight_mutants = 0, total = 0;
  auto t0 = std::chrono::steady_clock::now();
  auto check = [&](const std::string& bytes, bool weights_only) {
    ++total;
    Outcome o = try_mutant(m, bytes);
    ++counts[o];
    if (weights_only) {
      ++weight_mutants;
      REQUIRE(o == Outcome::ran);
    }
  };

  // Truncation at every length near the front, then at a stride.
  for (size_t len = 0; len < m.bytes.size(); len += len < 300 ? 1 : 7) check(m.bytes.substr(0, len), false);
  // Single bit flips anywhere, then in the weights only.
  for (int i = 0; i < 1500; ++i) {
    std::string b = m.bytes;
    size_t pos = rng.below(b.size());
    b[pos] = static_cast<char>(b[pos] ^ (1 << rng.below(8)));
    bool in_weights = false;
    for (auto [lo, hi] : m.weights) in_weights |= pos >= lo && pos < hi;
    check(b, in_weights);
  }
  for (int i = 0; i < 300; ++i) {
    std::string b = m.bytes;
    auto [lo, hi] = m.weights[rng.below(m.weights.size())];
    for (int k = 0; k < 1 + static_cast<int>(rng.below(4)); ++k) {
      size_t pos = lo + rng.below(hi - lo);
      b[pos] = static_cast<char>(rng.next());
    }
    check(b, true);
  }
  // Runs of random bytes.
  for (int i = 0; i < 300; ++i) {
    std::string b = m.bytes;
    size_t pos = rng.below(b.size()), len = 1 + rng.below(16);
    for (size_t k = pos; k < std::min(b.size(), pos + len); ++k) b[k] = static_cast<char>(rng.next());
    check(b, false);
  }
  // Edited header fields, re-framed so the length prefix is right.
  for (int i = 0; i < 1200; ++i) {
    auto [pos, len] = tokens[rng.below(tokens.size())];
    std::string h = header;
    h.replace(pos, len, replacements[rng.below(replacements.size())]);
    check(reframe(m, h), false);
  }
  // Edited length prefixes.
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{m.header_end - 17}, uint64_t{m.header_end - 15},
                     uint64_t{m.bytes.size()}, ~uint64_t{0}, uint64_t{1} << 63, (uint64_t{1} << 63) - 16}) {
    std::string b = m.bytes;
    for (int k = 0; k < 8; ++k) b[8 + k] = static_cast<char>((v >> (8 * k)) & 0xff);
    check(b, false);
  }
  for (int i = 0; i < 100; ++i) {
    std::string b = m.bytes;
    uint64_t v = rng.next() >> rng.below(64);
    for (int k = 0; k < 8; ++k) b[8 + k] = static_cast<char>((v >> (8 * k)) & 0xff);
    check(b, false);
  }

  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(total << " mutants: " << counts[Outcome::rejected] << " rejected, " << counts[Outcome::ran] << " ran, "
             << counts[Outcome::run_error] << " loaded but failed to run, in " << s << " s");
  CHECK(total > 3000);
  CHECK(weight_mutants > 300);
  CHECK(counts[Outcome::rejected] > 2000);
  CHECK(s < 60);  // a hang shows up as a timeout of ctest; this catches slow paths
}
