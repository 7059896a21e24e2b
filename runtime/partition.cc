#include "runtime/partition.h"

#include <algorithm>
#include <map>
#include <set>

namespace ndflow {

namespace {

std::string edge_name(const Graph& g, NodeOutput e) { return str_cat(g.node(e.node)->name, ":", e.index); }

// A name for a new node that no node of `g` has.
std::string fresh_name(const Graph& g, const std::string& base) {
  if (!g.find(base)) return base;
  for (int i = 1;; ++i)
    if (std::string s = str_cat(base, "_", i); !g.find(s)) return s;
}

struct Builder {
  const Graph& src;
  const Placement& pl;
  int64_t rendezvous_id;
  std::vector<int> dev_of;                 // per source node id
  std::map<int, size_t> part_of_device;    // device -> index into parts
  std::vector<GraphPartition> parts;
  std::vector<std::map<int64_t, int64_t>> id_map;  // per part: source id -> local id
  std::vector<int64_t> step_node;                  // per part: the kStepFeed placeholder
  std::map<std::tuple<int64_t, int, int>, int64_t> recv_of;  // (src node, output, dst device) -> local recv id
  std::map<std::pair<int64_t, int>, int64_t> token_recv_of;  // (src node, dst device) -> recv id
  int64_t sends = 0, recvs = 0;

  GraphPartition& part(int device) {
    auto [it, fresh] = part_of_device.try_emplace(device, parts.size());
    if (fresh) {
      GraphPartition p;
      p.device = device;
      Node step;
      step.op = &op_def("placeholder");
      step.name = kStepFeed;
      step.attrs = step.op->complete_attrs(Attrs{{"shape", std::vector<int64_t>{}}, {"dtype", DType::i64}});
      step.outputs = {TensorMeta{{}, DType::i64, Device::cpu()}};
      step.assigned_device = pl.devices[static_cast<size_t>(device)].str();
      step_node.push_back(p.graph.add_node(std::move(step)));
      p.feeds.push_back(kStepFeed);
      parts.push_back(std::move(p));
      id_map.emplace_back();
    }
    return parts[it->second];
  }
  size_t index_of(int device) { part(device); return part_of_device[device]; }

  Attrs endpoint_attrs(int from, int to, const std::string& edge) {
    return Attrs{{"src_device", pl.devices[static_cast<size_t>(from)].str()},
                 {"dst_device", pl.devices[static_cast<size_t>(to)].str()},
                 {"edge", edge},
                 {"rendezvous", rendezvous_id}};
  }

  // Adds send(value) to partition `from` and recv to partition `to`; returns the recv id.
  int64_t transfer(int from, NodeOutput local_value, const TensorMeta& meta, int to, const std::string& edge,
                   const std::vector<int64_t>& extra_control = {}) {
    size_t fi = index_of(from), ti = index_of(to);
    GraphPartition& fp = parts[fi];
    Node s;
    s.op = &op_def("send");
    s.name = fresh_name(fp.graph, str_cat("_send/", edge, "/to/", pl.devices[static_cast<size_t>(to)].str()));
    s.inputs = {local_value, {step_node[fi], 0}};
    s.control_inputs = extra_control;
    s.attrs = s.op->complete_attrs(endpoint_attrs(from, to, edge));
    s.assigned_device = pl.devices[static_cast<size_t>(from)].str();
    fp.targets.push_back(s.name);
    fp.graph.add_node(std::move(s));
    fp.num_sends += 1;
    sends += 1;

    GraphPartition& tp = parts[ti];
    Node r;
    r.op = &op_def("recv");
    r.name = fresh_name(tp.graph, str_cat("_recv/", edge, "/from/", pl.devices[static_cast<size_t>(from)].str()));
    r.inputs = {{step_node[ti], 0}};
    Attrs a = endpoint_attrs(from, to, edge);
    a.set("dtype", meta.dtype);
    a.set("shape", std::vector<int64_t>(meta.shape.begin(), meta.shape.end()));
    r.attrs = r.op->complete_attrs(a);
    r.outputs = {TensorMeta{meta.shape, meta.dtype, Device::cpu()}};
    r.assigned_device = pl.devices[static_cast<size_t>(to)].str();
    recvs += 1;
    return tp.graph.add_node(std::move(r));
  }

  // The local edge in partition of device `to` carrying source edge `e`.
  NodeOutput data_edge(NodeOutput e, int to, const std::vector<int64_t>& extra_control = {}) {
    int from = dev_of[static_cast<size_t>(e.node)];
    if (from == to) return {id_map[index_of(to)].at(e.node), e.index};
    auto key = std::make_tuple(e.node, e.index, to);
    if (auto it = recv_of.find(key); it != recv_of.end()) return {it->second, 0};
    NodeOutput local{id_map[index_of(from)].at(e.node), e.index};
    int64_t r = transfer(from, local, src.meta(e), to, edge_name(src, e), extra_control);
    parts[index_of(to)].recvs.push_back({r, e});
    recv_of[key] = r;
    return {r, 0};
  }

  // A recv in `to` that completes after source node `c` has run.
  int64_t control_edge(int64_t c, int to) {
    int from = dev_of[static_cast<size_t>(c)];
    auto key = std::make_pair(c, to);
    if (auto it = token_recv_of.find(key); it != token_recv_of.end()) return it->second;
    size_t fi = index_of(from);
    GraphPartition& fp = parts[fi];
    Node tok;
    tok.op = &op_def("constant");
    tok.name = fresh_name(fp.graph, str_cat("_token/", src.node(c)->name));
    Tensor one = Tensor::empty({}, DType::u8);
    *one.data<uint8_t>() = 1;
    tok.attrs = tok.op->complete_attrs(Attrs{{"value", one}});
    tok.outputs = {TensorMeta{{}, DType::u8, Device::cpu()}};
    tok.control_inputs = {id_map[fi].at(c)};
    tok.assigned_device = pl.devices[static_cast<size_t>(from)].str();
    int64_t t = fp.graph.add_node(std::move(tok));
    int64_t r = transfer(from, {t, 0}, TensorMeta{{}, DType::u8, Device::cpu()}, to, "^" + src.node(c)->name);
    token_recv_of[key] = r;
    return r;
  }
};

// Nodes that write Variable `var` in place (directly, or through a view of it).
std::vector<int64_t> writers_of(const Graph& g, int64_t var) {
  std::vector<int64_t> out;
  for (const Node* n : g.nodes())
    for (int k : n->op->mutated_inputs()) {
      if (static_cast<size_t>(k) >= n->inputs.size()) continue;
      const Node* v = g.node(n->inputs[static_cast<size_t>(k)].node);
      while (v && v->op->is_view() && !v->inputs.empty()) v = g.node(v->inputs[0].node);
      if (v && v->id == var) out.push_back(n->id);
    }
  return out;
}

}  // namespace

PartitionedGraph partition(const Graph& placed, const Placement& pl, const std::vector<NodeOutput>& fetches,
                           const std::vector<int64_t>& targets, int64_t rendezvous_id) {
  Builder b{placed, pl, rendezvous_id, {}, {}, {}, {}, {}, {}, {}, 0, 0};
  b.dev_of.assign(static_cast<size_t>(placed.id_bound()), -1);
  for (auto& n : pl.nodes) b.dev_of[static_cast<size_t>(n.node)] = n.device;
  std::vector<int64_t> order = placed.topological_order();
  for (int64_t id : order)
    NDF_CHECK(b.dev_of[static_cast<size_t>(id)] >= 0, InternalError, "partition: node '", placed.node(id)->name,
              "' was not placed");

  for (int64_t id : order) {
    const Node& n = *placed.node(id);
    int d = b.dev_of[static_cast<size_t>(id)];
    Node copy;
    copy.name = n.name;
    copy.op = n.op;
    copy.attrs = n.attrs;
    copy.outputs = n.outputs;
    copy.device = n.device;
    copy.assigned_device = n.assigned_device;
    for (auto& e : n.inputs) copy.inputs.push_back(b.data_edge(e, d));
    for (int64_t c : n.control_inputs)
      copy.control_inputs.push_back(b.dev_of[static_cast<size_t>(c)] == d ? b.id_map[b.index_of(d)].at(c)
                                                                            : b.control_edge(c, d));
    size_t pi = b.index_of(d);
    int64_t local = b.parts[pi].graph.add_node(std::move(copy));
    b.id_map[pi][id] = local;
    if (n.op->name() == "placeholder") b.parts[pi].feeds.push_back(n.name);
  }
  for (int64_t t : targets) {
    size_t pi = b.index_of(b.dev_of[static_cast<size_t>(t)]);
    b.parts[pi].targets.push_back(placed.node(t)->name);
  }

  // Fetches: where they are produced, and sent to cpu:0 of every other worker in use.
  std::set<int> workers;  // every worker of the cluster, so every rank gets the results
  for (auto& d : pl.devices) workers.insert(d.worker);
  for (size_t i = 0; i < fetches.size(); ++i) {
    NodeOutput e = fetches[i];
    int d = b.dev_of[static_cast<size_t>(e.node)];
    size_t pi = b.index_of(d);
    b.parts[pi].fetches.push_back({static_cast<int>(i), str_cat(placed.node(e.node)->name, ":", e.index)});
    for (int w : workers) {
      if (w == pl.devices[static_cast<size_t>(d)].worker) continue;
      auto it = std::find(pl.devices.begin(), pl.devices.end(), DeviceName::full(w, DeviceType::CPU, 0));
      NDF_CHECK(it != pl.devices.end(), InternalError, "partition: worker ", w, " has no cpu:0 to deliver fetches to");
      int to = static_cast<int>(it - pl.devices.begin());
      // A fetched Variable is read after this step's updates of it, as on one device.
      std::vector<int64_t> after;
      const Node* v = placed.node(e.node);
      while (v->op->is_view() && !v->inputs.empty()) v = placed.node(v->inputs[0].node);
      if (v->op->name() == "variable")
        for (int64_t w_id : writers_of(placed, v->id))
          if (b.dev_of[static_cast<size_t>(w_id)] == d) after.push_back(b.id_map[pi].at(w_id));
      NodeOutput r = b.data_edge(e, to, after);
      size_t ti = b.index_of(to);
      b.parts[ti].fetches.push_back({static_cast<int>(i), str_cat(b.parts[ti].graph.node(r.node)->name, ":0")});
    }
  }
  PartitionedGraph out;
  out.num_sends = b.sends;
  out.num_recvs = b.recvs;
  out.parts = std::move(b.parts);
  std::sort(out.parts.begin(), out.parts.end(), [](auto& x, auto& y) { return x.device < y.device; });
  return out;
}

std::vector<std::vector<TensorMeta>> concrete_metas(const Graph& g,
                                                    const std::vector<std::pair<std::string, TensorMeta>>& feeds) {
  std::vector<std::vector<TensorMeta>> out(static_cast<size_t>(g.id_bound()));
  for (int64_t id : g.topological_order()) {
    const Node& n = *g.node(id);
    auto& m = out[static_cast<size_t>(id)];
    if (n.op->name() == "placeholder") {
      auto it = std::find_if(feeds.begin(), feeds.end(), [&](auto& f) { return f.first == n.name; });
      if (it != feeds.end()) {
        m = {it->second};
      } else {
        const TensorMeta& own = n.outputs[0];
        NDF_CHECK(std::none_of(own.shape.begin(), own.shape.end(), [](int64_t d) { return d < 0; }), ValueError,
                  "placeholder '", n.name, "' of shape ", shape_str(own.shape),
                  " was not fed: in a graph that spans devices every rank feeds every placeholder whose shape is "
                  "not fully known (its shape plans the transfers of the other devices)");
        m = {own};
      }
      continue;
    }
    if (n.op->is_graph_only()) {  // variable, constant
      m = n.outputs;
      continue;
    }
    std::vector<TensorMeta> in;
    for (auto& e : n.inputs) in.push_back(out[static_cast<size_t>(e.node)][static_cast<size_t>(e.index)]);
    try {
      m = n.op->run_infer(in, n.attrs);
    } catch (const Error& e) {
      fail<ShapeError>("node '", n.name, "' (", n.op->name(), "): ", e.what());
    }
  }
  return out;
}

}  // namespace ndflow
