// The default failure policy: exponential backoff with jitter, then dead letters.
#include "depot/runtime/failure_policy.hpp"

#include <algorithm>
#include <cxxabi.h>
#include <memory>
#include <random>
#include <typeinfo>

#include "depot/runtime/error.hpp"
#include "depot/runtime/routing.hpp"

namespace depot {

namespace {

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out{abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free};
  return status == 0 && out ? out.get() : name;
}

// What was thrown, as a dead-letter decision; `permanent` when retrying cannot help, which a
// depot::error says by its code (permanent_for_message).
failure_decision what_was_thrown(const std::exception_ptr& thrown, bool& permanent) {
  permanent = false;
  try {
    std::rethrow_exception(thrown);
  } catch (const depot::error& x) {
    permanent = permanent_for_message(x.code());
    return {failure_decision::action::dead_letter, 0, demangle(typeid(x).name()), x.what()};
  } catch (const std::exception& x) {
    return {failure_decision::action::dead_letter, 0, demangle(typeid(x).name()), x.what()};
  } catch (...) {
    return {failure_decision::action::dead_letter, 0, "unknown", "a non-standard exception"};
  }
}

} // namespace

std::string describe(const std::exception_ptr& error) {
  bool permanent = false;
  auto d = what_was_thrown(error, permanent);
  return d.exception_type + ": " + d.reason;
}

failure_decision decide(const failure_policy& policy, const envelope& e, std::exception_ptr error) {
  bool permanent = false;
  auto d = what_was_thrown(error, permanent);
  auto attempts = e.attempts + 1;
  if (permanent || attempts >= policy.max_attempts)
    return d;
  thread_local std::mt19937 random{std::random_device{}()};
  auto base = std::chrono::duration_cast<std::chrono::microseconds>(policy.retry_delay).count();
  auto cap = std::chrono::duration_cast<std::chrono::microseconds>(policy.max_retry_delay).count();
  for (int i = 1; i < attempts && base < cap; ++i)
    base *= 4;
  base = std::min(base, cap);
  auto jitter = std::uniform_int_distribution<micros>{0, base / 4}(random);
  d.what = failure_decision::action::retry;
  d.retry_at = now_micros() + base + jitter;
  return d;
}

} // namespace depot
