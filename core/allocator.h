// Memory allocators, one per device. The CPU allocator returns 64-byte aligned
// blocks and keeps freed blocks in size-class free lists, so a training loop
// that allocates the same sizes every step stops calling malloc after the
// first step.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/device.h"

namespace ndflow {

struct AllocatorStats {
  size_t bytes_in_use = 0;      // handed out and not yet returned
  size_t peak_bytes_in_use = 0;
  size_t bytes_cached = 0;      // held in free lists
  uint64_t num_allocs = 0;      // calls to allocate
  uint64_t num_system_allocs = 0;  // of which went to the system allocator
};

class NDF_EXPORT Allocator {
 public:
  virtual ~Allocator() = default;
  // Never returns null: throws ValueError when the request cannot be met.
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* p, size_t nbytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Returns cached blocks to the system.
  virtual void empty_cache() = 0;
};

inline constexpr size_t kCpuAlignment = 64;

// The process-wide CPU allocator (caching; thread-safe).
NDF_EXPORT Allocator& cpu_allocator();

}  // namespace ndflow
