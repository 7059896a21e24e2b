// Reading the graph part of an .ndf header: nodes (names, ops, attributes
// checked against the OpDef schema, devices), edges, cycles, shape/dtype
// inference in dataflow order, and the named graph inputs and outputs.
// Output metadata is never read from the file: it is inferred, so a file
// cannot claim shapes its ops would not produce.
#include <climits>
#include <cmath>
#include <unordered_map>

#include "core/format_internal.h"

namespace ndflow::ndf {

namespace {

// Resolves tensor attributes against the table and enforces that a
// Variable's bytes belong to that Variable alone.
class TensorRefs {
 public:
  explicit TensorRefs(const NamedTensors& table) : table_(table), uses_(table.size(), 0), owner_(table.size()) {
    for (size_t i = 0; i < table.size(); ++i) index_.emplace(table[i].first, i);
  }
  Tensor use(const Fields& f, const std::string& attr, const std::string& name, bool variable) {
    auto it = index_.find(name);
    if (it == index_.end()) f.fail("attribute '", attr, "' refers to no tensor named '", name, "' in the table");
    size_t i = it->second;
    if (variable && uses_[i] > 0)
      f.fail("attribute '", attr, "': tensor '", name, "' is this variable's value but is already used by "
             "another node; a variable's bytes may not be shared");
    if (!variable && !owner_[i].empty())
      f.fail("attribute '", attr, "': tensor '", name, "' is the value of the variable at ", owner_[i],
             " and may not be shared with another node");
    if (variable) owner_[i] = f.where();
    ++uses_[i];
    return table_[i].second;
  }

 private:
  const NamedTensors& table_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<int> uses_;
  std::vector<std::string> owner_;  // where the variable that owns each tensor sits
};

double decode_float(const Fields& f, const std::string& attr, const Json& v) {
  if (v.is_number()) {
    double d = v.get<double>();
    if (std::isfinite(d)) return d;
  } else if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "nan") return std::nan("");
    if (s == "inf") return HUGE_VAL;
    if (s == "-inf") return -HUGE_VAL;
  }
  f.fail("attribute '", attr, "' needs a finite number or \"nan\", \"inf\", \"-inf\", got ", brief(v));
}

int64_t decode_int(const Fields& f, const std::string& attr, const Json& v) {
  auto i = as_int64(v);
  if (!i) f.fail("attribute '", attr, "' must be an integer in the int64 range, got ", brief(v));
  return *i;
}

AttrValue decode_attr(const Fields& node, const OpDef& op, const std::string& key, const Json& j,
                      TensorRefs& tensors) {
  const OpDef::AttrSpec* spec = nullptr;
  for (const auto& s : op.attr_specs())
    if (s.name == key) spec = &s;
  if (!spec) {
    std::string valid;
    for (const auto& s : op.attr_specs()) valid += (valid.empty() ? "" : ", ") + s.name;
    node.fail("unknown attribute '", key, "' for op '", op.name(), "' (valid: ", valid.empty() ? "none" : valid,
              ")");
  }
  Fields a(node.source(), str_cat(node.where(), ": attribute '", key, "'"), j, {"type", "value"});
  std::string type = a.string("type");
  auto declared = attr_type_by_key(type);
  if (!declared)
    a.fail("unknown attribute type '", type, "' (valid: int, float, bool, string, ints, floats, dtype, tensor)");
  if (*declared != spec->type)
    a.fail("stored as ", type, " but op '", op.name(), "' declares it ", attr_type_key(spec->type));
  const Json& v = a.required("value");
  auto want = [&](bool ok, const char* what) {
    if (!ok) a.fail("value must be ", what, ", got ", brief(v));
  };
  switch (spec->type) {
    case AttrType::Int: return decode_int(node, key, v);
    case AttrType::Float: return decode_float(node, key, v);
    case AttrType::Bool: want(v.is_boolean(), "true or false"); return v.get<bool>();
    case AttrType::String: want(v.is_string(), "a string"); return v.get<std::string>();
    case AttrType::Ints: {
      want(v.is_array(), "an array of integers");
      std::vector<int64_t> out;
      out.reserve(v.size());
      for (const Json& e : v) out.push_back(decode_int(node, key, e));
      return out;
    }
    case AttrType::Floats: {
      want(v.is_array(), "an array of numbers");
      std::vector<double> out;
      out.reserve(v.size());
      for (const Json& e : v) out.push_back(decode_float(node, key, e));
      return out;
    }
    case AttrType::DType: {
      want(v.is_string(), "a dtype name");
      auto d = dtype_by_name(v.get_ref<const std::string&>());
      if (!d) a.fail("unknown dtype '", v.get<std::string>(), "' (valid: ", valid_dtype_names(), ")");
      return *d;
    }
    case AttrType::Tensor:
      want(v.is_string(), "the name of a tensor in the table");
      return tensors.use(node, key, v.get<std::string>(), op.name() == "variable");
  }
  a.fail("unhandled attribute type");
}

// A placeholder's shape reaches every shape computation downstream, so it
// gets the same rules as Graph::placeholder: dims >= 0 or -1 (unknown), and
// the known dims' product fits int64.
void check_placeholder(const Fields& f, const Node& n) {
  const AttrValue* v = n.attrs.find("shape");
  const auto* shape_ptr = v ? std::get_if<std::vector<int64_t>>(v) : nullptr;
  if (!shape_ptr) f.fail("placeholder has no 'shape' list of ints");
  const std::vector<int64_t>& shape = *shape_ptr;
  if (shape.size() > kMaxRank) f.fail("placeholder rank ", shape.size(), " exceeds the maximum of ", kMaxRank);
  std::vector<int64_t> known;
  for (int64_t d : shape) {
    if (d < -1) f.fail("placeholder shape ", shape_str(shape), " has a dim < -1 (dims are >= 0, or -1 for unknown)");
    if (d >= 0) known.push_back(d);
  }
  if (!checked_numel(known)) f.fail("placeholder shape ", shape_str(shape), " overflows int64");
}

}  // namespace

Graph read_graph(const Container& c, const NamedTensors& table, const OpRegistry& registry) {
  Fields top(c.source, "header", c.header,
             kHeaderFields);
  const Json& nodes = top.array("nodes");
  Graph g;
  GraphData& gd = *g.data();
  std::unordered_map<std::string, int64_t> ids;
  std::vector<Fields> where;  // per node, for messages of the later passes
  where.reserve(nodes.size());
  TensorRefs tensors(table);

  // Pass 1: names, ops, attributes, devices. Nodes are placed directly into
  // GraphData (ids = file order): Graph::add_node searches names linearly,
  // which a file with many nodes would turn into a quadratic stall.
  for (size_t i = 0; i < nodes.size(); ++i) {
    where.emplace_back(c.source, str_cat("nodes[", i, "]"), nodes[i],
                       std::initializer_list<std::string_view>{"name", "op", "inputs", "control_inputs", "device",
                                                               "attrs"});
    Fields& f = where.back();
    auto n = std::make_unique<Node>();
    n->id = static_cast<int64_t>(i);
    n->name = f.string("name");
    if (std::string p = name_problem(n->name); !p.empty()) f.fail("the node name ", p);
    f.rename(str_cat(f.where(), " ('", n->name, "')"));
    if (!ids.emplace(n->name, n->id).second) f.fail("duplicate node name");
    std::string op_name = f.string("op");
    n->op = registry.find(op_name);
    if (!n->op) f.fail("unknown op '", op_name, "'");
    Attrs given;
    for (const auto& [k, v] : f.object("attrs").items()) given.set(k, decode_attr(f, *n->op, k, v, tensors));
    try {
      n->attrs = n->op->complete_attrs(given);  // fills defaults; names a missing required attribute
    } catch (const Error& e) {
      f.fail(e.what());
    }
    if (const Json* d = f.optional("device")) {
      if (!d->is_string()) f.fail("field 'device' must be a string, got ", brief(*d));
      n->device = d->get<std::string>();
      if (std::string p = device_problem(n->device); !p.empty()) f.fail("device '", n->device, "' ", p);
    }
    if (n->op->name() == "placeholder") check_placeholder(f, *n);
    if (n->op->name() == "variable") {
      const AttrValue* v = n->attrs.find("value");
      const Tensor* t = v ? std::get_if<Tensor>(v) : nullptr;
      if (!t) f.fail("variable has no 'value' tensor");
      Tensor(*t).mark_variable(n->name);
    }
    gd.nodes.push_back(std::move(n));
  }

  // Pass 2: edges. Output indices are bounded by the producer's inferred
  // outputs in pass 4; here they only have to be plausible integers.
  auto resolve = [&](const Fields& f, const std::string& what, const Json& name) -> int64_t {
    if (!name.is_string()) f.fail(what, " must name a node, got ", brief(name));
    auto it = ids.find(name.get<std::string>());
    if (it == ids.end()) f.fail(what, " refers to unknown node '", name.get<std::string>(), "'");
    return it->second;
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Fields& f = where[i];
    Node& n = *gd.nodes[i];
    const Json& inputs = f.array("inputs");
    for (size_t k = 0; k < inputs.size(); ++k) {
      Fields e(c.source, str_cat(f.where(), ": inputs[", k, "]"), inputs[k], {"node", "output"});
      int64_t src = resolve(e, "field 'node'", e.required("node"));
      int64_t out = e.int64("output");
      if (out < 0 || out > INT_MAX) e.fail("output index ", out, " is out of range");
      n.inputs.push_back(NodeOutput{src, static_cast<int>(out)});
    }
    try {
      n.op->check_num_inputs(n.inputs.size());
    } catch (const Error& e) {
      f.fail(e.what());
    }
    if (const Json* ctl = f.optional("control_inputs")) {
      if (!ctl->is_array()) f.fail("field 'control_inputs' must be an array, got ", brief(*ctl));
      for (size_t k = 0; k < ctl->size(); ++k)
        n.control_inputs.push_back(resolve(f, str_cat("control_inputs[", k, "]"), (*ctl)[k]));
    }
  }

  // Pass 3: cycles (data and control edges alike).
  std::vector<int64_t> order;
  try {
    order = g.topological_order();
  } catch (const Error& e) {
    bad(c.source, e.what());
  }

  // Pass 4: inference in dataflow order, so every producer's outputs are
  // known before its consumers are checked against them.
  for (int64_t id : order) {
    const Fields& f = where[static_cast<size_t>(id)];
    Node& n = *gd.nodes[static_cast<size_t>(id)];
    std::vector<TensorMeta> metas;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const Node& src = *gd.nodes[static_cast<size_t>(n.inputs[k].node)];
      if (static_cast<size_t>(n.inputs[k].index) >= src.outputs.size())
        f.fail("input ", k, " refers to output ", n.inputs[k].index, " of '", src.name, "', which has ",
               src.outputs.size(), " output(s)");
      metas.push_back(src.outputs[static_cast<size_t>(n.inputs[k].index)]);
    }
    try {
      n.outputs = n.op->run_infer(metas, n.attrs);
    } catch (const std::exception& e) {  // ShapeError, TypeError, ... from the op's own checks
      f.fail("op '", n.op->name(), "' rejects its inputs/attributes: ", e.what());
    }
  }

  // Graph inputs (named placeholders) and outputs.
  auto named = [&](const char* key, bool is_output) {
    const Json& arr = top.array(key);
    std::unordered_map<std::string, bool> seen;
    for (size_t i = 0; i < arr.size(); ++i) {
      Fields e(c.source, str_cat(key, "[", i, "]"), arr[i],
               is_output ? std::initializer_list<std::string_view>{"name", "node", "output"}
                         : std::initializer_list<std::string_view>{"name", "node"});
      std::string name = e.string("name");
      if (std::string p = name_problem(name); !p.empty()) e.fail("the name ", p);
      e.rename(str_cat(e.where(), " ('", name, "')"));
      if (!seen.emplace(name, true).second) e.fail("duplicate ", is_output ? "output" : "input", " name");
      int64_t id = resolve(e, "field 'node'", e.required("node"));
      const Node& n = *gd.nodes[static_cast<size_t>(id)];
      if (!is_output) {
        if (n.op->name() != "placeholder") e.fail("node '", n.name, "' is not a placeholder (op '", n.op->name(), "')");
        gd.inputs.emplace_back(name, id);
        continue;
      }
      int64_t out = e.int64("output");
      if (out < 0 || static_cast<uint64_t>(out) >= n.outputs.size())
        e.fail("output ", out, " of node '", n.name, "' does not exist (it has ", n.outputs.size(), " output(s))");
      gd.outputs.emplace_back(name, NodeOutput{id, static_cast<int>(out)});
    }
  };
  named("inputs", false);
  named("outputs", true);

  // The graph's own invariants, as every other producer of graphs is held to.
  try {
    g.validate();
  } catch (const Error& e) {
    bad(c.source, "graph: ", e.what());
  }
  g.rebuild_variable_access();
  return g;
}

}  // namespace ndflow::ndf
