#pragma once
// glibc's malloc returns freed tensor buffers to the OS (mmap/trim) and page-faults them back in on the next
// forward pass, which made LibTorch from C++ up to 2x slower than from Python here. tune_allocator() keeps them
// (M_MMAP_MAX = 0, M_TRIM_THRESHOLD = INT_MAX). Call first thing in main. DSGQ_GLIBC_DEFAULT_MALLOC=1 opts out
// (bench/eval measures both).
namespace dsgq {

// Returns true when the tuning was applied.
bool tune_allocator();

}  // namespace dsgq
