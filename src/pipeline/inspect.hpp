#pragma once
// `dsgq inspect FILE`: a human description of a checkpoint (.pt/.pth/.th) or a result record (.json).
#include <string>

namespace dsgq::pipeline {

// Local. Throws InputError naming the file when it cannot be read or its type is not recognised.
std::string inspect_file(const std::string& path);

}  // namespace dsgq::pipeline
