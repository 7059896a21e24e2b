#include "core/storage.h"

namespace ndflow {

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  NDF_CHECK(device.is_cpu(), NotFoundError, "no allocator for device ", device.str(),
            " in this build");
  Allocator* a = &cpu_allocator();
  void* p = a->allocate(nbytes);
  return std::make_shared<Storage>(p, nbytes, device, a, nullptr);
}

std::shared_ptr<Storage> Storage::wrap(void* data, size_t nbytes, Device device,
                                       std::shared_ptr<void> owner) {
  return std::make_shared<Storage>(data, nbytes, device, nullptr, std::move(owner));
}

Storage::~Storage() {
  if (allocator_) allocator_->deallocate(data_, nbytes_);
}

}  // namespace ndflow
