// Where a tensor lives: a device type and index ("cpu:0", "cuda:1"). Within a
// cluster the full name carries the worker ("/worker:1/cpu:0"); see distributed/.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "core/error.h"

namespace ndflow {

enum class DeviceType : uint8_t { CPU = 0, CUDA = 1 };
inline constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu(int i = 0) { return {DeviceType::CPU, i}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  friend bool operator==(Device a, Device b) { return a.type == b.type && a.index == b.index; }
  std::string str() const {
    return std::string(type == DeviceType::CPU ? "cpu:" : "cuda:") + std::to_string(index);
  }
  // Parses "cpu", "cpu:1", "cuda:0"; ValueError otherwise.
  NDF_EXPORT static Device parse(const std::string& s);
};

inline std::ostream& operator<<(std::ostream& os, Device d) { return os << d.str(); }

}  // namespace ndflow
