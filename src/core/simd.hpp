#pragma once
// Element-wise kernels compiled for AVX-512 and AVX2 besides the baseline x86-64, the variant chosen once at run
// time by what the CPU supports. (GCC's target_clones with "arch=skylake-avx512" dispatches on the CPU model and
// takes the AVX2 variant on AMD's AVX-512 CPUs; this dispatches on the features.) Header-only; no torch.
//
// DSGQ_SIMD_FUNCTION(ret, name, (params), (args), body) defines `ret name(params)` running `body args`, with body an
// always-inline function (or template instance) whose code is compiled into each variant. Bodies must give the same
// bits in every variant: element-wise IEEE arithmetic compiled with -ffp-contract=off (no FMA contraction; an
// explicit std::fma is one rounding in every variant: an instruction in the AVX2+FMA and AVX-512 ones, libm's fmaf
// in the baseline), reductions in a fixed lane order, integer arithmetic.

namespace dsgq::simd {

enum Level { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

// The best variant this CPU runs.
inline Level detected() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static const Level l = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
                             ? kAvx512
                         : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? kAvx2
                                                                                           : kBase;
  return l;
#else
  return kBase;
#endif
}

// A cap on the variant used (tests run every variant the CPU has and compare their bits); -1: none.
inline int& level_cap() {
  static int cap = -1;
  return cap;
}

inline Level level() {
  const Level d = detected();
  return level_cap() >= 0 && level_cap() < d ? static_cast<Level>(level_cap()) : d;
}

}  // namespace dsgq::simd

#define DSGQ_ALWAYS_INLINE inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DSGQ_SIMD_FUNCTION(ret, name, params, args, body)                                                      \
  __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl"))) ret name##_avx512 params { return body args; } \
  __attribute__((target("avx2,fma"))) ret name##_avx2 params { return body args; }                             \
  ret name##_base params { return body args; }                                                                 \
  ret name params {                                                                                            \
    switch (::dsgq::simd::level()) {                                                                           \
      case ::dsgq::simd::kAvx512:                                                                              \
        return name##_avx512 args;                                                                             \
      case ::dsgq::simd::kAvx2:                                                                                \
        return name##_avx2 args;                                                                               \
      default:                                                                                                 \
        return name##_base args;                                                                               \
    }                                                                                                          \
  }
#else
#define DSGQ_SIMD_FUNCTION(ret, name, params, args, body) \
  ret name params { return body args; }
#endif
