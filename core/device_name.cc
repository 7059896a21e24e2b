#include "core/device_name.h"

#include <atomic>
#include <cstdlib>

namespace ndflow {

namespace {

[[noreturn]] void bad_name(const std::string& text, const std::string& why) {
  fail<ValueError>("bad device name '", text, "': ", why,
                   "; valid names look like cpu:0, cpu, worker:1/cpu:0, /worker:1/cpu:0, /worker:1");
}

// "N" of "kind:N"; -1 when there is no ":N".
int parse_index(const std::string& text, const std::string& part, size_t colon) {
  if (colon == std::string::npos) return -1;
  std::string num = part.substr(colon + 1);
  if (num.empty() || num.size() > 6 || num.find_first_not_of("0123456789") != std::string::npos)
    bad_name(text, "'" + part + "' needs a number after ':'");
  return std::stoi(num);
}

std::atomic<int> g_num_cpu_devices{0};  // 0: not read from the environment yet

thread_local std::string t_scope;

}  // namespace

DeviceName DeviceName::parse(const std::string& text) {
  DeviceName d;
  if (text.size() > 256) bad_name(text.substr(0, 64) + "...", "it is longer than 256 bytes");
  size_t pos = text.starts_with('/') ? 1 : 0;
  while (pos < text.size()) {
    size_t slash = text.find('/', pos);
    std::string part = text.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    pos = slash == std::string::npos ? text.size() : slash + 1;
    if (part.empty()) bad_name(text, "it has an empty part");
    size_t colon = part.find(':');
    std::string kind = part.substr(0, colon);
    int n = parse_index(text, part, colon);
    if (kind == "worker") {
      if (d.worker >= 0) bad_name(text, "it names the worker twice");
      if (n < 0) bad_name(text, "'worker' needs a number, e.g. worker:1");
      if (d.has_type) bad_name(text, "the worker comes before the device");
      d.worker = n;
    } else if (kind == "cpu" || kind == "gpu" || kind == "cuda") {
      if (d.has_type) bad_name(text, "it names the device twice");
      d.has_type = true;
      d.type = kind == "cpu" ? DeviceType::CPU : DeviceType::CUDA;
      d.index = n;
    } else {
      bad_name(text, "'" + part + "' is neither worker:N nor cpu/gpu[:N]");
    }
  }
  return d;
}

bool DeviceName::matches(const DeviceName& d) const {
  return (worker < 0 || worker == d.worker) && (!has_type || type == d.type) && (index < 0 || index == d.index);
}

std::string DeviceName::str() const {
  std::string s;
  if (worker >= 0) s = "/worker:" + std::to_string(worker);
  if (has_type) {
    if (!s.empty()) s += '/';
    s += type == DeviceType::CPU ? "cpu" : "gpu";
    if (index >= 0) s += ":" + std::to_string(index);
  }
  return s;
}

int num_cpu_devices() {
  int n = g_num_cpu_devices.load();
  if (n > 0) return n;
  n = 1;
  if (const char* env = std::getenv("NDFLOW_NUM_CPU_DEVICES"); env && *env) {
    std::string v = env;
    bool ok = v.size() <= 2 && v.find_first_not_of("0123456789") == std::string::npos && std::stoi(v) >= 1 &&
              std::stoi(v) <= 64;
    NDF_CHECK(ok, ValueError, "NDFLOW_NUM_CPU_DEVICES='", v, "' is not a number from 1 to 64");
    n = std::stoi(v);
  }
  g_num_cpu_devices.store(n);
  return n;
}

void set_num_cpu_devices(int n) {
  NDF_CHECK(n >= 1 && n <= 64, ValueError, "set_num_cpu_devices(", n, "): the count must be from 1 to 64");
  g_num_cpu_devices.store(n);
}

std::vector<DeviceName> cluster_devices(int num_workers) {
  NDF_CHECK(num_workers >= 1, ValueError, "cluster_devices: need at least one worker, got ", num_workers);
  std::vector<DeviceName> out;
  int per = num_cpu_devices();
  for (int w = 0; w < num_workers; ++w)
    for (int k = 0; k < per; ++k) out.push_back(DeviceName::full(w, DeviceType::CPU, k));
  return out;
}

DeviceScope::DeviceScope(const std::string& request) : previous_(t_scope) {
  if (!request.empty()) DeviceName::parse(request);  // validate now, where the user wrote it
  t_scope = request;
}

DeviceScope::~DeviceScope() { t_scope = previous_; }

const std::string& DeviceScope::current() { return t_scope; }

}  // namespace ndflow
