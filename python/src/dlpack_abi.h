// The DLPack exchange structs: the unversioned ABI (dmlc/dlpack v0.8, capsule
// "dltensor") that `__dlpack__()` without max_version exchanges, and the
// versioned one (v1.0, capsule "dltensor_versioned") that NumPy 2 and
// PyTorch ask for with max_version=(1, 0). Only the layout is part of the
// protocol, so it is declared here rather than pulled in as a dependency.
#pragma once

#include <cstdint>

namespace ndflow::python::dlpack {

enum DLDeviceType : int32_t { kDLCPU = 1 };
enum DLDataTypeCode : uint8_t { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLBool = 6 };

struct DLDevice {
  int32_t device_type;
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null means compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};
inline constexpr uint64_t kFlagReadOnly = 1ULL << 0, kFlagIsCopied = 1ULL << 1;
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
};

}  // namespace ndflow::python::dlpack
