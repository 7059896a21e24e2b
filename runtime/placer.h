// The placer (DESIGN.md §6 step 3): gives every node of a graph a device.
//
//   1. Explicit requests (Node::device, from DeviceScope / `with
//      ndflow.device(...)`) are honoured; parts left out are filled in
//      ("cpu:1" is cpu:1 of the default worker).
//   2. Colocation: a Variable that the graph updates and every op that reads
//      or updates it (directly or through views) form one group and move
//      together; their requests must agree. A Variable that is only read (a
//      learning rate shared by every update) is sent where needed instead.
//   3. Devices without a kernel for some op of a group are excluded. With
//      soft placement, a request whose device lacks a kernel (or that no
//      device matches: a file saved on a bigger machine) falls back to
//      another device of the same worker, else of the default worker,
//      instead of failing.
//   4. The rest is a deterministic cost-based greedy choice, group by group in
//      topological order: the device where the group would finish earliest,
//      counting the time to move its inputs there (bytes / bandwidth plus a
//      latency) and the work already placed on each device. Cheap ops stay
//      next to their inputs; independent heavy ops spread over idle devices.
//
// Constants and Variables the graph only reads go wherever their first
// consumer goes. Unrequested nodes may use
// the devices of the default worker and of every worker the graph names.
//
//   PlacerOptions opt;
//   opt.devices = cluster_devices(world_size);
//   Placement p = place(g, opt);         // sets Node::assigned_device
//   std::cout << p.report(g);            // device and reason per node, bytes moved
#pragma once

#include <string>
#include <vector>

#include "core/device_name.h"
#include "core/graph.h"

namespace ndflow {

struct PlacerOptions {
  std::vector<DeviceName> devices;  // full names; empty: every worker-0 CPU device
  int default_worker = 0;           // for requests and nodes that name no worker
  bool soft_placement = false;
  // Cost model (only relative values matter; defaults describe this kind of machine).
  double flops_per_us = 20000;            // per device
  double local_bytes_per_us = 5000;       // between devices of one worker
  double remote_bytes_per_us = 1000;      // between workers
  double local_latency_us = 5;
  double remote_latency_us = 30;
  int64_t unknown_dim = 32;               // what a -1 dim counts as
};

struct Placement {
  struct NodeInfo {
    int64_t node = -1;
    int device = -1;      // index into devices
    std::string reason;
  };
  // A boundary between two devices and what crosses it each step.
  struct Transfer {
    int src = -1, dst = -1;  // indices into devices
    int64_t tensors = 0;     // distinct tensors sent (one per (tensor, destination))
    int64_t controls = 0;    // control edges crossing
    int64_t bytes = 0;       // estimated: -1 dims count as PlacerOptions::unknown_dim
  };
  std::vector<DeviceName> devices;  // the devices considered, in order
  std::vector<NodeInfo> nodes;      // in topological order
  std::vector<Transfer> transfers;  // ordered by (src, dst)
  int64_t unknown_dim = 32;

  int device_of(int64_t node) const;  // -1 when not placed
  // The devices that got at least one node.
  std::vector<int> used_devices() const;
  // One line per node (name, op, device, reason), then one per boundary.
  std::string report(const Graph& g) const;
};

// Places every node of `g` and records it in Node::assigned_device. Throws a
// ValueError naming the node, its constraint and the devices considered when
// a constraint cannot be met.
NDF_EXPORT Placement place(Graph& g, const PlacerOptions& options);

// Bytes of one tensor with -1 dims counted as `unknown_dim`.
NDF_EXPORT int64_t estimated_bytes(const TensorMeta& m, int64_t unknown_dim);

}  // namespace ndflow
