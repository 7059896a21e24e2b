#include "runtime/placer.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

namespace ndflow {

namespace {

struct UnionFind {
  std::vector<int64_t> parent;
  explicit UnionFind(int64_t n) : parent(static_cast<size_t>(n)) { std::iota(parent.begin(), parent.end(), 0); }
  int64_t find(int64_t x) {
    while (parent[static_cast<size_t>(x)] != x) x = parent[static_cast<size_t>(x)] = parent[static_cast<size_t>(parent[static_cast<size_t>(x)])];
    return x;
  }
  void unite(int64_t a, int64_t b) {
    a = find(a), b = find(b);
    if (a != b) parent[static_cast<size_t>(std::max(a, b))] = std::min(a, b);  // the lower id is the root
  }
};

bool needs_kernel(const Node& n) { return !n.op->is_graph_only() && !n.op->is_view(); }

std::string node_str(const Node& n) { return str_cat("'", n.name, "' (", n.op->name(), ")"); }

std::string list_devices(const std::vector<DeviceName>& ds) {
  std::string s;
  for (auto& d : ds) s += (s.empty() ? "" : ", ") + d.str();
  return s;
}

std::string us(double t) {
  std::ostringstream o;
  o.precision(t < 10 ? 2 : 0);
  o << std::fixed << t << " µs";
  return o.str();
}

double numel_est(const Shape& s, int64_t unknown) {
  double n = 1;
  for (int64_t d : s) n *= static_cast<double>(d < 0 ? unknown : d);
  return n;
}

// Floating-point work of a node, roughly: what makes one op heavy.
double work_of(const Graph& g, const Node& n, int64_t unknown) {
  if (!needs_kernel(n) || n.op->name() == "send" || n.op->name() == "recv") return 0;
  double out = 0, in = 0;
  for (auto& m : n.outputs) out += numel_est(m.shape, unknown);
  for (auto& e : n.inputs) in = std::max(in, numel_est(g.meta(e).shape, unknown));
  const std::string& op = n.op->name();
  if ((op == "matmul" || op.starts_with("fused_linear")) && !n.inputs.empty()) {
    const Shape& a = g.meta(n.inputs[0]).shape;
    double k = a.empty() ? 1 : static_cast<double>(a.back() < 0 ? unknown : a.back());
    return 2 * out * k;
  }
  if (op.starts_with("conv2d") && n.inputs.size() >= 2) {
    const Shape& w = g.meta(n.inputs[1]).shape;  // [Cout, Cin/groups, kh, kw]
    double per = w.size() == 4 ? numel_est(w, unknown) / static_cast<double>(std::max<int64_t>(w[0], 1)) : 1;
    return 2 * std::max(out, in) * per;
  }
  return std::max(out, in);
}

struct Group {
  std::vector<int64_t> members;  // in topological order
  DeviceName request;
  std::map<std::string, int64_t> request_source;  // which member asked for worker/type/index
  int64_t variable = -1;
  double work = 0;
};

// Merges `req` (asked by node `by`) into the group's request; a conflict is an error.
void merge_request(const Graph& g, Group& grp, const DeviceName& req, int64_t by) {
  auto conflict = [&](const char* part) {
    const Node& other = *g.node(grp.request_source[part]);
    const Node& me = *g.node(by);
    std::string why = grp.variable >= 0 ? str_cat(" (both read or update variable '", g.node(grp.variable)->name, "')") : "";
    fail<ValueError>("placement: node ", node_str(me), " requests '", me.device, "' but must be colocated with node ",
                     node_str(other), ", which requests '", other.device, "'", why,
                     "; request one device for a variable and the ops that use it");
  };
  if (req.worker >= 0) {
    if (grp.request.worker >= 0 && grp.request.worker != req.worker) conflict("worker");
    if (grp.request.worker < 0) grp.request_source["worker"] = by;
    grp.request.worker = req.worker;
  }
  if (req.has_type) {
    if (grp.request.has_type && grp.request.type != req.type) conflict("type");
    if (!grp.request.has_type) grp.request_source["type"] = by;
    grp.request.has_type = true;
    grp.request.type = req.type;
  }
  if (req.index >= 0) {
    if (grp.request.index >= 0 && grp.request.index != req.index) conflict("index");
    if (grp.request.index < 0) grp.request_source["index"] = by;
    grp.request.index = req.index;
  }
}

}  // namespace

int64_t estimated_bytes(const TensorMeta& m, int64_t unknown_dim) {
  return static_cast<int64_t>(numel_est(m.shape, unknown_dim)) * static_cast<int64_t>(dtype_size(m.dtype));
}

int Placement::device_of(int64_t node) const {
  for (auto& n : nodes)
    if (n.node == node) return n.device;
  return -1;
}

std::vector<int> Placement::used_devices() const {
  std::set<int> s;
  for (auto& n : nodes) s.insert(n.device);
  return {s.begin(), s.end()};
}

std::string Placement::report(const Graph& g) const {
  std::ostringstream o;
  o << "placement of " << nodes.size() << " nodes on " << used_devices().size() << " of " << devices.size()
    << " devices\n";
  for (auto& n : nodes) {
    const Node& node = *g.node(n.node);
    o << "  " << node.name << " (" << node.op->name() << ") -> " << devices[static_cast<size_t>(n.device)].str()
      << ": " << n.reason << "\n";
  }
  if (transfers.empty()) {
    o << "no tensor crosses a device boundary\n";
  } else {
    o << "crossing device boundaries per step (-1 dims counted as " << unknown_dim << "):\n";
    for (auto& t : transfers)
      o << "  " << devices[static_cast<size_t>(t.src)].str() << " -> " << devices[static_cast<size_t>(t.dst)].str()
        << ": " << t.tensors << " tensors, " << t.bytes << " bytes, " << t.controls << " control edges\n";
  }
  return o.str();
}

Placement place(Graph& g, const PlacerOptions& opt) {
  Placement p;
  p.unknown_dim = opt.unknown_dim;
  p.devices = opt.devices.empty() ? std::vector<DeviceName>{} : opt.devices;
  if (p.devices.empty())
    for (auto& d : cluster_devices(1)) p.devices.push_back(d);
  for (auto& d : p.devices)
    NDF_CHECK(d.is_full(), ValueError, "placement: device '", d.str(), "' is not a full device name");

  std::vector<int64_t> order = g.topological_order();
  const auto n_ids = g.id_bound();
  std::vector<std::vector<int64_t>> data_consumers(static_cast<size_t>(n_ids));
  for (int64_t id : order)
    for (auto& e : g.node(id)->inputs) data_consumers[static_cast<size_t>(e.node)].push_back(id);

  // ---- colocation groups: a Variable with everything reading or updating it
  // Only Variables the graph updates: one that is only read (a learning rate
  // shared by every update) is as good as a constant and travels like one.
  auto variable_behind = [&](NodeOutput e) -> int64_t {
    for (const Node* v = g.node(e.node); v; v = v->inputs.empty() ? nullptr : g.node(v->inputs[0].node)) {
      if (v->op->name() == "variable") return v->id;
      if (!v->op->is_view()) return -1;
    }
    return -1;
  };
  std::set<int64_t> updated;
  for (int64_t id : order) {
    const Node& n = *g.node(id);
    for (int k : n.op->mutated_inputs())
      if (static_cast<size_t>(k) < n.inputs.size())
        if (int64_t v = variable_behind(n.inputs[static_cast<size_t>(k)]); v >= 0) updated.insert(v);
  }
  UnionFind uf(n_ids);
  for (int64_t id : order) {
    if (!updated.count(id)) continue;
    std::vector<int64_t> stack{id};
    while (!stack.empty()) {
      int64_t v = stack.back();
      stack.pop_back();
      for (int64_t c : data_consumers[static_cast<size_t>(v)]) {
        if (uf.find(c) == uf.find(id) && c != id) continue;
        uf.unite(id, c);
        if (g.node(c)->op->is_view()) stack.push_back(c);
      }
    }
  }
  std::map<int64_t, Group> groups;
  std::vector<int> named_workers;
  for (int64_t id : order) {
    const Node& n = *g.node(id);
    Group& grp = groups[uf.find(id)];
    grp.members.push_back(id);
    if (n.op->name() == "variable" && grp.variable < 0) grp.variable = id;
    grp.work += work_of(g, n, opt.unknown_dim);
    if (!n.device.empty()) {
      DeviceName req;
      try {
        req = DeviceName::parse(n.device);
      } catch (const ValueError& e) {
        fail<ValueError>("placement: node ", node_str(n), ": ", e.what());
      }
      if (req.worker >= 0) named_workers.push_back(req.worker);
      merge_request(g, grp, req, id);
    }
  }
  std::set<int> workers{opt.default_worker};
  workers.insert(named_workers.begin(), named_workers.end());

  std::vector<int> dev_of(static_cast<size_t>(n_ids), -1);
  std::vector<double> finish(static_cast<size_t>(n_ids), 0), avail(p.devices.size(), 0);
  std::vector<std::string> reason(static_cast<size_t>(n_ids));
  std::vector<int64_t> deferred;  // constants, read-only Variables: placed with their first consumer

  for (int64_t id : order) {
    if (dev_of[static_cast<size_t>(id)] >= 0) continue;
    int64_t root = uf.find(id);
    Group& grp = groups[root];
    const Node& first = *g.node(id);
    bool value_only = first.op->name() == "constant" || first.op->name() == "variable";  // not updated here
    if (grp.members.size() == 1 && value_only && grp.request.empty() && !data_consumers[static_cast<size_t>(id)].empty()) {
      deferred.push_back(id);
      continue;
    }
    // Candidates: the request (worker defaulted), then kernel availability.
    DeviceName req = grp.request;
    if (req.worker < 0 && !req.empty()) req.worker = opt.default_worker;
    auto has_kernels = [&](const DeviceName& d, int64_t* missing) {
      for (int64_t m : grp.members) {
        const Node& n = *g.node(m);
        if (needs_kernel(n) && !n.op->kernel(d.type)) {
          *missing = m;
          return false;
        }
      }
      return true;
    };
    std::vector<int> cand;
    int64_t missing = -1;
    bool matched_any = false;
    for (size_t d = 0; d < p.devices.size(); ++d) {
      const DeviceName& dev = p.devices[d];
      bool ok = req.empty() ? workers.count(dev.worker) > 0 : req.matches(dev);
      if (!ok) continue;
      matched_any = true;
      if (has_kernels(dev, &missing)) cand.push_back(static_cast<int>(d));
    }
    std::string why_fallback;
    if (cand.empty() && opt.soft_placement) {
      // Another device of the requested worker, else of the default worker.
      int worker = req.worker;
      if (std::none_of(p.devices.begin(), p.devices.end(), [&](const DeviceName& d) { return d.worker == worker; }))
        worker = opt.default_worker;
      for (size_t d = 0; d < p.devices.size(); ++d)
        if (p.devices[d].worker == worker && has_kernels(p.devices[d], &missing)) cand.push_back(static_cast<int>(d));
      why_fallback = matched_any ? str_cat("soft placement: '", req.str(), "' has no kernel for op '",
                                           g.node(missing)->op->name(), "'; ")
                                 : str_cat("soft placement: no device matches '", req.str(), "'; ");
    }
    const Node& asker = *g.node(grp.request_source.empty() ? id : grp.request_source.begin()->second);
    if (cand.empty()) {
      if (!matched_any)
        fail<ValueError>("placement: node ", node_str(asker), " requests '", asker.device,
                         "', but no device matches it; devices considered: ", list_devices(p.devices),
                         " (", num_cpu_devices(), " CPU device(s) per worker: see set_num_cpu_devices or "
                         "NDFLOW_NUM_CPU_DEVICES; workers come from mpirun -np)");
      const Node& m = *g.node(missing);
      fail<ValueError>("placement: node ", node_str(m), " has no kernel on the devices its group may use (",
                       req.empty() ? std::string("any") : req.str(), grp.members.size() > 1 ? ", colocated with '" +
                       asker.name + "'" : "", "); devices considered: ", list_devices(p.devices),
                       opt.soft_placement ? "" : "; enable soft placement to fall back to a device that has one");
    }

    // Earliest estimated finish over the candidates.
    auto estimate = [&](int d, double* in_bytes_here) {
      const DeviceName& dev = p.devices[static_cast<size_t>(d)];
      double ready = 0;
      *in_bytes_here = 0;
      for (int64_t m : grp.members)
        for (auto& e : g.node(m)->inputs) {
          int src = dev_of[static_cast<size_t>(e.node)];
          if (src < 0) continue;  // in this group, or not placed yet
          double t = finish[static_cast<size_t>(e.node)];
          double bytes = static_cast<double>(estimated_bytes(g.meta(e), opt.unknown_dim));
          if (src != d) {
            bool local = p.devices[static_cast<size_t>(src)].worker == dev.worker;
            t += local ? opt.local_latency_us + bytes / opt.local_bytes_per_us
                       : opt.remote_latency_us + bytes / opt.remote_bytes_per_us;
          } else {
            *in_bytes_here += bytes;
          }
          ready = std::max(ready, t);
        }
      double start = grp.work > 0 ? std::max(ready, avail[static_cast<size_t>(d)]) : ready;
      return start + grp.work / opt.flops_per_us;
    };
    int best = cand[0];
    double best_t = 0, best_local = 0, second_t = -1;
    int second = -1;
    for (size_t i = 0; i < cand.size(); ++i) {
      double local_bytes = 0;
      double t = estimate(cand[i], &local_bytes);
      bool better = i == 0 || t < best_t - 1e-9 ||
                    (t <= best_t + 1e-9 && local_bytes > best_local);  // ties: keep data where it is
      if (better) {
        if (i > 0) second = best, second_t = best_t;
        best = cand[i], best_t = t, best_local = local_bytes;
      } else if (second < 0 || t < second_t) {
        second = cand[i], second_t = t;
      }
    }
    std::string why;
    if (cand.size() == 1) {
      why = grp.request.empty() ? "the only device with kernels for its ops" : str_cat("requested '", asker.device, "'");
      if (!grp.request.empty() && asker.id != id) why += str_cat(" by '", asker.name, "'");
    } else {
      why = str_cat("earliest estimated finish (", us(best_t), "; next ", p.devices[static_cast<size_t>(second)].str(),
                    " at ", us(second_t), ")");
      if (!grp.request.empty()) why = str_cat("requested '", asker.device, "', ", why);
    }
    why = why_fallback + why;
    double work_end = best_t;
    if (grp.work > 0) avail[static_cast<size_t>(best)] = work_end;
    for (int64_t m : grp.members) {
      dev_of[static_cast<size_t>(m)] = best;
      finish[static_cast<size_t>(m)] = work_end;
      reason[static_cast<size_t>(m)] =
          (m == grp.variable || grp.variable < 0 || grp.members.size() == 1)
              ? why
              : str_cat("colocated with variable '", g.node(grp.variable)->name, "': ", why);
    }
  }
  std::vector<size_t> position(static_cast<size_t>(n_ids), 0);
  for (size_t i = 0; i < order.size(); ++i) position[static_cast<size_t>(order[i])] = i;
  for (int64_t id : deferred) {
    int64_t first = -1;
    for (int64_t c : data_consumers[static_cast<size_t>(id)])
      if (first < 0 || position[static_cast<size_t>(c)] < position[static_cast<size_t>(first)]) first = c;
    dev_of[static_cast<size_t>(id)] = dev_of[static_cast<size_t>(first)];
    reason[static_cast<size_t>(id)] = str_cat(g.node(id)->op->name(), " (not updated here): placed with its consumer '",
                                              g.node(first)->name, "'");
  }

  // ---- record, and what crosses each boundary
  std::map<std::pair<int, int>, Placement::Transfer> cross;
  std::set<std::tuple<int64_t, int, int>> sent;  // (node, output, destination): a tensor travels once
  std::set<std::pair<int64_t, int>> sent_control;
  for (int64_t id : order) {
    Node& n = *g.mutable_node(id);
    int d = dev_of[static_cast<size_t>(id)];
    n.assigned_device = p.devices[static_cast<size_t>(d)].str();
    p.nodes.push_back({id, d, reason[static_cast<size_t>(id)]});
    for (auto& e : n.inputs) {
      int s = dev_of[static_cast<size_t>(e.node)];
      if (s == d || !sent.insert({e.node, e.index, d}).second) continue;
      auto& t = cross[{s, d}];
      t.src = s, t.dst = d;
      t.tensors += 1;
      t.bytes += estimated_bytes(g.meta(e), opt.unknown_dim);
    }
    for (int64_t c : n.control_inputs) {
      int s = dev_of[static_cast<size_t>(c)];
      if (s == d || !sent_control.insert({c, d}).second) continue;
      auto& t = cross[{s, d}];
      t.src = s, t.dst = d;
      t.controls += 1;
    }
  }
  for (auto& [k, t] : cross) p.transfers.push_back(t);
  return p;
}

}  // namespace ndflow
