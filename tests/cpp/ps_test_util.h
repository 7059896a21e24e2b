// Fixtures shared by the parameter-server tests (test_ps.cc, test_ps_optim.cc):
// a started server on loopback with quiet logs, and small tensor makers.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ndflow/ndflow.h>

#include "distributed/ps/server.h"

namespace ndflow::ps::testing {

inline const std::string kSecret = "test-secret-7f3a";

inline std::unique_ptr<Server> make_server(uint32_t workers, std::vector<TableSpec> tables) {
  auto s = std::make_unique<Server>(ServerOptions{.secret = kSecret, .num_workers = workers,
                                                  .log = [](const std::string&) {}});
  for (const TableSpec& t : tables) s->add_table(t);
  s->start();
  return s;
}

// Catch2 assertions are not thread-safe: worker threads collect their errors here.
struct Failures {
  std::mutex mu;
  std::string all;
  void add(const std::string& e) {
    std::lock_guard<std::mutex> lock(mu);
    all += e + "\n";
  }
  std::string text() {
    std::lock_guard<std::mutex> lock(mu);
    return all;
  }
};

inline Tensor filled(const Shape& shape, float v) {
  Tensor t = zeros(shape);
  t.fill_(v);
  return t;
}

inline Tensor ids_of(std::vector<int64_t> v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, DType::i64);
  std::copy(v.begin(), v.end(), t.data<int64_t>());
  return t;
}

}  // namespace ndflow::ps::testing
