// Philox4x32-10, the counter-based random number generator of Salmon, Moraes,
// Dror and Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3" (SC 2011), and
// the stream layout every device's random kernels share. A draw is a pure
// function of (seed, counter), so any element can be computed on its own: the
// results do not depend on how work is split across threads or devices.
//
// Layout (the contract between ops/random.cc, which reserves counter space
// from a Generator, and the kernels of every device): a draw owns the 32-bit
// "words" offset, offset+1, ... of the stream keyed by the seed; word q is lane
// q % 4 of the Philox block with counter {lo(q/4), hi(q/4), 0, 0}. Element i
// of a draw uses words offset + i*w ... offset + i*w + w-1, w as given by
// words_per_element(). Header-only and free of the standard library beyond
// <cstdint>, so CUDA kernels can include it.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NDF_HOST_DEVICE __host__ __device__
#else
#define NDF_HOST_DEVICE
#endif

namespace ndflow::philox {

struct Block {
  uint32_t v[4];
};
struct Key {
  uint32_t v[2];
};

NDF_HOST_DEVICE inline Key key_from_seed(uint64_t seed) {
  return Key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
}

// The 10-round bijection of Random123's philox4x32 (multipliers and Weyl
// constants from its philox.h).
NDF_HOST_DEVICE inline Block philox4x32_10(Block ctr, Key key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kM0) * ctr.v[0];
    uint64_t p1 = static_cast<uint64_t>(kM1) * ctr.v[2];
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = Block{{hi1 ^ ctr.v[1] ^ key.v[0], lo1, hi0 ^ ctr.v[3] ^ key.v[1], lo0}};
    key.v[0] += kW0;
    key.v[1] += kW1;
  }
  return ctr;
}

// Words of one draw, read in order from any starting word. Each chunk of a
// parallel fill opens its own Stream at its first word.
class Stream {
 public:
  NDF_HOST_DEVICE Stream(uint64_t seed, uint64_t word) : key_(key_from_seed(seed)), word_(word) {
    if (word_ % 4 != 0) refill();
  }
  NDF_HOST_DEVICE uint32_t next() {
    if (word_ % 4 == 0) refill();
    return block_.v[word_++ % 4];
  }
  NDF_HOST_DEVICE uint64_t next64() {
    uint64_t hi = next();
    return hi << 32 | next();
  }

 private:
  NDF_HOST_DEVICE void refill() {
    uint64_t b = word_ / 4;
    block_ = philox4x32_10(Block{{static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), 0, 0}}, key_);
  }
  Key key_;
  uint64_t word_;
  Block block_{};
};

// Words for rejection retries of the element whose first word is `word`: a
// private sub-stream (counter words 2 and 3 nonzero) that the main stream,
// whose counter words 2 and 3 are always 0, never reaches.
class RetryStream {
 public:
  NDF_HOST_DEVICE RetryStream(uint64_t seed, uint64_t word)
      : key_(key_from_seed(seed)), ctr_{{static_cast<uint32_t>(word), static_cast<uint32_t>(word >> 32), 0,
                                          0x52455452u /* "RETR" */}} {}
  NDF_HOST_DEVICE uint32_t next() {
    if (lane_ == 4) {
      ++ctr_.v[2];
      block_ = philox4x32_10(ctr_, key_);
      lane_ = 0;
    }
    return block_.v[lane_++];
  }
  NDF_HOST_DEVICE uint64_t next64() {
    uint64_t hi = next();
    return hi << 32 | next();
  }

 private:
  Key key_;
  Block ctr_;
  Block block_{};
  int lane_ = 4;
};

// --------------------------------------------------------------- layout

enum class Dist : uint8_t {
  Uniform,    // 1 word (f32, f16, bf16) or 2 words (f64) per element
  Normal,     // Box–Muller: elements 2k, 2k+1 share one pair of uniforms
  Bernoulli,  // 1 word per element
  Randint,    // 1 word when the range fits 32 bits, else 2; retries are off-stream
};

NDF_HOST_DEVICE constexpr int words_per_element(Dist d, bool wide) {
  return d == Dist::Bernoulli ? 1 : (wide ? 2 : 1);
}
// Elements that are produced together (a Box–Muller pair); chunks of a
// parallel fill start at multiples of this.
NDF_HOST_DEVICE constexpr int64_t group_size(Dist d) { return d == Dist::Normal ? 2 : 1; }
// Words a draw of `n` elements consumes (what the Generator must reserve).
NDF_HOST_DEVICE constexpr uint64_t words_for(Dist d, bool wide, int64_t n) {
  uint64_t groups = static_cast<uint64_t>((n + group_size(d) - 1) / group_size(d));
  return groups * static_cast<uint64_t>(group_size(d)) * static_cast<uint64_t>(words_per_element(d, wide));
}
// Draws start on a Philox block (4 words), so the reservation is rounded up.
NDF_HOST_DEVICE constexpr uint64_t round_to_block(uint64_t words) { return (words + 3) / 4 * 4; }

// ------------------------------------------------------ word -> number

// [0, 1) from the top 24 bits: every value is an exact float.
NDF_HOST_DEVICE inline float uniform_f32(uint32_t x) { return static_cast<float>(x >> 8) * 0x1.0p-24f; }
// (0, 1]: safe to take the logarithm of.
NDF_HOST_DEVICE inline float uniform_pos_f32(uint32_t x) {
  return static_cast<float>((x >> 8) + 1) * 0x1.0p-24f;
}
// [0, 1) from the top 53 bits of a 64-bit word.
NDF_HOST_DEVICE inline double uniform_f64(uint64_t x) { return static_cast<double>(x >> 11) * 0x1.0p-53; }
NDF_HOST_DEVICE inline double uniform_pos_f64(uint64_t x) {
  return static_cast<double>((x >> 11) + 1) * 0x1.0p-53;
}

// An unbiased integer in [0, range), 1 <= range <= 2^32, from the first word
// `x` (Lemire, "Fast Random Integer Generation in an Interval", ACM TOMACS
// 2019): multiply-shift, rejecting the few low products that would bias it.
template <typename Retry>
NDF_HOST_DEVICE uint64_t bounded32(uint32_t x, uint64_t range, Retry& retry) {
  uint64_t m = static_cast<uint64_t>(x) * range;
  uint32_t low = static_cast<uint32_t>(m);
  if (low < range) {
    uint32_t threshold = static_cast<uint32_t>(((uint64_t(1) << 32) - range) % range);
    while (low < threshold) {
      m = static_cast<uint64_t>(retry.next()) * range;
      low = static_cast<uint32_t>(m);
    }
  }
  return m >> 32;
}

// The same for 1 <= range < 2^64, from a 64-bit word.
template <typename Retry>
NDF_HOST_DEVICE uint64_t bounded64(uint64_t x, uint64_t range, Retry& retry) {
  unsigned __int128 m = static_cast<unsigned __int128>(x) * range;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < range) {
    uint64_t threshold = (0 - range) % range;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(retry.next64()) * range;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

}  // namespace ndflow::philox
