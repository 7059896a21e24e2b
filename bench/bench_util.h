// Shared helpers for the benchmarks in bench/: timing batches, min/median,
// the SUMMARY lines tools/bench.sh collects, and a peer subprocess (PyTorch in
// Python, or the libtorch program of bench/peer) driven over a pipe so that
// ndflow and the peer run alternately (A B A B), each in its own process.
//
// Peer protocol (one line each way): the peer first prints
//   hello key=value ...            (torch=none when PyTorch is missing)
// then, for every command line it reads on stdin, prints
//   result v1 v2 ...               or   error <message>
// Any other line it prints is passed through, prefixed "[peer]".
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace ndflow_bench {

inline std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// Call first in main: line-buffered output keeps ours and a peer's stderr in
// order when tools/bench.sh pipes them, and a peer that dies must not take us
// down with SIGPIPE.
inline void init_bench_process() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  ::signal(SIGPIPE, SIG_IGN);
}

// "1,2,4" -> {1, 2, 4}, for command-line options.
inline std::vector<int> parse_int_list(const char* s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::atoi(item.c_str()));
  return out;
}

// One row of the table tools/bench.sh prints at the end.
inline void summary(const std::string& what, const std::string& config, const std::string& ndflow,
                    const std::string& peer, const std::string& ratio) {
  std::printf("SUMMARY|%s|%s|%s|%s|%s\n", what.c_str(), config.c_str(), ndflow.c_str(),
              peer.c_str(), ratio.c_str());
  std::fflush(stdout);
}

// CPU seconds used by this process so far (all threads): CPU time over wall
// time of a run tells how many cores it really kept busy.
inline double process_cpu_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Stats {
  double min = 0, median = 0;
};
inline Stats stats(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return {v.front(), med};
}

// How many calls of `fn` take about `target_s` seconds (at least 1).
template <typename F>
int64_t calibrate(F&& fn, double target_s) {
  int64_t n = 1;
  for (;;) {
    double t0 = now_s();
    for (int64_t i = 0; i < n; ++i) fn();
    double dt = now_s() - t0;
    if (dt >= 0.02 || n >= (int64_t(1) << 30))
      return std::max<int64_t>(1, static_cast<int64_t>(n * target_s / std::max(dt, 1e-9)));
    n *= 4;
  }
}

// Seconds per call of `fn`, one figure per batch of `calls` calls.
template <typename F>
std::vector<double> time_batches(F&& fn, int64_t calls, int batches) {
  std::vector<double> out;
  for (int b = 0; b < batches; ++b) {
    double t0 = now_s();
    for (int64_t i = 0; i < calls; ++i) fn();
    out.push_back((now_s() - t0) / static_cast<double>(calls));
  }
  return out;
}

inline std::string source_dir() {
  if (const char* s = std::getenv("NDFLOW_SOURCE_DIR")) return s;
#ifdef NDFLOW_BENCH_SOURCE_DIR
  return NDFLOW_BENCH_SOURCE_DIR;
#else
  return ".";
#endif
}
inline std::string venv_python() {
  if (const char* s = std::getenv("NDFLOW_BENCH_PYTHON")) return s;
  return source_dir() + "/.venv/bin/python";
}
inline bool is_executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

// A child process with its stdin and stdout connected to us.
class Peer {
 public:
  Peer() = default;
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  ~Peer() { stop(); }

  // Starts argv[0] (a path) with `env` added to (and overriding) our
  // environment, then reads its hello line. False when it could not start or
  // said nothing.
  bool start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
    int in_pipe[2], out_pipe[2];
    if (::pipe(in_pipe) != 0) return false;
    if (::pipe(out_pipe) != 0) {
      ::close(in_pipe[0]);
      ::close(in_pipe[1]);
      return false;
    }
    // The child must not inherit our ends of the pipes.
    ::fcntl(in_pipe[1], F_SETFD, FD_CLOEXEC);
    ::fcntl(out_pipe[0], F_SETFD, FD_CLOEXEC);
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) {
      std::string kv = *e;
      if (!env.count(kv.substr(0, kv.find('=')))) envs.push_back(kv);
    }
    for (auto& [k, v] : env) envs.push_back(k + "=" + v);
    std::vector<char*> cargv, cenv;
    for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (auto& e : envs) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
    int rc = posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&fa);
    ::close(in_pipe[0]);
    ::close(out_pipe[1]);
    if (rc != 0) {
      ::close(in_pipe[1]);
      ::close(out_pipe[0]);
      pid_ = -1;
      return false;
    }
    to_ = ::fdopen(in_pipe[1], "w");
    from_ = ::fdopen(out_pipe[0], "r");
    auto line = read_protocol_line();
    if (!line || line->rfind("hello", 0) != 0) {
      stop();
      return false;
    }
    std::istringstream ss(line->substr(5));
    std::string kv;
    while (ss >> kv) {
      auto eq = kv.find('=');
      if (eq != std::string::npos) hello_[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    return true;
  }

  bool running() const { return pid_ > 0; }
  // A value from the hello line ("" when absent).
  std::string hello(const std::string& key) const {
    auto it = hello_.find(key);
    return it == hello_.end() ? "" : it->second;
  }

  // Sends one command; returns the numbers of its result line, or nullopt
  // (with the peer's message in last_error()) on an error or a dead peer.
  std::optional<std::vector<double>> request(const std::string& cmd) {
    if (!running()) return std::nullopt;
    std::fprintf(to_, "%s\n", cmd.c_str());
    std::fflush(to_);
    auto line = read_protocol_line();
    if (!line) {
      error_ = "peer exited";
      stop();
      return std::nullopt;
    }
    if (line->rfind("result", 0) != 0) {
      error_ = *line;
      return std::nullopt;
    }
    std::vector<double> v;
    std::istringstream ss(line->substr(6));
    double x;
    while (ss >> x) v.push_back(x);
    return v;
  }
  const std::string& last_error() const { return error_; }

  void stop() {
    if (to_) {
      std::fprintf(to_, "quit\n");
      std::fclose(to_);
      to_ = nullptr;
    }
    if (from_) {
      std::fclose(from_);
      from_ = nullptr;
    }
    if (pid_ > 0) {
      int st = 0;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }

 private:
  std::optional<std::string> read_protocol_line() {
    char* buf = nullptr;
    size_t cap = 0;
    std::optional<std::string> out;
    while (::getline(&buf, &cap, from_) > 0) {
      std::string s(buf);
      while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
      if (s.rfind("hello", 0) == 0 || s.rfind("result", 0) == 0 || s.rfind("error", 0) == 0) {
        out = s;
        break;
      }
      std::printf("  [peer] %s\n", s.c_str());
    }
    std::free(buf);
    return out;
  }

  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::map<std::string, std::string> hello_;
  std::string error_;
};

// ndflow (in this process) and the peer (commands sent to it) alternated
// A B A B for `rounds` rounds; `samples` batches of `calls` calls per side per
// round. Every peer command gets " <calls> <samples>" appended; theirs[i]
// collects the seconds per call of peer_cmds[i]. A failing peer is dropped
// (its message in peer_error) and ndflow's figures are still gathered.
struct AB {
  std::vector<double> ours;
  double ours_wall_s = 0, ours_cpu_s = 0;  // cores ndflow kept busy = cpu / wall
  std::vector<std::vector<double>> theirs;
  std::string peer_error;
  bool peer_ok() const {
    if (theirs.empty() || !peer_error.empty()) return false;
    for (auto& v : theirs)
      if (v.empty()) return false;
    return true;
  }
};
template <typename F>
AB alternate(F&& fn, int64_t calls, int samples, int rounds, Peer* peer,
             const std::vector<std::string>& peer_cmds) {
  AB ab;
  ab.theirs.resize(peer_cmds.size());
  for (int r = 0; r < rounds; ++r) {
    double w0 = now_s(), c0 = process_cpu_s();
    for (double s : time_batches(fn, calls, samples)) ab.ours.push_back(s);
    ab.ours_wall_s += now_s() - w0;
    ab.ours_cpu_s += process_cpu_s() - c0;
    if (!peer || !peer->running() || !ab.peer_error.empty()) continue;
    for (size_t i = 0; i < peer_cmds.size(); ++i) {
      auto res = peer->request(peer_cmds[i] + fmt(" %lld %d", (long long)calls, samples));
      if (!res) {
        ab.peer_error = peer->last_error();
        break;
      }
      ab.theirs[i].insert(ab.theirs[i].end(), res->begin(), res->end());
    }
  }
  return ab;
}

// Environment for a peer process running `threads` intra-op threads.
inline std::map<std::string, std::string> peer_env(int threads) {
  std::string t = std::to_string(threads);
  return {{"PYTHONUNBUFFERED", "1"}, {"OMP_NUM_THREADS", t}, {"MKL_NUM_THREADS", t},
          {"NDFLOW_PEER_THREADS", t}};
}

// The Python peer (bench/peer_torch.py) in server mode at `threads` threads.
// Prints why when it is unavailable and returns false.
inline bool start_python_peer(Peer& p, int threads) {
  std::string py = venv_python();
  if (!is_executable(py)) {
    std::printf("peer: PyTorch not installed (tools/setup.sh --bench)\n");
    return false;
  }
  if (!p.start({py, source_dir() + "/bench/peer_torch.py", "serve"}, peer_env(threads))) {
    std::printf("peer: could not start %s bench/peer_torch.py\n", py.c_str());
    return false;
  }
  if (p.hello("torch") == "none") {
    std::printf("peer: PyTorch not installed (tools/setup.sh --bench)\n");
    p.stop();
    return false;
  }
  return true;
}

// The libtorch peer program (bench/peer/torch_dispatch.cc), built by tools/bench.sh.
inline std::string libtorch_peer_path() {
  if (const char* s = std::getenv("NDFLOW_BENCH_TORCH_PEER")) return s;
  return source_dir() + "/build/bench-peer/torch_dispatch";
}
// Starts it at `threads`; false, with a line saying why, when it is not there.
inline bool start_libtorch_peer(Peer& p, int threads) {
  std::string path = libtorch_peer_path();
  if (!is_executable(path)) {
    std::printf("peer: libtorch program %s not built (tools/bench.sh builds it)\n", path.c_str());
    return false;
  }
  if (!p.start({path}, peer_env(threads))) {
    std::printf("peer: %s did not start\n", path.c_str());
    return false;
  }
  return true;
}

// PyTorch's version and a quick 2-thread sgemm check (BENCHMARKING.md: below
// 150 GFLOP/s the peer is misconfigured and no ratio is printed).
struct PeerCheck {
  bool installed = false;
  std::string version;
  double sgemm_gflops = 0;
  bool trusted() const { return installed && sgemm_gflops >= 150.0; }
};
inline PeerCheck check_torch_peer() {
  PeerCheck c;
  Peer p;
  if (!start_python_peer(p, 2)) return c;
  c.installed = true;
  c.version = p.hello("torch");
  // NOTE: a busy neighbour on this 2-core VM can halve a 2-thread figure for
  // a while; up to 3 tries, a second apart, before calling the peer broken.
  for (int attempt = 0; attempt < 3 && c.sgemm_gflops < 150.0; ++attempt) {
    if (attempt) ::sleep(1);
    if (auto r = p.request("sgemm_check"); r && !r->empty())
      c.sgemm_gflops = std::max(c.sgemm_gflops, (*r)[0]);
  }
  std::printf("peer: PyTorch %s, quick sgemm (n=1024, 2 threads, best of 10): %.1f GFLOP/s%s\n",
              c.version.c_str(), c.sgemm_gflops,
              c.trusted() ? "" : "  -> below 150 GFLOP/s: peer misconfigured, no ratios printed");
  return c;
}

}  // namespace ndflow_bench
