// Ids for in-process rendezvous, so that send/recv nodes can name theirs in
// an attribute (graphs hold values, not pointers to runtime objects).
#include <mutex>
#include <unordered_map>

#include "distributed/rendezvous.h"

namespace ndflow::distributed {

namespace {

struct Registry {
  std::mutex mu;
  int64_t next = 1;
  std::unordered_map<int64_t, std::shared_ptr<Rendezvous>> table;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: kernels may run during exit
  return *r;
}

}  // namespace

int64_t register_rendezvous(std::shared_ptr<Rendezvous> rendezvous) {
  NDF_CHECK(rendezvous, ValueError, "register_rendezvous: got a null rendezvous");
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  int64_t id = r.next++;
  r.table.emplace(id, std::move(rendezvous));
  return id;
}

void unregister_rendezvous(int64_t id) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.table.erase(id);
}

std::shared_ptr<Rendezvous> find_rendezvous(int64_t id) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.table.find(id);
  NDF_CHECK(it != r.table.end(), NotFoundError, "rendezvous ", id,
            " is not registered: its compiled graph was destroyed, or this send/recv node was not made "
            "by the partitioner");
  return it->second;
}

}  // namespace ndflow::distributed
