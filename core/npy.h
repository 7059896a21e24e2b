// NumPy .npy files (format versions 1.0, 2.0 and 3.0), for ndflow-run's
// inputs and outputs and for tests. Reading trusts nothing, like the .ndf
// loader: a malformed file is a FormatError "[npy] <source>: ...".
//
//   Tensor x = read_npy("x.npy");       // f32, f64, f16, i32, i64, u8, bool
//   write_npy("y.npy", y);              // little-endian, C order, version 1.0
//
// Big-endian and Fortran-order files are converted on read. bf16 has no
// NumPy dtype: write_npy refuses it (cast to f32 first).
#pragma once

#include <span>
#include <string>

#include "core/format.h"

namespace ndflow {

NDF_EXPORT Tensor read_npy(const std::string& path);
NDF_EXPORT Tensor parse_npy(std::span<const uint8_t> bytes, const std::string& source = "<memory>");
NDF_EXPORT void write_npy(const std::string& path, const Tensor& t);
NDF_EXPORT std::string serialize_npy(const Tensor& t);

}  // namespace ndflow
