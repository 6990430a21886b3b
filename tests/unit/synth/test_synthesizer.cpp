// src/synth/synthesizer.cpp: a diverged loss names the batch, the iteration and the term.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/error.hpp"
#include "synth/synthesizer.hpp"

using namespace dsgq;
using namespace dsgq::synth;

TEST(Synthesizer, NonFiniteLossNamesBatchIterationAndTerm) {
  LossValue v;
  v.terms = {{"bn", 1.0}, {"input", std::nan("")}, {"ce", INFINITY}};
  try {
    check_finite(v, "synth k", 3, 17);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "synth k: the loss diverged at batch 3, iteration 17: term 'input' is nan; expected a finite value "
              "(lower [synth] lr?)");
  }
  v.terms = {{"bn", 1.0}};
  EXPECT_NO_THROW(check_finite(v, "synth k", 0, 0));
}
