// A block of device memory shared by a tensor and all of its views. It also
// carries the version counter that in-place writes bump, so that autograd can
// detect a saved tensor that was modified after it was saved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/allocator.h"

namespace ndflow {

class NDF_EXPORT Storage {
 public:
  // Allocates `nbytes` from the device's allocator.
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  // Wraps memory owned by someone else (NumPy, DLPack); `owner` keeps it alive.
  static std::shared_ptr<Storage> wrap(void* data, size_t nbytes, Device device,
                                       std::shared_ptr<void> owner);

  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

  Storage(void* data, size_t nbytes, Device device, Allocator* alloc, std::shared_ptr<void> owner)
      : data_(data), nbytes_(nbytes), device_(device), allocator_(alloc), owner_(std::move(owner)) {}

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  Allocator* allocator_;          // null for wrapped memory
  std::shared_ptr<void> owner_;   // keeps wrapped memory alive
  uint64_t version_ = 0;
};

}  // namespace ndflow
