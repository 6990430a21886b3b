// Translation unit that owns the precompiled torch header (see src/CMakeLists.txt).
