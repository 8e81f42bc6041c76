// The circuit breaker's state machine, with times passed in.
#include <doctest/doctest.h>

#include "depot/runtime/circuit_breaker.hpp"

using namespace std::chrono_literals;
using breaker = depot::circuit_breaker;
using kind = breaker::permit::kind;

namespace {

constexpr depot::micros second = 1'000'000;

depot::breaker_settings settings() {
  return {.minimum_handlings = 4, .failure_ratio = 0.5, .window = 10s, .pause = 2s};
}

kind take(breaker& b, depot::micros now) {
  std::optional<breaker::transition> moved;
  return b.take(now, moved).what;
}

} // namespace

TEST_CASE("a breaker opens at the failure ratio once enough handlings are in the window") {
  breaker b{settings()};
  CHECK(!b.record(1, 2, 100 * second)); // 3 handlings: fewer than the minimum
  auto opened = b.record(1, 0, 101 * second);
  REQUIRE(opened);
  CHECK(opened->to == breaker::state::open);
  CHECK(opened->until == 103 * second);
  CHECK(opened->reason == "2 of 4 handlings failed within 10s");
  CHECK(take(b, 102 * second) == kind::none);
}

TEST_CASE("handlings older than the window do not count") {
  breaker b{settings()};
  CHECK(!b.record(0, 3, 100 * second));
  CHECK(!b.record(1, 0, 120 * second)); // the failures are 20 s old
  CHECK(!b.record(3, 0, 121 * second));
  CHECK(b.current() == breaker::state::closed);
}

TEST_CASE("after the pause one probe goes; its success closes, its failure opens again") {
  breaker b{settings()};
  REQUIRE(b.record(0, 4, 100 * second));
  std::optional<breaker::transition> moved;
  CHECK(b.take(102 * second, moved).what == kind::probe);
  REQUIRE(moved);
  CHECK(moved->to == breaker::state::half_open);
  CHECK(take(b, 102 * second) == kind::none); // the probe is out
  auto reopened = b.record(0, 1, 102 * second);
  REQUIRE(reopened);
  CHECK(reopened->to == breaker::state::open);
  CHECK(reopened->until == 104 * second);

  CHECK(take(b, 104 * second) == kind::probe);
  b.give_back_probe(); // the queue was empty
  CHECK(take(b, 104 * second) == kind::probe);
  auto closed = b.record(1, 0, 104 * second);
  REQUIRE(closed);
  CHECK(closed->to == breaker::state::closed);
  CHECK(take(b, 104 * second) == kind::claim);
  CHECK(!b.record(0, 3, 105 * second)); // a fresh window
}

TEST_CASE("with fallbacks an open breaker lets batches through to them") {
  breaker b{settings(), true};
  REQUIRE(b.record(0, 4, 100 * second));
  CHECK(take(b, 101 * second) == kind::fallback);
  CHECK(take(b, 102 * second) == kind::probe);
  CHECK(take(b, 102 * second) == kind::fallback);
}
