#include "core/allocator.h"

#include <cstdlib>
#include <mutex>
#include <vector>

namespace ndflow {

Device Device::parse(const std::string& s) {
  auto colon = s.find(':');
  std::string kind = s.substr(0, colon);
  int index = 0;
  if (colon != std::string::npos) {
    std::string num = s.substr(colon + 1);
    bool ok = !num.empty() && num.size() < 6 &&
              num.find_first_not_of("0123456789") == std::string::npos;
    NDF_CHECK(ok, ValueError, "bad device name '", s, "': expected e.g. cpu, cpu:0, cuda:1");
    index = std::stoi(num);
  }
  if (kind == "cpu") return cpu(index);
  if (kind == "cuda") return cuda(index);
  fail<ValueError>("bad device name '", s, "': the type must be cpu or cuda");
}

namespace {

// Size classes: multiples of 64 bytes up to 4 KiB, then powers of two up to
// 16 MiB. Larger blocks bypass the cache and go back to the system when
// freed: a cached block serves only its own size class, so caching the few
// huge tensors of, say, an evaluation at a large batch would keep one block
// per class resident (PyTorch's CPU allocator caches nothing). Training-sized
// tensors stay far below this and are reused step after step.
constexpr size_t kSmallLimit = 4096;
constexpr int kNumSmall = kSmallLimit / kCpuAlignment;  // 64 classes
constexpr int kMaxPow2 = 24;                              // 16 MiB
constexpr size_t kMaxCached = size_t(1) << 30;          // cache at most 1 GiB

int size_class(size_t n, size_t* rounded) {
  if (n <= kSmallLimit) {
    size_t c = (n + kCpuAlignment - 1) / kCpuAlignment;
    if (c == 0) c = 1;
    *rounded = c * kCpuAlignment;
    return static_cast<int>(c - 1);
  }
  int p = 64 - __builtin_clzll(n - 1);  // ceil(log2 n)
  if (p > kMaxPow2) {
    *rounded = (n + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    return -1;
  }
  *rounded = size_t(1) << p;
  return kNumSmall + (p - 13);  // p >= 13 here
}

class CpuCachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    size_t rounded;
    int cls = size_class(nbytes, &rounded);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.num_allocs;
      if (cls >= 0 && !free_[cls].empty()) {
        void* p = free_[cls].back();
        free_[cls].pop_back();
        stats_.bytes_cached -= rounded;
        note_alloc(rounded);
        return p;
      }
      ++stats_.num_system_allocs;
    }
    // A block too large to cache marks another phase (evaluation at a large
    // batch): give the cached training-sized blocks back first, as an
    // allocator without a cache would have.
    if (cls < 0) empty_cache();
    void* p = std::aligned_alloc(kCpuAlignment, rounded);
    if (!p) {
      empty_cache();
      p = std::aligned_alloc(kCpuAlignment, rounded);
    }
    NDF_CHECK(p, ValueError, "out of memory: cannot allocate ", nbytes, " bytes on cpu");
    std::lock_guard<std::mutex> lock(mu_);
    note_alloc(rounded);
    return p;
  }

  void deallocate(void* p, size_t nbytes) override {
    if (!p) return;
    size_t rounded;
    int cls = size_class(nbytes, &rounded);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.bytes_in_use -= rounded;
      if (cls >= 0 && stats_.bytes_cached + rounded <= kMaxCached) {
        free_[cls].push_back(p);
        stats_.bytes_cached += rounded;
        return;
      }
    }
    std::free(p);
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }
  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& list : free_) {
      for (void* p : list) std::free(p);
      list.clear();
    }
    stats_.bytes_cached = 0;
  }

 private:
  void note_alloc(size_t rounded) {
    stats_.bytes_in_use += rounded;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use)
      stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }

  mutable std::mutex mu_;
  std::vector<void*> free_[kNumSmall + kMaxPow2 - 12];
  AllocatorStats stats_;
};

}  // namespace

Allocator& cpu_allocator() {
  // Leaked on purpose: tensors held by static objects may be freed after
  // static destructors have run.
  static auto* a = new CpuCachingAllocator();
  return *a;
}

}  // namespace ndflow
