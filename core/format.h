// The .ndf file (DESIGN.md §8, docs/ndf-format.md): a graph with its
// variable values, or any set of named tensors (checkpoints use the same
// container). Tensor bytes are memory-mapped on load; the mapping lives as
// long as any tensor that points into it.
//
//   save_graph("model.ndf", g);                 // validates g, writes atomically
//   Graph g2 = load_graph("model.ndf");         // FormatError naming what is wrong
//   save_tensors("ckpt.ndf", {{"fc.w", w}, {"fc.b", b}}, {{"step", "1200"}});
//   Checkpoint c = load_tensors("ckpt.ndf");    // c.tensors in file order
//
// The loader trusts nothing: every offset, length, shape product, dtype, op
// name, attribute, edge and name is checked, cycles are rejected, and any
// defect is reported as a FormatError (a ValueError) whose message starts
// with "[ndf] <source>: " and names the field or node at fault.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/graph.h"

namespace ndflow {

// A malformed or inconsistent .ndf file (or .npy file, see core/npy.h).
class NDF_EXPORT FormatError : public ValueError { using ValueError::ValueError; };

using Metadata = std::map<std::string, std::string>;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct LoadOptions {
  // Map tensor bytes from the file (copy-on-write: updates to a loaded
  // Variable never reach the file). When false, or when the file cannot be
  // mapped, the file is read into memory instead.
  bool mmap = true;
  // Where op names are looked up; null means OpRegistry::global().
  const OpRegistry* registry = nullptr;
};

// What load_tensors returns: the tensor table in file order, and the
// free-form string metadata of the file.
struct Checkpoint {
  NamedTensors tensors;
  Metadata metadata;
  // The tensor of that name, or an undefined Tensor.
  Tensor find(const std::string& name) const;
};

// ---- graphs: nodes, attributes, edges, named inputs/outputs, and the
// values of constants and Variables (attributes of type Tensor).
// Throws the error of Graph::validate() for an invalid graph, ValueError for
// unsavable content (non-CPU or symbolic tensors, names with control
// characters), and ndflow::Error on I/O failure. The file is written to a
// temporary name first and renamed, so a reader never sees half a file.
NDF_EXPORT void save_graph(const std::string& path, const Graph& graph, const Metadata& metadata = {});
// Loads and fully validates a graph file; Variables come back marked as
// Variables (named after their nodes) and read and write the mapped bytes.
NDF_EXPORT Graph load_graph(const std::string& path, const LoadOptions& options = {},
                            Metadata* metadata = nullptr);

// ---- named tensors (checkpoints). Names must be unique and non-empty.
NDF_EXPORT void save_tensors(const std::string& path, const NamedTensors& tensors,
                             const Metadata& metadata = {});
// Also reads the tensor table of a graph file (e.g. a model's weights).
NDF_EXPORT Checkpoint load_tensors(const std::string& path, const LoadOptions& options = {});

// ---- the same in memory (tests, fuzzing, network transfer). The parse_*
// functions copy `bytes` into an aligned buffer that the tensors keep alive.
NDF_EXPORT std::string serialize_graph(const Graph& graph, const Metadata& metadata = {});
NDF_EXPORT std::string serialize_tensors(const NamedTensors& tensors, const Metadata& metadata = {});
NDF_EXPORT Graph parse_graph(std::span<const uint8_t> bytes, const LoadOptions& options = {},
                             Metadata* metadata = nullptr);
NDF_EXPORT Checkpoint parse_tensors(std::span<const uint8_t> bytes, const LoadOptions& options = {});

}  // namespace ndflow
