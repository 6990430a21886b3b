// src/core/timer.cpp: duration formatting.
#include <gtest/gtest.h>

#include "core/timer.hpp"

using namespace dsgq;

TEST(Timer, FormatsDurations) {
  EXPECT_EQ(format_duration(0), "00:00");
  EXPECT_EQ(format_duration(75), "01:15");
  EXPECT_EQ(format_duration(3725), "01:02:05");
}
