#include "core/allocator.hpp"

#include <malloc.h>

#include <climits>
#include <cstdlib>

namespace dsgq {

bool tune_allocator() {
  const char* opt_out = std::getenv("DSGQ_GLIBC_DEFAULT_MALLOC");
  if (opt_out && opt_out[0] == '1') return false;
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
  return true;
}

}  // namespace dsgq
