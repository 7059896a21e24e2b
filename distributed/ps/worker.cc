// A worker over every server (worker.h): table layout, splitting pushes and
// assembling pulls across shards, and the consistency-bounded read cache.
#include "distributed/ps/worker.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <list>
#include <map>
#include <unordered_map>

#include "runtime/eager.h"

namespace ndflow::ps {

LayoutPlanner::LayoutPlanner(uint32_t num_servers, int64_t split_bytes)
    : num_servers_(num_servers), split_bytes_(split_bytes), load_(num_servers, 0) {
  NDF_CHECK(num_servers >= 1, ValueError, "[ps] a job needs at least one server, got ", num_servers);
  NDF_CHECK(split_bytes >= 0, ValueError, "[ps] split_bytes must be >= 0, got ", split_bytes);
}

TableLayout LayoutPlanner::place(const std::string& name, const Shape& shape) {
  TableLayout l{name, shape, {}};
  const int64_t bytes = shape_numel(shape) * int64_t(sizeof(float));
  const int64_t rows = shape.empty() ? 1 : shape[0];
  if (num_servers_ > 1 && !shape.empty() && bytes >= split_bytes_ && rows >= num_servers_) {
    const int64_t row_bytes = bytes / rows;
    for (uint32_t s = 0; s < num_servers_; ++s) {
      const int64_t begin = rows * s / num_servers_, end = rows * (s + 1) / num_servers_;
      l.shards.push_back({s, begin, end});
      load_[s] += (end - begin) * row_bytes;
    }
  } else {
    const uint32_t s = uint32_t(std::min_element(load_.begin(), load_.end()) - load_.begin());
    l.shards.push_back({s, 0, rows});
    load_[s] += bytes;
  }
  return l;
}

Tensor shard_rows(const Tensor& full, const Shard& shard) {
  if (full.rank() == 0) return full;
  return full.slice(0, shard.begin, shard.end);
}

namespace {

struct CachedRow {
  int64_t slowest;
  std::vector<float> data;
};

// The rows pull_rows fetched, at most `capacity`; the least recently used
// one makes room (an embedding's hot rows stay while the cold ones cycle).
class RowCache {
 public:
  // The row, marked as just used; null if absent.
  CachedRow* find(int64_t row) {
    auto it = rows_.find(row);
    if (it == rows_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second.second);
    return &it->second.first;
  }
  void put(int64_t row, CachedRow value, int64_t capacity) {
    if (CachedRow* r = find(row)) {
      *r = std::move(value);
      return;
    }
    if (capacity <= 0) return;
    while (int64_t(rows_.size()) >= capacity) {
      rows_.erase(order_.back());
      order_.pop_back();
    }
    order_.push_front(row);
    rows_.emplace(row, std::make_pair(std::move(value), order_.begin()));
  }
  void erase(int64_t row) {
    auto it = rows_.find(row);
    if (it == rows_.end()) return;
    order_.erase(it->second.second);
    rows_.erase(it);
  }
  void clear() {
    rows_.clear();
    order_.clear();
  }

 private:
  std::list<int64_t> order_;  // most recently used first
  std::unordered_map<int64_t, std::pair<CachedRow, std::list<int64_t>::iterator>> rows_;
};

struct Entry {
  WorkerTable t;
  int64_t width = 1;     // floats per row
  uint64_t pushes = 0;   // this worker's pushes to the table: a fetch they overtook is not cached
  Tensor cached;         // the whole table, this process's own copy
  int64_t cached_slowest = 0;
  RowCache rows;          // rows fetched by pull_rows
};

void add_into(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace

struct WorkerState {
  WorkerOptions opt;
  std::vector<std::unique_ptr<Client>> clients;
  std::map<std::string, Entry> tables;
  CacheStats stats;

  Entry& entry(const std::string& name) {
    auto e = tables.find(name);
    if (e == tables.end()) {
      std::string names;
      for (const auto& [n, _] : tables) names += (names.empty() ? "'" : ", '") + n + "'";
      fail<NotFoundError>("[ps.worker ", opt.worker, "] table '", name, "' is not registered (tables: ",
                          names.empty() ? "none" : names, ")");
    }
    return e->second;
  }
  int64_t clock() const { return clients[0]->current_clock(); }
  void observed(int64_t reader_clock, int64_t slowest) {
    const int64_t bins = ServerStats::kStalenessBins;
    stats.staleness[size_t(std::clamp<int64_t>(reader_clock - slowest, 0, bins - 1))]++;
  }

  bool cacheable(const Entry& e) const { return opt.cache && e.t.sync.kind != Sync::Kind::asp; }
  bool fresh_enough(const Entry& e, int64_t slowest) const { return slowest >= clock() - e.t.sync.staleness; }
  // SSP(s > 0) servers apply a push at once, so a read after it must show
  // it: an accumulating table's cache adds it too; any other rule's cache
  // (whose step the worker cannot redo) forgets what it touched. BSP
  // servers hold pushes back to the clock's end, and so does the cache.
  bool applied_at_once(const Entry& e) const { return e.t.sync.kind == Sync::Kind::ssp && e.t.sync.staleness > 0; }
  bool mirrors_pushes(const Entry& e) const { return applied_at_once(e) && e.t.rule == UpdateRule::accumulate; }

  size_t shard_of(const Entry& e, int64_t row) const {
    const auto& sh = e.t.layout.shards;
    size_t i = 0;
    while (i + 1 < sh.size() && row >= sh[i].end) ++i;
    return i;
  }

  void check_ids(const Entry& e, const Tensor& ids, const char* what) const {
    const Shape& shape = e.t.layout.shape;
    NDF_CHECK(!shape.empty(), ShapeError, "[ps.worker] ", what, " of table '", e.t.layout.name, "': a scalar has no rows");
    NDF_CHECK(ids.dtype() == DType::i64 && ids.rank() == 1 && ids.is_contiguous(), TypeError, "[ps.worker] ", what,
              " of table '", e.t.layout.name, "': row ids must be a contiguous 1-d i64 tensor, got ",
              dtype_name(ids.dtype()), ids.shape());
    const int64_t* p = ids.data<int64_t>();
    for (int64_t i = 0; i < ids.numel(); ++i)
      NDF_CHECK(p[i] >= 0 && p[i] < shape[0], IndexError, "[ps.worker] ", what, " of table '", e.t.layout.name,
                "': row id ", p[i], " (position ", i, ") is outside its ", shape[0], " rows");
  }
  void check_f32(const Entry& e, const Tensor& t, const Shape& want, const char* what) const {
    NDF_CHECK(t.dtype() == DType::f32 && t.shape() == want && t.is_contiguous(), ShapeError, "[ps.worker] ", what,
              " to table '", e.t.layout.name, "' needs a contiguous f32 tensor of shape ", want, ", got ",
              dtype_name(t.dtype()), t.shape());
  }

  // The whole table from its shards' replies (row ranges, in order).
  Tensor join(const Entry& e, std::vector<Tensor>& parts) const {
    if (parts.size() == 1) return parts[0];
    EagerScope eager;
    Tensor out = Tensor::empty(e.t.layout.shape, DType::f32);
    for (size_t i = 0; i < parts.size(); ++i)
      std::memcpy(out.data<float>() + e.t.layout.shards[i].begin * e.width, parts[i].data<float>(), parts[i].nbytes());
    return out;
  }
};

Tensor Pending::wait() {
  if (error_) std::rethrow_exception(error_);
  if (done_) return result_;
  try {
    std::vector<Tensor> results;
    int64_t slowest = slowest_;
    for (Handle& h : parts_) {
      results.push_back(h.wait());
      slowest = std::min(slowest, h.slowest_clock());
    }
    slowest_ = slowest;
    if (finish_) result_ = finish_(results, slowest);
  } catch (...) {
    error_ = std::current_exception();  // a second wait() says the same, instead of waiting on spent replies
  }
  done_ = true;
  parts_.clear();
  finish_ = nullptr;
  if (error_) std::rethrow_exception(error_);
  return result_;
}

bool Pending::ready() {
  if (done_) return true;
  for (Handle& h : parts_)
    if (!h.ready()) return false;
  return true;
}

Worker::Worker(WorkerOptions options) : s_(std::make_shared<WorkerState>()) {
  NDF_CHECK(!options.servers.empty(), ValueError, "[ps.worker] WorkerOptions::servers is empty");
  NDF_CHECK(options.cache_rows >= 0, ValueError, "[ps.worker] cache_rows must be >= 0, got ", options.cache_rows);
  s_->opt = std::move(options);
  for (const std::string& address : s_->opt.servers)
    s_->clients.push_back(std::make_unique<Client>(ClientOptions{.address = address,
                                                                 .secret = s_->opt.secret,
                                                                 .worker = s_->opt.worker,
                                                                 .incarnation = s_->opt.incarnation,
                                                                 .timeout = s_->opt.timeout}));
  // A rejoining worker continues at the clock the servers have for it. They
  // agree unless one was restored from an older checkpoint meanwhile: that
  // one is clocked forward to the others (what it lost stays lost), since a
  // step must be at one clock everywhere.
  int64_t latest = 0;
  for (const auto& c : s_->clients) latest = std::max(latest, c->current_clock());
  std::vector<Handle> acks;
  for (auto& c : s_->clients)
    while (c->current_clock() < latest) acks.push_back(c->clock_async());
  for (Handle& h : acks) h.wait();
}

Worker::~Worker() = default;

void Worker::add_table(WorkerTable table) {
  const TableLayout& l = table.layout;
  NDF_CHECK(!s_->tables.count(l.name), ValueError, "[ps.worker] table '", l.name, "' added twice");
  NDF_CHECK(!l.shards.empty(), ValueError, "[ps.worker] table '", l.name, "' has no shards");
  int64_t next = 0;
  for (const Shard& sh : l.shards) {
    NDF_CHECK(sh.server < s_->clients.size() && sh.begin == next && sh.end >= sh.begin, ValueError,
              "[ps.worker] table '", l.name, "': shard on server ", sh.server, " rows [", sh.begin, ", ", sh.end,
              ") does not continue the layout at row ", next, " over ", s_->clients.size(), " servers");
    next = sh.end;
  }
  NDF_CHECK(next == (l.shape.empty() ? 1 : l.shape[0]), ValueError, "[ps.worker] table '", l.name,
            "': its shards cover ", next, " rows of ", l.shape);
  const std::string name = l.name;
  Entry e;
  e.t = std::move(table);
  const Shape& shape = e.t.layout.shape;
  e.width = shape.empty() || shape[0] == 0 ? 1 : shape_numel(shape) / shape[0];
  s_->tables.emplace(name, std::move(e));
}

bool Worker::has_table(const std::string& name) const { return s_->tables.count(name) > 0; }

Pending Worker::push(const std::string& table, const Tensor& grad) {
  WorkerState& s = *s_;
  Entry& e = s.entry(table);
  s.check_f32(e, grad, e.t.layout.shape, "push");
  Pending p;
  for (const Shard& sh : e.t.layout.shards)
    p.parts_.push_back(s.clients[sh.server]->push(table, e.t.layout.shards.size() > 1 ? shard_rows(grad, sh) : grad));
  e.pushes++;
  if (s.mirrors_pushes(e) && e.cached.defined()) add_into(e.cached.data<float>(), grad.data<float>(), grad.numel());
  else if (s.applied_at_once(e)) e.cached = Tensor();
  if (s.applied_at_once(e)) e.rows.clear();
  return p;
}

Pending Worker::push_rows(const std::string& table, const Tensor& ids, const Tensor& rows) {
  WorkerState& s = *s_;
  Entry& e = s.entry(table);
  s.check_ids(e, ids, "push_rows");
  Shape want = e.t.layout.shape;
  want[0] = ids.numel();
  s.check_f32(e, rows, want, "push_rows");
  const int64_t k = ids.numel(), W = e.width;
  const int64_t* id = ids.data<int64_t>();
  const float* row = rows.data<float>();
  Pending p;
  if (e.t.layout.shards.size() == 1) {
    p.parts_.push_back(s.clients[e.t.layout.shards[0].server]->push_rows(table, ids, rows));
  } else {
    // Each shard gets its rows, renumbered from its first row.
    std::vector<std::vector<int64_t>> pos(e.t.layout.shards.size());
    for (int64_t i = 0; i < k; ++i) pos[s.shard_of(e, id[i])].push_back(i);
    EagerScope eager;
    for (size_t j = 0; j < pos.size(); ++j) {
      if (pos[j].empty()) continue;
      const Shard& sh = e.t.layout.shards[j];
      Shape shape = want;
      shape[0] = int64_t(pos[j].size());
      Tensor local_ids = Tensor::empty({shape[0]}, DType::i64), local_rows = Tensor::empty(shape, DType::f32);
      for (size_t r = 0; r < pos[j].size(); ++r) {
        local_ids.data<int64_t>()[r] = id[pos[j][r]] - sh.begin;
        std::memcpy(local_rows.data<float>() + int64_t(r) * W, row + pos[j][r] * W, size_t(W) * sizeof(float));
      }
      p.parts_.push_back(s.clients[sh.server]->push_rows(table, local_ids, local_rows));
    }
  }
  e.pushes++;
  if (s.mirrors_pushes(e)) {
    for (int64_t i = 0; i < k; ++i) {
      if (e.cached.defined()) add_into(e.cached.data<float>() + id[i] * W, row + i * W, W);
      if (CachedRow* c = e.rows.find(id[i])) add_into(c->data.data(), row + i * W, W);
    }
  } else if (s.applied_at_once(e)) {
    e.cached = Tensor();
    for (int64_t i = 0; i < k; ++i) e.rows.erase(id[i]);
  }
  return p;
}

Pending Worker::pull(const std::string& table) {
  WorkerState& s = *s_;
  Entry& e = s.entry(table);
  Pending p;
  if (s.cacheable(e)) {
    if (e.cached.defined() && s.fresh_enough(e, e.cached_slowest)) {
      s.stats.hits++;
      s.observed(s.clock(), e.cached_slowest);
      EagerScope eager;
      p.result_ = e.cached.clone();  // the caller's to change
      p.slowest_ = e.cached_slowest;
      p.done_ = true;
      return p;
    }
    s.stats.misses++;
  }
  for (const Shard& sh : e.t.layout.shards) p.parts_.push_back(s.clients[sh.server]->pull(table));
  p.slowest_ = INT64_MAX;
  p.finish_ = [st = s_, table, gen = e.pushes, at = s.clock()](std::vector<Tensor>& parts, int64_t slowest) {
    Entry& e = st->tables.at(table);
    st->observed(at, slowest);
    Tensor full = st->join(e, parts);
    if (st->cacheable(e) && e.pushes == gen && (!e.cached.defined() || slowest >= e.cached_slowest)) {
      EagerScope eager;
      e.cached = full.clone();
      e.cached_slowest = slowest;
      e.rows.clear();  // the whole table is at least as fresh
    }
    return full;
  };
  return p;
}

Pending Worker::pull_rows(const std::string& table, const Tensor& ids) {
  WorkerState& s = *s_;
  Entry& e = s.entry(table);
  s.check_ids(e, ids, "pull_rows");
  const int64_t k = ids.numel(), W = e.width;
  const int64_t* id = ids.data<int64_t>();
  Shape shape = e.t.layout.shape;
  shape[0] = k;
  EagerScope eager;
  Tensor out = Tensor::empty(shape, DType::f32);
  float* dst = out.data<float>();
  Pending p;
  p.slowest_ = INT64_MAX;
  const bool cache = s.cacheable(e);
  if (cache && e.cached.defined() && s.fresh_enough(e, e.cached_slowest)) {
    for (int64_t i = 0; i < k; ++i) std::memcpy(dst + i * W, e.cached.data<float>() + id[i] * W, W * sizeof(float));
    s.stats.row_hits += uint64_t(k);
    p.result_ = out;
    p.slowest_ = e.cached_slowest;
    p.done_ = true;
    return p;
  }
  // Rows the cache may serve are copied now; the rest are fetched, each
  // distinct row once, from the shard that holds it.
  std::vector<std::pair<int64_t, int64_t>> missing;  // (position in ids, row)
  std::unordered_map<int64_t, std::pair<size_t, int64_t>> fetched;  // row -> (shard, position in its reply)
  std::vector<std::vector<int64_t>> fetch(e.t.layout.shards.size());
  for (int64_t i = 0; i < k; ++i) {
    if (cache && s.opt.cache_rows > 0) {
      CachedRow* c = e.rows.find(id[i]);
      if (c && s.fresh_enough(e, c->slowest)) {
        std::memcpy(dst + i * W, c->data.data(), W * sizeof(float));
        p.slowest_ = std::min(p.slowest_, c->slowest);
        s.stats.row_hits++;
        continue;
      }
    }
    if (cache) s.stats.row_misses++;
    missing.emplace_back(i, id[i]);
    if (!fetched.count(id[i])) {
      const size_t j = s.shard_of(e, id[i]);
      fetched[id[i]] = {j, int64_t(fetch[j].size())};
      fetch[j].push_back(id[i]);
    }
  }
  if (missing.empty()) {
    p.result_ = out;
    p.done_ = true;
    return p;
  }
  std::vector<size_t> asked;  // the shard of each part
  for (size_t j = 0; j < fetch.size(); ++j) {
    if (fetch[j].empty()) continue;
    Tensor local = Tensor::empty({int64_t(fetch[j].size())}, DType::i64);
    for (size_t r = 0; r < fetch[j].size(); ++r) local.data<int64_t>()[r] = fetch[j][r] - e.t.layout.shards[j].begin;
    p.parts_.push_back(s.clients[e.t.layout.shards[j].server]->pull_rows(table, local));
    asked.push_back(j);
  }
  p.finish_ = [st = s_, table, gen = e.pushes, out, missing = std::move(missing), fetched = std::move(fetched),
               asked = std::move(asked), cache](std::vector<Tensor>& parts, int64_t slowest) {
    Entry& e = st->tables.at(table);
    const int64_t W = e.width;
    std::vector<const float*> reply(e.t.layout.shards.size(), nullptr);
    for (size_t i = 0; i < asked.size(); ++i) reply[asked[i]] = parts[i].data<float>();
    float* dst = out.data<float>();
    for (const auto& [i, row] : missing) {
      const auto& [shard, at] = fetched.at(row);
      std::memcpy(dst + i * W, reply[shard] + at * W, W * sizeof(float));
    }
    if (cache && st->opt.cache_rows > 0 && e.pushes == gen) {
      for (const auto& [row, where] : fetched) {
        const float* src = reply[where.first] + where.second * W;
        e.rows.put(row, CachedRow{slowest, std::vector<float>(src, src + W)}, st->opt.cache_rows);
      }
    }
    return out;
  };
  return p;
}

Pending Worker::set_lr(const std::string& table, double lr) {
  Entry& e = s_->entry(table);
  NDF_CHECK(e.t.rule != UpdateRule::accumulate, ValueError, "[ps.worker] table '", table,
            "' accumulates what workers push: it has no learning rate (set_lr is for server-side optimizers)");
  Pending p;
  for (const Shard& sh : e.t.layout.shards) p.parts_.push_back(s_->clients[sh.server]->set_lr(table, lr));
  return p;
}

void Worker::clock() {
  std::vector<Handle> acks;
  for (auto& c : s_->clients) acks.push_back(c->clock_async());
  for (Handle& h : acks) h.wait();
}

void Worker::barrier() {
  clock();
  std::vector<Handle> done;
  for (auto& c : s_->clients) done.push_back(c->barrier());
  for (Handle& h : done) h.wait();
  // A barrier promises reads that see every update pushed before it, which
  // a cached value fetched within the staleness bound need not contain.
  for (auto& [name, e] : s_->tables) {
    e.cached = Tensor();
    e.rows.clear();
  }
}

int64_t Worker::current_clock() const { return s_->clock(); }
CacheStats Worker::cache_stats() const { return s_->stats; }

uint64_t Worker::reconnects() const {
  uint64_t n = 0;
  for (const auto& c : s_->clients) n += c->rehandshakes();
  return n;
}

}  // namespace ndflow::ps
