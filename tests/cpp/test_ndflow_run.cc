// tools/ndflow-run end to end: a graph built and run in-process, exported
// with its inputs as .npy files, run by the binary, gives the same outputs;
// bad files, bad inputs and bad usage exit with status 2 and one line on
// stderr naming the problem.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "format_test_util.h"
#include "core/device_name.h"
#include "runtime/session.h"

using namespace ndflow;
using namespace ndflow::testing;

#ifdef NDFLOW_RUN_BINARY

namespace {

struct Result {
  int status = -1;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

Result run_tool(const TempDir& dir, const std::vector<std::string>& args) {
  std::string cmd = quote(NDFLOW_RUN_BINARY);
  for (const auto& a : args) cmd += str_cat(" ", quote(a));
  cmd += str_cat(" >", quote(dir / "stdout"), " 2>", quote(dir / "stderr"));
  int rc = std::system(cmd.c_str());
  Result r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
  r.out = read_file(dir / "stdout");
  r.err = read_file(dir / "stderr");
  return r;
}

// A small MLP with a Variable, a constant and two inputs and outputs.
Graph make_mlp() {
  Tensor w1 = rnd({4, 8}, 11, -1, 1, DType::f32), b1 = rnd({8}, 12, -1, 1, DType::f32);
  Tensor w2 = rnd({8, 3}, 13, -1, 1, DType::f32);
  w1.mark_variable("fc1.w");
  w2.mark_variable("fc2.w");
  Graph g;
  GraphScope scope(g);
  Tensor x = g.placeholder("x", {-1, 4});
  Tensor scale = g.placeholder("scale", {3});
  Tensor h = relu(matmul(x, w1) + b1);
  Tensor logits = matmul(h, w2) * scale;
  g.mark_output("logits", logits);
  g.mark_output("probs", softmax(logits, -1));
  return g;
}

}  // namespace

TEST_CASE("ndflow-run gives the in-process outputs of an exported graph", "[format][ndflow-run]") {
  TempDir dir;
  Graph g = make_mlp();
  Tensor x = rnd({5, 4}, 21, -2, 2, DType::f32), scale = tensor(std::vector<float>{1, 0.5f, 2}, {3});
  SessionOptions opts;
  opts.intra_op_threads = 1;
  Session session(g, opts);
  std::vector<Tensor> want = session.run({{"x", x}, {"scale", scale}}, {"logits", "probs"});

  save_graph(dir / "mlp.ndf", g);
  write_npy(dir / "x.npy", x);
  write_npy(dir / "scale.npy", scale);
  Result r = run_tool(dir, {dir / "mlp.ndf", "--input", "x=" + (dir / "x.npy"), "--input",
                            "scale=" + (dir / "scale.npy"), "--output", "probs=" + (dir / "p.npy"), "--output",
                            "logits=" + (dir / "l.npy"), "--threads", "1"});
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  REQUIRE_CLOSE(read_npy(dir / "l.npy"), want[0], 1e-6, 1e-6);
  REQUIRE_CLOSE(read_npy(dir / "p.npy"), want[1], 1e-6, 1e-6);

  // --bench and --print.
  r = run_tool(dir, {dir / "mlp.ndf", "--input", "x=" + (dir / "x.npy"), "--input", "scale=" + (dir / "scale.npy"),
                     "--output", "logits=" + (dir / "l2.npy"), "--bench", "3", "--print"});
  REQUIRE(r.status == 0);
  CHECK(r.out.find("bench: 3 runs, median ") != std::string::npos);
  CHECK(r.out.find(" ms, min ") != std::string::npos);
  CHECK(r.out.find("logits = ") != std::string::npos);
  REQUIRE_CLOSE(read_npy(dir / "l2.npy"), want[0], 1e-6, 1e-6);
}

TEST_CASE("ndflow-run: an unnamed --output needs a single-output graph, no --output prints", "[format][ndflow-run]") {
  TempDir dir;
  Graph g;
  {
    GraphScope scope(g);
    g.mark_output("y", g.placeholder("x", {2}) * 3.0);
  }
  save_graph(dir / "m.ndf", g);
  write_npy(dir / "x.npy", tensor(std::vector<float>{1, 2}, {2}));
  Result r = run_tool(dir, {dir / "m.ndf", "--input", "x=" + (dir / "x.npy"), "--output", dir / "y.npy"});
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  CHECK(read_npy(dir / "y.npy").to_vector<float>() == std::vector<float>{3, 6});
  r = run_tool(dir, {dir / "m.ndf", "--input", "x=" + (dir / "x.npy")});
  REQUIRE(r.status == 0);
  CHECK(r.out.find("y = ") != std::string::npos);
}

TEST_CASE("ndflow-run: saved device requests run on logical devices, --explain-placement", "[format][ndflow-run]") {
  TempDir dir;
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {2});
    Tensor h;
    {
      DeviceScope on("cpu:0");
      h = x * 3.0;
    }
    DeviceScope on("cpu:1");
    g.mark_output("y", h + 1.0);
  }
  save_graph(dir / "m.ndf", g);
  write_npy(dir / "x.npy", tensor(std::vector<float>{1, 2}, {2}));
  Result r = run_tool(dir, {dir / "m.ndf", "--cpu-devices", "2", "--explain-placement"});
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("-> /worker:0/cpu:1: requested 'cpu:1'") != std::string::npos);
  CHECK(r.out.find("/worker:0/cpu:0 -> /worker:0/cpu:1: 1 tensors, 8 bytes") != std::string::npos);
  CHECK(r.out.find("2 partitions, 1 send/recv pairs") != std::string::npos);
  r = run_tool(dir, {dir / "m.ndf", "--cpu-devices", "2", "--input", "x=" + (dir / "x.npy"), "--output",
                     dir / "y.npy"});
  REQUIRE(r.status == 0);
  CHECK(read_npy(dir / "y.npy").to_vector<float>() == std::vector<float>{4, 7});
  // With one device, cpu:1 does not exist.
  r = run_tool(dir, {dir / "m.ndf", "--input", "x=" + (dir / "x.npy")});
  CHECK(r.status == 2);
  CHECK(r.err.find("no device matches") != std::string::npos);
  r = run_tool(dir, {dir / "m.ndf", "--soft-placement", "--input", "x=" + (dir / "x.npy"), "--output",
                     dir / "y1.npy"});
  REQUIRE(r.status == 0);
  CHECK(read_npy(dir / "y1.npy").to_vector<float>() == std::vector<float>{4, 7});
}

TEST_CASE("ndflow-run exits 2 with a one-line error for bad files, inputs and usage", "[format][ndflow-run]") {
  TempDir dir;
  save_graph(dir / "mlp.ndf", make_mlp());
  write_npy(dir / "x.npy", rnd({5, 4}, 1, -1, 1, DType::f32));
  write_npy(dir / "x64.npy", rnd({5, 4}, 1, -1, 1, DType::f64));
  write_npy(dir / "x3.npy", rnd({5, 3}, 1, -1, 1, DType::f32));
  write_npy(dir / "scale.npy", rnd({3}, 1, -1, 1, DType::f32));
  write_file(dir / "junk.npy", "\x93NUMPY garbage");
  std::string m = dir / "mlp.ndf", xs = "x=" + (dir / "x.npy"), sc = "scale=" + (dir / "scale.npy");
  std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{m, "--input", "x=" + (dir / "x64.npy"), "--input", sc}, "holds f64[5,4] but input 'x' expects f32[-1,4]"},
      {{m, "--input", "x=" + (dir / "x3.npy"), "--input", sc}, "holds f32[5,3] but input 'x' expects f32[-1,4]"},
      {{m, "--input", "x=" + (dir / "junk.npy"), "--input", sc}, "[npy] "},
      {{m, "--input", "x=" + (dir / "missing.npy"), "--input", sc}, "cannot open"},
      {{m, "--input", "nope=" + (dir / "x.npy")}, "the graph has no input named 'nope' (inputs: x, scale)"},
      {{m, "--input", xs, "--input", xs}, "--input x is given twice"},
      {{m, "--input", xs, "--input", sc, "--output", "nope=" + (dir / "o.npy")}, "no output named 'nope'"},
      {{m, "--input", xs, "--input", sc, "--output", dir / "o.npy"}, "the graph has 2 outputs"},
      {{dir / "missing.ndf"}, "[ndf] "},
      {{m, "--bench", "zero"}, "--bench needs an integer"},
      {{m, "--threads"}, "--threads needs a value"},
      {{m, "--frobnicate"}, "unknown option '--frobnicate'"},
      {{m, "--input", "x"}, "--input needs NAME=FILE.npy"},
      {{}, "no model file given"},
      {{m, m}, "more than one model file"},
  };
  for (const auto& [args, text] : cases) {
    Result r = run_tool(dir, args);
    INFO("args: " << (args.empty() ? "" : args.back()) << " expecting: " << text << "\nstderr: " << r.err);
    CHECK(r.status == 2);
    CHECK(r.err.rfind("ndflow-run: error: ", 0) == 0);
    CHECK(r.err.find(text) != std::string::npos);
    std::string first = r.err.substr(0, r.err.find('\n'));
    CHECK(first.find(text) != std::string::npos);  // the message fits its one line
  }
  CHECK(run_tool(dir, {"--help"}).status == 0);
}

TEST_CASE("ndflow-run rejects every hand-made bad file with status 2 and one line", "[format][ndflow-run]") {
  TempDir dir;
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test_data_dir() / "bad_ndf")) {
    if (entry.path().extension() != ".ndf") continue;
    Result r = run_tool(dir, {entry.path().string()});
    INFO(entry.path().filename().string() << ": status " << r.status << ", stderr: " << r.err);
    CHECK(r.status == 2);
    CHECK(r.err.rfind("ndflow-run: error: [ndf] ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    ++n;
  }
  CHECK(n >= 50);
}

#endif  // NDFLOW_RUN_BINARY
