#pragma once
// File helpers: whole-file reads with clear errors, and atomic writes (temporary name in the same folder, fsync,
// rename) so that a reader never sees a half-written file and a crash never corrupts an existing one.
#include <string>

namespace dsgq {

// Throws InputError "<path>: cannot open for reading (No such file or directory)".
std::string read_file(const std::string& path);

// Creates parent folders; writes `<path>.tmp.<pid>`, fsyncs, renames over `path`. Throws InputError naming the
// folder when it cannot be created or written.
void atomic_write_file(const std::string& path, const std::string& content);

// Creates the folder and its parents; throws InputError naming it when impossible (e.g. not writable).
void make_dirs(const std::string& dir);

bool file_exists(const std::string& path);

}  // namespace dsgq
