#pragma once
#include "dist/comm.hpp"

namespace dsgq::test {
extern const dist::Comm* g_world;  // set by mpi_main.cpp
inline const dist::Comm& world() { return *g_world; }
}  // namespace dsgq::test
