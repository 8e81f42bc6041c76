// Unit tests of the default failure policy.
#include <doctest/doctest.h>

#include <stdexcept>

#include "depot/runtime/failure_policy.hpp"
#include "depot/runtime/message.hpp"
#include "depot/runtime/routing.hpp"

namespace {

template <class E>
std::exception_ptr thrown(E e) {
  return std::make_exception_ptr(std::move(e));
}

depot::envelope after_attempts(int attempts) {
  depot::envelope e;
  e.attempts = attempts;
  return e;
}

} // namespace

TEST_CASE("a handler exception is retried later with growing delays until max attempts") {
  depot::failure_policy policy{.max_attempts = 3, .retry_delay = std::chrono::milliseconds{100}};
  auto now = depot::now_micros();
  auto first = decide(policy, after_attempts(0), thrown(std::runtime_error{"boom"}));
  CHECK(first.what == depot::failure_decision::action::retry);
  CHECK(first.retry_at >= now + 100'000);
  CHECK(first.retry_at <= depot::now_micros() + 125'000);
  auto second = decide(policy, after_attempts(1), thrown(std::runtime_error{"boom"}));
  CHECK(second.what == depot::failure_decision::action::retry);
  CHECK(second.retry_at >= now + 400'000);
  auto last = decide(policy, after_attempts(2), thrown(std::runtime_error{"boom"}));
  CHECK(last.what == depot::failure_decision::action::dead_letter);
  CHECK(last.exception_type == "std::runtime_error");
  CHECK(last.reason == "boom");
}

TEST_CASE("retry delays never exceed the maximum") {
  depot::failure_policy policy{.max_attempts = 50,
                               .retry_delay = std::chrono::milliseconds{1000},
                               .max_retry_delay = std::chrono::milliseconds{5000}};
  auto d = decide(policy, after_attempts(20), thrown(std::runtime_error{"x"}));
  CHECK(d.what == depot::failure_decision::action::retry);
  CHECK(d.retry_at <= depot::now_micros() + 5'000'000 + 1'250'000);
}

TEST_CASE("undecodable bodies, unknown types and validation errors go to dead letters at once") {
  depot::failure_policy policy;
  auto bad = decide(policy, after_attempts(0), thrown(depot::decode_error{"missing field 'x'"}));
  CHECK(bad.what == depot::failure_decision::action::dead_letter);
  CHECK(bad.exception_type == "depot::decode_error");
  CHECK(bad.reason == "missing field 'x'");
  auto unknown = decide(policy, after_attempts(0), thrown(depot::unknown_message_type{"nope"}));
  CHECK(unknown.what == depot::failure_decision::action::dead_letter);
  CHECK(unknown.exception_type == "depot::unknown_message_type");
  auto invalid = decide(policy, after_attempts(0), thrown(depot::validation_error{"negative"}));
  CHECK(invalid.what == depot::failure_decision::action::dead_letter);
  CHECK(invalid.exception_type == "depot::validation_error");
  CHECK(invalid.reason == "negative");
}

TEST_CASE("a non-standard exception is named as such") {
  depot::failure_policy policy{.max_attempts = 1};
  auto d = decide(policy, after_attempts(0), std::make_exception_ptr(42));
  CHECK(d.what == depot::failure_decision::action::dead_letter);
  CHECK(d.exception_type == "unknown");
}
