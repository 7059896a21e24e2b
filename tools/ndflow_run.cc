// ndflow-run: runs an exported graph (.ndf, DESIGN.md §8) on NumPy inputs.
//
//   ndflow-run model.ndf --input x=x.npy --output y=y.npy [--threads N] [--bench N] [--print]
//
// Exit status: 0 on success; 2 for a bad file, bad input or bad usage, with
// one line on stderr saying what is wrong; 1 for an internal error (a bug).
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "core/device_name.h"
#include "core/format.h"
#include "core/npy.h"
#include "runtime/executor.h"
#include "runtime/session.h"

namespace {

using namespace ndflow;

constexpr const char* kUsage =
    "usage: ndflow-run MODEL.ndf [--input NAME=FILE.npy]... [--output [NAME=]FILE.npy]...\n"
    "                  [--threads N] [--bench N] [--print] [--cpu-devices N]\n"
    "                  [--soft-placement] [--explain-placement]\n"
    "  --input NAME=FILE   feed graph input NAME from a .npy file\n"
    "  --output NAME=FILE  write graph output NAME to a .npy file (NAME may be left out\n"
    "                      when the graph has one output); without --output every\n"
    "                      output is printed\n"
    "  --threads N         intra-op threads (default: all cores)\n"
    "  --bench N           run N more times and print median/min/max latency\n"
    "  --print             print the outputs\n"
    "  --cpu-devices N     logical CPU devices for the placer (default 1, or\n"
    "                      NDFLOW_NUM_CPU_DEVICES); nodes saved with device requests\n"
    "                      (e.g. cpu:1) run on their device, joined by send/recv\n"
    "  --soft-placement    a requested device that is missing or lacks a kernel falls\n"
    "                      back to another device\n"
    "  --explain-placement print each node's device and the reason, and the bytes\n"
    "                      crossing each device boundary, then exit without running\n";

// Bad usage: reported like a bad file, exit status 2.
struct UsageError : ValueError {
  using ValueError::ValueError;
};

struct Options {
  std::string model;
  std::vector<std::pair<std::string, std::string>> inputs, outputs;  // name (may be empty) -> path
  int threads = 0;
  int bench = 0;
  bool print = false;
  int cpu_devices = 0;
  bool soft_placement = false;
  bool explain_placement = false;
};

int parse_count(const std::string& flag, const std::string& v, int lo, int hi) {
  int n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size() || n < lo || n > hi)
    throw UsageError(flag + " needs an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                     ", got '" + v + "'");
  return n;
}

Options parse_args(int argc, char** argv) {
  Options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw UsageError(a + " needs a value");
      return args[++i];
    };
    if (a == "--input" || a == "--output") {
      const std::string& v = value();
      auto eq = v.find('=');
      if (a == "--input" && (eq == std::string::npos || eq == 0 || eq + 1 == v.size()))
        throw UsageError("--input needs NAME=FILE.npy, got '" + v + "'");
      std::string name = eq == std::string::npos ? "" : v.substr(0, eq);
      std::string path = eq == std::string::npos ? v : v.substr(eq + 1);
      if (path.empty()) throw UsageError(a + " needs a file name, got '" + v + "'");
      (a == "--input" ? o.inputs : o.outputs).emplace_back(name, path);
    } else if (a == "--threads") {
      o.threads = parse_count(a, value(), 1, 1024);
    } else if (a == "--bench") {
      o.bench = parse_count(a, value(), 1, 1000000);
    } else if (a == "--print") {
      o.print = true;
    } else if (a == "--cpu-devices") {
      o.cpu_devices = parse_count(a, value(), 1, 64);
    } else if (a == "--soft-placement") {
      o.soft_placement = true;
    } else if (a == "--explain-placement") {
      o.explain_placement = true;
    } else if (a.starts_with("-")) {
      throw UsageError("unknown option '" + a + "'");
    } else if (o.model.empty()) {
      o.model = a;
    } else {
      throw UsageError("more than one model file given ('" + o.model + "' and '" + a + "')");
    }
  }
  if (o.model.empty()) throw UsageError("no model file given");
  return o;
}

std::string list_names(const auto& named) {
  std::string s;
  for (const auto& [name, x] : named) s += (s.empty() ? "" : ", ") + name;
  return s.empty() ? "none" : s;
}

// The feed for one --input, checked against its placeholder so that a wrong
// file is reported by name rather than as a kernel's shape error.
Tensor load_feed(const Graph& g, const std::string& name, const std::string& path) {
  const auto& ins = g.inputs();
  auto it = std::find_if(ins.begin(), ins.end(), [&](const auto& p) { return p.first == name; });
  NDF_CHECK(it != ins.end(), ValueError, "--input ", name, ": the graph has no input named '", name,
            "' (inputs: ", list_names(ins), ")");
  Tensor t = read_npy(path);
  const TensorMeta& want = g.node(it->second)->outputs.at(0);
  bool shape_ok = t.shape().size() == want.shape.size();
  for (size_t d = 0; shape_ok && d < want.shape.size(); ++d)
    shape_ok = want.shape[d] < 0 || want.shape[d] == t.shape()[d];
  NDF_CHECK(t.dtype() == want.dtype && shape_ok, ValueError, "--input ", name, ": ", path, " holds ",
            dtype_name(t.dtype()), shape_str(t.shape()), " but input '", name, "' expects ",
            dtype_name(want.dtype), shape_str(want.shape), " (-1: any size)");
  return t;
}

int run(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  Graph g = load_graph(o.model);

  std::vector<std::pair<std::string, Tensor>> feeds;
  for (const auto& [name, path] : o.inputs) {
    for (const auto& f : feeds)
      NDF_CHECK(f.first != name, ValueError, "--input ", name, " is given twice");
    feeds.emplace_back(name, load_feed(g, name, path));
  }
  std::vector<std::string> fetches;
  std::vector<std::string> paths;
  for (auto [name, path] : o.outputs) {
    if (name.empty()) {
      NDF_CHECK(g.outputs().size() == 1, ValueError, "--output ", path, ": the graph has ", g.outputs().size(),
                " outputs (", list_names(g.outputs()), "); write --output NAME=", path);
      name = g.outputs()[0].first;
    }
    const auto& outs = g.outputs();
    NDF_CHECK(std::any_of(outs.begin(), outs.end(), [&](const auto& p) { return p.first == name; }), ValueError,
              "--output ", name, ": the graph has no output named '", name, "' (outputs: ", list_names(outs), ")");
    fetches.push_back(name);
    paths.push_back(path);
  }
  bool print = o.print || fetches.empty();
  if (fetches.empty())
    for (const auto& [name, out] : g.outputs()) fetches.push_back(name);

  SessionOptions so;
  so.intra_op_threads = o.threads;
  so.soft_placement = o.soft_placement;
  if (o.cpu_devices > 0) set_num_cpu_devices(o.cpu_devices);
  Session session(g, so);
  if (o.explain_placement) {
    std::cout << session.compiled(fetches).placement_report();
    return 0;
  }
  std::vector<Tensor> results = session.run(feeds, fetches);
  if (o.bench > 0) {
    std::vector<double> ms;
    for (int i = 0; i < o.bench; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      session.run(feeds, fetches);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    double median = ms.size() % 2 ? ms[ms.size() / 2] : (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]) / 2;
    std::printf("bench: %d runs, median %.3f ms, min %.3f ms, max %.3f ms\n", o.bench, median, ms.front(),
                ms.back());
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    Tensor t = results[i];
    if (t.dtype() == DType::bf16) t = t.to(DType::f32);  // NumPy has no bf16
    write_npy(paths[i], t);
  }
  if (print)
    for (size_t i = 0; i < fetches.size(); ++i) std::cout << fetches[i] << " = " << results[i].str() << "\n";
  return 0;
}

void report(const char* what) {
  std::string msg = what;
  for (char& c : msg)  // always exactly one line, whatever a bad file quotes back
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  std::fprintf(stderr, "ndflow-run: error: %s\n", msg.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    report(e.what());
    std::fputs("run 'ndflow-run --help' for usage\n", stderr);
    return 2;
  } catch (const ndflow::InternalError& e) {
    report(e.what());
    return 1;
  } catch (const ndflow::Error& e) {
    report(e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    report("out of memory (the model or its inputs need more memory than is available)");
    return 2;
  } catch (const std::exception& e) {
    report(e.what());
    return 1;
  }
}
