// Server checkpoints (server.h ServerOptions::checkpoint_path): every table's
// value, held-back updates and optimizer state, and the clock table, written
// atomically and checked in full before a restore changes anything.
#include <filesystem>

#include "core/format.h"
#include "distributed/ps/server_internal.h"
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow::ps {

// Tensors "value/<table>", "pending/<table>/<clock>", "opt/<table>/<slot>"
// (the optimizer state: "step", "row_steps", "m", ...), "dense_clocks/<table>"
// (i64, the pending clocks with a dense push) and "workers" (i64 [W, 3]:
// clock, incarnation, last push applied), written atomically by save_tensors.
void Server::Impl::save_checkpoint() {
  NamedTensors out;
  for (const auto& [name, t] : tables) {
    out.emplace_back("value/" + name, t.value);
    for (const auto& [clock, sum] : t.pending) out.emplace_back(str_cat("pending/", name, "/", clock), sum);
    for (const auto& [slot, v] : t.opt.state()) out.emplace_back(str_cat("opt/", name, "/", slot), v);
    if (!t.dense_clocks.empty()) {
      Tensor dc = Tensor::empty({int64_t(t.dense_clocks.size())}, DType::i64);
      std::copy(t.dense_clocks.begin(), t.dense_clocks.end(), dc.data<int64_t>());
      out.emplace_back("dense_clocks/" + name, dc);
    }
  }
  Tensor ws = Tensor::empty({int64_t(workers.size()), 3}, DType::i64);
  for (size_t i = 0; i < workers.size(); ++i) {
    int64_t* row = ws.data<int64_t>() + 3 * i;
    row[0] = workers[i].clock;
    row[1] = int64_t(workers[i].incarnation);
    row[2] = int64_t(workers[i].last_seq);
  }
  out.emplace_back("workers", ws);
  const int64_t slowest = slowest_clock();
  try {
    save_tensors(opt.checkpoint_path, out, {{"ndflow.ps", "server checkpoint"}, {"slowest_clock", str_cat(slowest)}});
    stats.checkpoints++;
  } catch (const Error& e) {
    log(str_cat(where(), " could not write its checkpoint ", opt.checkpoint_path, ": ", e.what()));
  }
  checkpointed_at = slowest;  // also after a failure: retried one interval later, not at every clock
}

// Checks the whole file against the tables before it changes anything.
void Server::Impl::restore_checkpoint() {
  const std::string& path = opt.checkpoint_path;
  Checkpoint ck = load_tensors(path, {.mmap = false});
  const std::string fix = " (delete it to start from the initial values)";
  NDF_CHECK(ck.metadata.count("ndflow.ps"), ValueError, "[ps.server] ", path, " is not a server checkpoint", fix);
  auto check_fits = [&](const std::string& key, const Tensor& v, const std::string& name) {
    const Tensor& mine = tables.at(name).value;
    NDF_CHECK(v.shape() == mine.shape() && v.dtype() == DType::f32, ValueError, "[ps.server] checkpoint ", path,
              ": '", key, "' has shape ", v.shape(), ", table '", name, "' of this server ", mine.shape(), fix);
  };
  std::map<std::string, std::map<int64_t, Tensor>> pending;
  std::map<std::string, std::vector<std::pair<std::string, Tensor>>> opt_state;
  std::map<std::string, Tensor> dense_clocks;
  Tensor ws;
  for (auto& [key, v] : ck.tensors) {
    const size_t last = key.rfind('/');
    if (key == "workers") {
      ws = v;
    } else if (key.starts_with("opt/") && last > 4 && tables.count(key.substr(4, last - 4))) {
      const std::string name = key.substr(4, last - 4), slot = key.substr(last + 1);
      const Tensor mine = tables.at(name).opt.find(slot);
      NDF_CHECK(mine.defined() && mine.shape() == v.shape() && mine.dtype() == v.dtype(), ValueError,
                "[ps.server] checkpoint ", path, ": optimizer state '", key, "' (shape ", v.shape(),
                ") does not fit table '", name, "' and its update rule on this server", fix);
      opt_state[name].emplace_back(slot, v);
    } else if (key.starts_with("dense_clocks/") && tables.count(key.substr(13))) {
      NDF_CHECK(v.dtype() == DType::i64 && v.rank() == 1, ValueError, "[ps.server] checkpoint ", path, ": bad '",
                key, "'", fix);
      dense_clocks[key.substr(13)] = v;
    } else if (key.starts_with("value/") && tables.count(key.substr(6))) {
      check_fits(key, v, key.substr(6));
    } else {
      const size_t slash = key.rfind('/');
      const std::string name = key.starts_with("pending/") && slash > 8 ? key.substr(8, slash - 8) : "";
      NDF_CHECK(tables.count(name), ValueError, "[ps.server] checkpoint ", path, " has '", key,
                "', which is no table of this server", fix);
      check_fits(key, v, name);
      const std::string clock = key.substr(slash + 1);
      NDF_CHECK(!clock.empty() && clock.size() < 19 && clock.find_first_not_of("0123456789") == std::string::npos,
                ValueError, "[ps.server] checkpoint ", path, ": bad clock in '", key, "'", fix);
      pending[name][std::stoll(clock)] = v;
    }
  }
  for (const auto& [name, t] : tables)
    NDF_CHECK(ck.find("value/" + name).defined(), ValueError, "[ps.server] checkpoint ", path, " has no table '",
              name, "'", fix);
  for (const auto& [name, t] : tables)
    for (const auto& [slot, v] : t.opt.state())
      NDF_CHECK(ck.find(str_cat("opt/", name, "/", slot)).defined(), ValueError, "[ps.server] checkpoint ", path,
                " has no optimizer state 'opt/", name, "/", slot, "' for table '", name,
                "' (written with another update rule?)", fix);
  NDF_CHECK(ws.defined() && ws.dtype() == DType::i64 && ws.shape() == Shape({int64_t(workers.size()), 3}),
            ValueError, "[ps.server] checkpoint ", path, " has no clock table for ", workers.size(), " workers", fix);

  EagerScope eager;
  NoGradGuard no_grad;
  for (auto& [name, t] : tables) {
    writable(t).copy_(ck.find("value/" + name));
    t.pending.clear();
    for (auto& [clock, sum] : pending[name]) t.pending[clock] = sum.clone();
    for (auto& [slot, v] : opt_state[name]) t.opt.find(slot).copy_(v);
    t.dense_clocks.clear();
    if (dense_clocks.count(name)) {
      const Tensor& dc = dense_clocks[name];
      t.dense_clocks.insert(dc.data<int64_t>(), dc.data<int64_t>() + dc.numel());
    }
  }
  for (size_t i = 0; i < workers.size(); ++i) {
    const int64_t* row = ws.data<int64_t>() + 3 * i;
    workers[i] = WorkerState{.clock = row[0], .incarnation = uint64_t(row[1]), .last_seq = uint64_t(row[2])};
  }
  checkpointed_at = slowest_clock();
  log(str_cat("[ps.server] restored ", tables.size(), " table(s) and the clock table from ", path,
              " (slowest clock ", checkpointed_at, ")"));
}

}  // namespace ndflow::ps
