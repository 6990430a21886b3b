#pragma once
// SHA-256 (FIPS 180-4), used for weight-file provenance and config hashes.
#include <cstddef>
#include <cstdint>
#include <string>

namespace dsgq {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  std::string hex_digest();  // finalizes; 64 lowercase hex characters

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const std::string& bytes);
// Streams the file; throws InputError naming the path when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace dsgq
