// Device names within a cluster (DESIGN.md §6–§7): "/worker:N/cpu:K" is CPU
// device K of worker (MPI rank) N; "/worker:N/gpu:K" is reserved for the CUDA
// backend ("cuda:K" is accepted as a synonym). A request may leave parts out
// — "cpu:1", "worker:1/cpu:0", "/worker:1", "cpu", "" — and the placer fills
// them in. A process exposes several logical CPU devices when asked
// (set_num_cpu_devices, NDFLOW_NUM_CPU_DEVICES), so multi-device placement
// runs and is tested on one machine.
//
//   DeviceName d = DeviceName::parse("worker:1/cpu:0");   // worker 1, cpu, 0
//   d.str();                                            // "/worker:1/cpu:0"
//   { DeviceScope on("cpu:1"); y = f(x); }              // graph nodes request cpu:1
#pragma once

#include <string>
#include <vector>

#include "core/device.h"

namespace ndflow {

struct NDF_EXPORT DeviceName {
  int worker = -1;  // -1: any
  bool has_type = false;
  DeviceType type = DeviceType::CPU;
  int index = -1;   // -1: any

  // Parses the forms above; ValueError naming the text and valid examples.
  static DeviceName parse(const std::string& text);
  static DeviceName full(int worker, DeviceType type, int index) { return {worker, true, type, index}; }

  bool is_full() const { return worker >= 0 && has_type && index >= 0; }
  bool empty() const { return worker < 0 && !has_type && index < 0; }
  // Whether the full device `d` satisfies this request.
  bool matches(const DeviceName& d) const;
  // The canonical text: "/worker:1/cpu:0", or the parts given ("cpu:1", "/worker:1").
  std::string str() const;
  Device local() const { return {type, index < 0 ? 0 : index}; }
  friend bool operator==(const DeviceName& a, const DeviceName& b) {
    return a.worker == b.worker && a.has_type == b.has_type && a.type == b.type && a.index == b.index;
  }
};

// Logical CPU devices per process (default 1, or NDFLOW_NUM_CPU_DEVICES).
// Each gets its own executor thread. Changing it affects graphs compiled
// afterwards. ValueError unless 1 <= n <= 64.
NDF_EXPORT int num_cpu_devices();
NDF_EXPORT void set_num_cpu_devices(int n);

// The devices of the cluster that compiled graphs may use, in placement
// order: for each worker, cpu:0 .. cpu:num_cpu_devices()-1.
NDF_EXPORT std::vector<DeviceName> cluster_devices(int num_workers);

// The device that graph nodes built on this thread request (Graph::add_op and
// placeholders record it in Node::device); scopes nest, innermost wins.
class NDF_EXPORT DeviceScope {
 public:
  explicit DeviceScope(const std::string& request);  // validated; "" clears
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  static const std::string& current();

 private:
  std::string previous_;
};

}  // namespace ndflow
