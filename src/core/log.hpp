#pragma once
// Rank-prefixed logging: "[rank r/n] message". Whole lines on stderr, no carriage returns (Slurm logs are files).
// log_* print on every rank; log_*0 print on rank 0 only. Thread-safe per line.
#include <cstdarg>

namespace dsgq {

// Called once after MPI is up; before that the prefix is "[rank ?/?]".
void set_log_rank(int rank, int world);
int log_rank();

void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info0(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn0(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace dsgq
