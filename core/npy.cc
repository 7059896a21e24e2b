// NumPy .npy reader and writer. The format: "\x93NUMPY", major and minor
// version bytes, a little-endian header length (u16 in 1.0, u32 in 2.0/3.0),
// a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ending in '\n', then the raw elements.
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
#include "core/npy.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>

namespace ndflow {

namespace {

constexpr char kNpyMagic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
constexpr size_t kMaxNpyRank = 64;

template <typename... A>
[[noreturn]] void bad(const std::string& source, const A&... a) {
  std::string msg = str_cat("[npy] ", source, ": ", a...);
  for (char& c : msg)  // quoted bytes of a bad file must not break the line
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  throw FormatError(msg);
}

struct NpyType {
  const char* descr;  // as written (little-endian or byte-order-free)
  DType dtype;
};
constexpr NpyType kTypes[] = {{"<f4", DType::f32}, {"<f8", DType::f64}, {"<f2", DType::f16}, {"<i4", DType::i32},
                              {"<i8", DType::i64}, {"|u1", DType::u8},  {"|b1", DType::boolean}};

// A cursor over the header's dict literal; accepts exactly what NumPy
// writes (and the harmless variations: either quote, optional trailing comma).
class Literal {
 public:
  Literal(const std::string& source, std::string_view s) : source_(source), s_(s) {}

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    skip_ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c, const char* what) {
    if (!eat(c)) fail("expected ", what);
  }
  std::string string() {
    skip_ws();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) fail("expected a quoted string");
    char q = s_[i_++];
    size_t end = s_.find(q, i_);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string out(s_.substr(i_, end - i_));
    if (out.find('\\') != std::string::npos) fail("escapes in strings are not supported");
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_ws();
    for (auto [word, value] : {std::pair{"True", true}, std::pair{"False", false}})
      if (s_.substr(i_).starts_with(word)) {
        i_ += std::strlen(word);
        return value;
      }
    fail("expected True or False");
  }
  int64_t integer() {
    skip_ws();
    if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') fail("expected a non-negative integer");
    int64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s_[i_] - '0', &v))
        fail("a dimension overflows int64");
      ++i_;
    }
    return v;
  }
  bool at_end() {
    skip_ws();
    return i_ == s_.size();
  }
  template <typename... A>
  [[noreturn]] void fail(const A&... a) const {
    bad(source_, "header: ", a..., " at character ", i_);
  }

 private:
  const std::string& source_;
  std::string_view s_;
  size_t i_ = 0;
};

struct Header {
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
};

Header parse_dict(const std::string& source, std::string_view text) {
  Literal lit(source, text);
  Header h;
  bool seen[3] = {false, false, false};
  lit.expect('{', "'{'");
  while (!lit.eat('}')) {
    std::string key = lit.string();
    lit.expect(':', "':'");
    int k = key == "descr" ? 0 : key == "fortran_order" ? 1 : key == "shape" ? 2 : -1;
    if (k < 0) lit.fail("unknown key '", key, "' (expected descr, fortran_order, shape)");
    if (seen[k]) lit.fail("duplicate key '", key, "'");
    seen[k] = true;
    if (k == 0) {
      h.descr = lit.string();
    } else if (k == 1) {
      h.fortran = lit.boolean();
    } else {
      lit.expect('(', "'(' starting the shape tuple");
      while (!lit.eat(')')) {
        if (h.shape.size() == kMaxNpyRank) lit.fail("rank exceeds ", kMaxNpyRank);
        h.shape.push_back(lit.integer());
        if (!lit.eat(',')) {
          lit.expect(')', "',' or ')' in the shape tuple");
          break;
        }
      }
    }
    if (!lit.eat(',')) {
      lit.expect('}', "',' or '}'");
      break;
    }
  }
  if (!lit.at_end()) lit.fail("unexpected text after the dict");
  for (int k = 0; k < 3; ++k)
    if (!seen[k]) bad(source, "header: missing key '", k == 0 ? "descr" : k == 1 ? "fortran_order" : "shape", "'");
  return h;
}

// The dtype of a descr, and whether its bytes need swapping.
std::pair<DType, bool> dtype_of_descr(const std::string& source, const std::string& descr) {
  if (descr.size() == 3 && std::strchr("<>|=", descr[0])) {
    for (const NpyType& t : kTypes) {
      if (descr.substr(1) != t.descr + 1) continue;
      bool single = dtype_size(t.dtype) == 1;
      if (descr[0] == '|' && !single) break;  // multi-byte types need a byte order
      return {t.dtype, descr[0] == '>' && !single};
    }
  }
  std::string valid;
  for (const NpyType& t : kTypes) valid += (valid.empty() ? "" : ", ") + std::string(t.descr);
  bad(source, "unsupported dtype '", descr, "' (supported: ", valid, ", or big-endian '>' forms)");
}

const char* descr_of(DType t) {
  for (const NpyType& n : kTypes)
    if (n.dtype == t) return n.descr;
  fail<TypeError>("[npy] dtype ", dtype_name(t), " has no NumPy equivalent; convert it (e.g. .to(DType::f32)) first");
}

}  // namespace

Tensor parse_npy(std::span<const uint8_t> bytes, const std::string& source) {
  const size_t size = bytes.size();
  if (size < 10 || std::memcmp(bytes.data(), kNpyMagic, 6) != 0) bad(source, "not a .npy file (bad magic)");
  uint8_t major = bytes[6], minor = bytes[7];
  if (major < 1 || major > 3 || minor != 0)
    bad(source, "unsupported .npy version ", int(major), ".", int(minor), " (reads 1.0, 2.0, 3.0)");
  size_t prefix = major == 1 ? 10 : 12;
  if (size < prefix) bad(source, "file is too short (", size, " bytes)");
  uint64_t header_len = bytes[8] | (uint64_t{bytes[9]} << 8);
  if (major > 1) header_len |= (uint64_t{bytes[10]} << 16) | (uint64_t{bytes[11]} << 24);
  if (header_len > size - prefix)
    bad(source, "header length ", header_len, " runs past the end of the file (", size, " bytes)");
  std::string_view text(reinterpret_cast<const char*>(bytes.data()) + prefix, header_len);
  Header h = parse_dict(source, text);
  auto [dtype, swap] = dtype_of_descr(source, h.descr);
  int64_t numel = 1;
  uint64_t nbytes = 0;
  for (int64_t d : h.shape)
    if (__builtin_mul_overflow(numel, d, &numel)) bad(source, "shape ", shape_str(h.shape), " overflows int64");
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(dtype), &nbytes))
    bad(source, "shape ", shape_str(h.shape), " overflows 64 bits in bytes");
  uint64_t have = size - prefix - header_len;
  if (have != nbytes)
    bad(source, "shape ", shape_str(h.shape), " of ", h.descr, " needs ", nbytes, " data bytes but the file has ",
        have, have < nbytes ? " (truncated)" : " (trailing bytes)");
  const uint8_t* src = bytes.data() + prefix + header_len;
  if (dtype == DType::boolean)
    for (uint64_t k = 0; k < nbytes; ++k)
      if (src[k] > 1) bad(source, "bool element ", k, " holds the byte ", int(src[k]), "; bool elements must be 0 or 1");
  // Fortran order is C order of the reversed shape, transposed back.
  Shape shape(h.shape);
  if (h.fortran) std::reverse(shape.begin(), shape.end());
  Tensor t = Tensor::empty(shape, dtype);
  if (nbytes) std::memcpy(t.raw_data(), src, nbytes);
  if (swap) {
    size_t w = dtype_size(dtype);
    auto* p = static_cast<uint8_t*>(t.raw_data());
    for (uint64_t k = 0; k < nbytes; k += w) std::reverse(p + k, p + k + w);
  }
  if (h.fortran && shape.size() > 1) {
    std::vector<int64_t> axes(shape.size());
    for (size_t k = 0; k < axes.size(); ++k) axes[k] = static_cast<int64_t>(axes.size() - 1 - k);
    t = t.permute(axes).contiguous();
  }
  return t;
}

Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad(path, "cannot open: ", std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) bad(path, "cannot read: ", std::strerror(errno));
  return parse_npy(bytes, path);
}

std::string serialize_npy(const Tensor& t) {
  NDF_CHECK(t.defined() && !t.is_symbolic(), ValueError, "[npy] only tensors with data can be written");
  NDF_CHECK(t.device().is_cpu(), ValueError, "[npy] the tensor is on ", t.device().str(), "; only CPU tensors can be written");
  const char* descr = descr_of(t.dtype());
  Tensor c = t.is_contiguous() ? t : t.contiguous();
  std::string dict = str_cat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (");
  for (size_t k = 0; k < c.shape().size(); ++k) dict += str_cat(k ? ", " : "", c.shape()[k]);
  dict += c.shape().size() == 1 ? ",), }" : "), }";
  // Pad so the data starts 64-byte aligned, as NumPy does; version 2.0 only
  // when the header outgrows a u16 length.
  auto padded = [&](size_t prefix) { return (prefix + dict.size() + 1 + 63) / 64 * 64; };
  size_t prefix = padded(10) - 10 <= 65535 ? 10 : 12;
  size_t total = padded(prefix);
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  std::string out(kNpyMagic, 6);
  out += static_cast<char>(prefix == 10 ? 1 : 2);
  out += '\0';
  for (size_t k = 0; k < prefix - 8; ++k) out += static_cast<char>((dict.size() >> (8 * k)) & 0xff);
  out += dict;
  out.append(static_cast<const char*>(c.raw_data()), c.nbytes());
  return out;
}

void write_npy(const std::string& path, const Tensor& t) {
  std::string bytes = serialize_npy(t);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  NDF_CHECK(out, ValueError, "[npy] cannot create '", path, "': ", std::strerror(errno));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  NDF_CHECK(out, ValueError, "[npy] cannot write '", path, "': ", std::strerror(errno));
}

}  // namespace ndflow
