#pragma once
#include "mpi/comm.hpp"

namespace dsgq::test {
extern const mpi::Comm* g_world;  // set by mpi_main.cpp
inline const mpi::Comm& world() { return *g_world; }
}  // namespace dsgq::test
