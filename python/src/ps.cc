// ndflow._C._ps: the parameter server and its client (distributed/ps/), for
// ndflow.distributed.ps. Every call that waits on the network releases the GIL.
#include <memory>
#include <tuple>
#include <utility>

#include "bindings.h"
#include "distributed/ps/client.h"
#include "distributed/ps/server.h"
#include "distributed/ps/worker.h"

namespace ndflow::python {

namespace {

using nogil = py::call_guard<py::gil_scoped_release>;

// "bsp", "asp", "ssp:3" (or "ssp3").
ps::Sync parse_sync(const std::string& s) {
  if (s == "bsp") return ps::Sync::bsp();
  if (s == "asp") return ps::Sync::asp();
  if (s.starts_with("ssp")) {
    std::string n = s.substr(s.size() > 3 && s[3] == ':' ? 4 : 3);
    bool ok = !n.empty() && n.size() < 6 && n.find_first_not_of("0123456789") == std::string::npos;
    if (ok) return ps::Sync::ssp(std::stoll(n));
  }
  throw py::value_error("consistency '" + s + "' is not one of bsp, asp, ssp:N (N >= 0 clocks of staleness)");
}

ps::UpdateRule parse_rule(const std::string& r) {
  if (r == "accumulate") return ps::UpdateRule::accumulate;
  if (r == "sgd") return ps::UpdateRule::sgd;
  if (r == "momentum") return ps::UpdateRule::momentum;
  if (r == "adagrad") return ps::UpdateRule::adagrad;
  if (r == "rmsprop") return ps::UpdateRule::rmsprop;
  if (r == "adam") return ps::UpdateRule::adam;
  throw py::value_error("update rule '" + r + "' is not one of accumulate (table += pushed), sgd (table -= lr * pushed), "
                        "momentum, adagrad, rmsprop, adam (server-side optimizers; pushes are gradients)");
}

// {"momentum": 0.9, "betas": (0.9, 0.999), ...}: torch.optim's argument names.
ps::OptimizerHyper parse_hyper(const py::dict& d) {
  ps::OptimizerHyper h;
  for (auto [k, v] : d) {
    const std::string key = py::str(k);
    if (key == "momentum") h.momentum = h.rmsprop_momentum = v.cast<double>();
    else if (key == "dampening") h.dampening = v.cast<double>();
    else if (key == "nesterov") h.nesterov = v.cast<bool>();
    else if (key == "alpha") h.alpha = v.cast<double>();
    else if (key == "centered") h.centered = v.cast<bool>();
    else if (key == "lr_decay") h.lr_decay = v.cast<double>();
    else if (key == "initial_accumulator_value") h.initial_accumulator_value = v.cast<double>();
    else if (key == "betas") std::tie(h.beta1, h.beta2) = v.cast<std::pair<double, double>>();
    else if (key == "amsgrad") h.amsgrad = v.cast<bool>();
    else if (key == "decoupled_weight_decay") h.decoupled_weight_decay = v.cast<bool>();
    else if (key == "eps") h.eps = v.cast<double>();
    else if (key == "weight_decay") h.weight_decay = v.cast<double>();
    else
      throw py::value_error("unknown optimizer hyperparameter '" + key + "' (momentum, dampening, nesterov, alpha, "
                            "centered, lr_decay, initial_accumulator_value, betas, amsgrad, decoupled_weight_decay, eps, weight_decay)");
  }
  return h;
}

}  // namespace

void bind_ps(py::module_& root) {
  py::module_ m = root.def_submodule("_ps", "parameter server and client (use ndflow.distributed.ps)");

  py::class_<ps::Handle>(m, "Handle")
      .def("wait", &ps::Handle::wait, nogil(), "the pulled tensor (None for a push), once the reply is in")
      .def("ready", &ps::Handle::ready)
      .def_property_readonly("slowest_clock", &ps::Handle::slowest_clock);

  py::class_<ps::Client>(m, "Client")
      .def(py::init([](const std::string& address, const std::string& secret, uint32_t worker, uint64_t incarnation,
                       double timeout_s) {
             ps::ClientOptions o;
             o.address = address;
             o.secret = secret;
             o.worker = worker;
             o.incarnation = incarnation;
             o.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
             py::gil_scoped_release release;
             return std::make_unique<ps::Client>(o);
           }),
           py::arg("address"), py::arg("secret"), py::arg("worker"), py::arg("incarnation") = 1,
           py::arg("timeout") = 10.0)
      .def("push", &ps::Client::push, py::arg("table"), py::arg("value"), nogil())
      .def("push_rows", &ps::Client::push_rows, py::arg("table"), py::arg("ids"), py::arg("rows"), nogil())
      .def("pull", &ps::Client::pull, py::arg("table"), nogil())
      .def("pull_rows", &ps::Client::pull_rows, py::arg("table"), py::arg("ids"), nogil())
      .def("clock", &ps::Client::clock, nogil())
      .def("barrier", [](ps::Client& c) { c.barrier().wait(); }, nogil(),
           "waits until every live worker's clock reaches this one's")
      .def_property_readonly("rehandshakes", &ps::Client::rehandshakes)
      .def("ping", &ps::Client::ping, nogil(), "a heartbeat; returns the server's slowest live clock")
      .def_property_readonly("current_clock", &ps::Client::current_clock)
      .def_property_readonly("address", &ps::Client::address);

  py::class_<ps::Pending>(m, "Pending")
      .def("wait", &ps::Pending::wait, nogil(), "the pulled tensor (None for a push), once every server answered")
      .def("ready", &ps::Pending::ready)
      .def_property_readonly("slowest_clock", &ps::Pending::slowest_clock);

  py::class_<ps::LayoutPlanner>(m, "LayoutPlanner")
      .def(py::init<uint32_t, int64_t>(), py::arg("num_servers"), py::arg("split_bytes"))
      .def("place", [](ps::LayoutPlanner& p, const std::string& name, const Shape& shape) {
             std::vector<std::tuple<uint32_t, int64_t, int64_t>> shards;
             for (const ps::Shard& s : p.place(name, shape).shards) shards.emplace_back(s.server, s.begin, s.end);
             return shards;
           },
           py::arg("name"), py::arg("shape"), "[(server, first row, end row)] of the table's shards")
      .def_property_readonly("bytes_per_server", &ps::LayoutPlanner::bytes_per_server);

  py::class_<ps::Worker>(m, "Worker")
      .def(py::init([](const std::vector<std::string>& servers, const std::string& secret, uint32_t worker,
                       uint64_t incarnation, double timeout_s, bool cache, int64_t cache_rows) {
             ps::WorkerOptions o{.servers = servers, .secret = secret, .worker = worker, .incarnation = incarnation,
                                 .timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)),
                                 .cache = cache, .cache_rows = cache_rows};
             py::gil_scoped_release release;
             return std::make_unique<ps::Worker>(o);
           }),
           py::arg("servers"), py::arg("secret"), py::arg("worker"), py::arg("incarnation") = 1,
           py::arg("timeout") = 10.0, py::arg("cache") = true, py::arg("cache_rows") = int64_t(1) << 20)
      .def("add_table", [](ps::Worker& w, const std::string& name, const Shape& shape,
                           const std::vector<std::tuple<uint32_t, int64_t, int64_t>>& shards, const std::string& sync,
                           const std::string& rule) {
             ps::WorkerTable t{.layout = {name, shape, {}}, .sync = parse_sync(sync), .rule = parse_rule(rule)};
             for (const auto& [server, begin, end] : shards) t.layout.shards.push_back({server, begin, end});
             w.add_table(std::move(t));
           },
           py::arg("name"), py::arg("shape"), py::arg("shards"), py::arg("sync") = "bsp", py::arg("rule") = "accumulate")
      .def("push", &ps::Worker::push, py::arg("table"), py::arg("value"), nogil())
      .def("push_rows", &ps::Worker::push_rows, py::arg("table"), py::arg("ids"), py::arg("rows"), nogil())
      .def("pull", &ps::Worker::pull, py::arg("table"), nogil())
      .def("pull_rows", &ps::Worker::pull_rows, py::arg("table"), py::arg("ids"), nogil())
      .def("set_lr", &ps::Worker::set_lr, py::arg("table"), py::arg("lr"), nogil())
      .def("clock", &ps::Worker::clock, nogil())
      .def("barrier", &ps::Worker::barrier, nogil())
      .def_property_readonly("current_clock", &ps::Worker::current_clock)
      .def_property_readonly("reconnects", &ps::Worker::reconnects)
      .def("cache_stats", [](const ps::Worker& w) {
        const ps::CacheStats c = w.cache_stats();
        py::dict d;
        d["hits"] = c.hits;
        d["misses"] = c.misses;
        d["row_hits"] = c.row_hits;
        d["row_misses"] = c.row_misses;
        d["staleness"] = std::vector<uint64_t>(c.staleness.begin(), c.staleness.end());
        return d;
      });

  py::class_<ps::Server>(m, "Server")
      .def(py::init([](const std::string& secret, uint32_t num_workers, const std::string& address,
                       double heartbeat_timeout_s, const std::string& checkpoint_path, int64_t checkpoint_every,
                       bool restore) {
             ps::ServerOptions o;
             o.secret = secret;
             o.num_workers = num_workers;
             o.address = address;
             o.heartbeat_timeout = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_timeout_s * 1000));
             o.checkpoint_path = checkpoint_path;
             o.checkpoint_every = checkpoint_every;
             o.restore = restore;
             return std::make_unique<ps::Server>(o);
           }),
           py::arg("secret"), py::arg("num_workers"), py::arg("address") = "tcp://127.0.0.1:0",
           py::arg("heartbeat_timeout") = 30.0, py::arg("checkpoint_path") = "", py::arg("checkpoint_every") = 0,
           py::arg("restore") = false)
      .def("add_table", [](ps::Server& s, const std::string& name, const Tensor& initial, const std::string& rule,
                           double lr, const std::string& sync, const py::dict& hyper) {
             ps::UpdateRule r = parse_rule(rule);
             ps::OptimizerHyper h = parse_hyper(hyper);
             // rmsprop's momentum defaults to 0 (torch.optim.RMSprop), SGD's to 0.9 here.
             if (r == ps::UpdateRule::rmsprop && !hyper.contains("momentum")) h.rmsprop_momentum = 0;
             s.add_table({name, initial, r, lr, parse_sync(sync), h});
           },
           py::arg("name"), py::arg("initial"), py::arg("rule") = "accumulate", py::arg("lr") = 0.01,
           py::arg("sync") = "bsp", py::arg("hyper") = py::dict())
      .def("start", &ps::Server::start, nogil())
      .def("stop", &ps::Server::stop, nogil())
      .def_property_readonly("running", &ps::Server::running)
      .def_property_readonly("endpoint", &ps::Server::endpoint)
      .def("value", &ps::Server::value, py::arg("table"))
      .def("stats", [](const ps::Server& s) {
        const ps::ServerStats& st = s.stats();
        py::dict d;
        d["rejected"] = st.rejected.load();
        d["refused"] = st.refused.load();
        d["pushes_applied"] = st.pushes_applied.load();
        d["replays_ignored"] = st.replays_ignored.load();
        d["pulls_delayed"] = st.pulls_delayed.load();
        d["workers_dead"] = st.workers_dead.load();
        d["rejoins"] = st.rejoins.load();
        d["checkpoints"] = st.checkpoints.load();
        py::list hist, wait_ms;
        for (const auto& n : st.staleness) hist.append(n.load());
        for (uint32_t i = 0; i < st.num_workers; ++i) wait_ms.append(double(st.pull_wait_us[i].load()) / 1000.0);
        d["staleness"] = hist;  // pulls answered per staleness 0..15, [16]: 16 or more
        d["pull_wait_ms"] = wait_ms;  // per worker
        return d;
      });
}

}  // namespace ndflow::python
