// Rules and JSON access shared by the .ndf writer and reader.
#include <array>
#include <limits>
#include <unordered_set>
#include <vector>

#include "core/format_internal.h"
#include "core/device_name.h"

namespace ndflow::ndf {

namespace {

constexpr std::array<DType, kNumDTypes> kAllDTypes = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                                      DType::i32, DType::i64, DType::u8,  DType::boolean};
constexpr std::array<std::pair<AttrType, std::string_view>, 8> kAttrKeys = {{
    {AttrType::Int, "int"},
    {AttrType::Float, "float"},
    {AttrType::Bool, "bool"},
    {AttrType::String, "string"},
    {AttrType::Ints, "ints"},
    {AttrType::Floats, "floats"},
    {AttrType::DType, "dtype"},
    {AttrType::Tensor, "tensor"},
}};

}  // namespace

std::string one_line(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

std::string utf8_problem(std::string_view s) {
  // RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size()) return str_cat("invalid UTF-8 at byte ", i);
    uint32_t cp = len == 1 ? b : b & (0x7fu >> len);
    for (size_t k = 1; k < len; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if ((c >> 6) != 0x2) return str_cat("invalid UTF-8 at byte ", i + k);
      cp = (cp << 6) | (c & 0x3fu);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return str_cat("invalid UTF-8 at byte ", i);
    i += len;
  }
  return "";
}

std::string name_problem(std::string_view name) {
  if (name.empty()) return "is empty";
  if (name.size() > kMaxNameBytes) return str_cat("is ", name.size(), " bytes long (at most ", kMaxNameBytes, ")");
  for (size_t i = 0; i < name.size(); ++i) {
    auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) return str_cat("contains the control character 0x", std::hex, int(c), std::dec,
                                              " at byte ", i);
  }
  std::string u = utf8_problem(name);
  return u.empty() ? "" : "has " + u;
}

std::string device_problem(std::string_view device) {
  if (device.empty()) return "";
  if (device.size() > 256) return "is longer than 256 bytes";
  try {
    DeviceName::parse(std::string(device));
  } catch (const Error&) {
    return "is not a device name (expected e.g. cpu:0, gpu:1, /worker:2/cpu:0)";
  }
  return "";
}

std::optional<DType> dtype_by_name(std::string_view name) {
  for (DType t : kAllDTypes)
    if (dtype_name(t) == name) return t;
  return std::nullopt;
}

std::string valid_dtype_names() {
  std::string s;
  for (DType t : kAllDTypes) s += (s.empty() ? "" : ", ") + std::string(dtype_name(t));
  return s;
}

std::string_view attr_type_key(AttrType t) {
  for (auto& [type, key] : kAttrKeys)
    if (type == t) return key;
  return "?";
}

std::optional<AttrType> attr_type_by_key(std::string_view key) {
  for (auto& [type, k] : kAttrKeys)
    if (k == key) return type;
  return std::nullopt;
}

std::optional<int64_t> checked_numel(std::span<const int64_t> shape) {
  int64_t nonzero = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d == 0) {
      empty = true;
      continue;
    }
    if (__builtin_mul_overflow(nonzero, d, &nonzero)) return std::nullopt;
  }
  return empty ? 0 : nonzero;
}

std::string brief(const Json& j) {
  std::string s = j.dump();
  if (s.size() > 48) s = s.substr(0, 45) + "...";
  return std::string(j.type_name()) + " " + s;
}

std::optional<int64_t> as_int64(const Json& j) {
  if (j.is_number_unsigned()) {
    auto u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (j.is_number_integer()) return j.get<int64_t>();
  return std::nullopt;
}

Json parse_header(const std::string& source, const char* text, size_t size) {
  // nlohmann keeps the last of duplicate keys; another reader might keep the
  // first, so a duplicate is an ambiguity we refuse. The depth limit keeps
  // pathological nesting away from every recursive consumer of the JSON.
  std::vector<std::unordered_set<std::string>> keys;  // of each open object
  auto check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kMaxJsonDepth) bad(source, "header: JSON nested deeper than ", kMaxJsonDepth, " levels");
    switch (event) {
      case Json::parse_event_t::object_start: keys.emplace_back(); break;
      case Json::parse_event_t::object_end: keys.pop_back(); break;
      case Json::parse_event_t::key: {
        const auto& k = parsed.get_ref<const std::string&>();
        if (!keys.back().insert(k).second) bad(source, "header: duplicate key '", k, "' in one JSON object");
        break;
      }
      default: break;
    }
    return true;
  };
  try {
    return Json::parse(text, text + size, check, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const Json::exception& e) {
    bad(source, "header is not valid JSON: ", e.what());
  }
}

// ------------------------------------------------------------------ Fields

Fields::Fields(const std::string& source, std::string where, const Json& obj,
               std::initializer_list<std::string_view> allowed)
    : source_(source), where_(std::move(where)), obj_(obj) {
  if (!obj.is_object()) fail("must be a JSON object, got ", brief(obj));
  for (auto& [k, v] : obj.items()) {
    bool known = false;
    for (auto a : allowed) known |= a == k;
    if (!known) {
      std::string valid;
      for (auto a : allowed) valid += (valid.empty() ? "" : ", ") + std::string(a);
      fail("unknown field '", k, "' (valid: ", valid, ")");
    }
  }
}

const Json* Fields::optional(const char* key) const {
  auto it = obj_.find(key);
  return it == obj_.end() ? nullptr : &*it;
}

const Json& Fields::required(const char* key) const {
  const Json* j = optional(key);
  if (!j) fail("missing required field '", key, "'");
  return *j;
}

std::string Fields::string(const char* key) const {
  const Json& j = required(key);
  if (!j.is_string()) fail("field '", key, "' must be a string, got ", brief(j));
  return j.get<std::string>();
}

int64_t Fields::int64(const char* key) const {
  const Json& j = required(key);
  auto v = as_int64(j);
  if (!v) fail("field '", key, "' must be an integer in the int64 range, got ", brief(j));
  return *v;
}

uint64_t Fields::uint64(const char* key) const {
  const Json& j = required(key);
  if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0))
    fail("field '", key, "' must be a non-negative integer, got ", brief(j));
  return j.get<uint64_t>();
}

const Json& Fields::array(const char* key) const {
  const Json& j = required(key);
  if (!j.is_array()) fail("field '", key, "' must be an array, got ", brief(j));
  return j;
}

const Json& Fields::object(const char* key) const {
  const Json& j = required(key);
  if (!j.is_object()) fail("field '", key, "' must be an object, got ", brief(j));
  return j;
}

}  // namespace ndflow::ndf
