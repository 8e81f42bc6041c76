// Failure decisions: the step of an error policy that a failure falls on.
#include "depot/runtime/failure_policy.hpp"

#include <algorithm>
#include <memory>
#include <random>
#include <typeinfo>

#include "depot/runtime/error.hpp"
#include "depot/runtime/routing.hpp"

namespace depot {

namespace {

// What was thrown, as a dead-letter decision; bad input when retrying cannot help, which a
// depot::error says by its code (permanent_for_message).
failure_decision what_was_thrown(const std::exception_ptr& thrown) {
  try {
    std::rethrow_exception(thrown);
  } catch (const depot::error& x) {
    return {failure_action::dead_letter,        0,        {},
            detail::demangle(typeid(x).name()), x.what(), permanent_for_message(x.code())};
  } catch (const std::exception& x) {
    return {failure_action::dead_letter,        0,        {},
            detail::demangle(typeid(x).name()), x.what(), false};
  } catch (...) {
    return {failure_action::dead_letter, 0, {}, "unknown", "a non-standard exception", false};
  }
}

} // namespace

std::string describe(const std::exception_ptr& error) {
  auto d = what_was_thrown(error);
  return d.exception_type + ": " + d.reason;
}

error_policy default_error_policy(const failure_policy& policy) {
  error_policy chain;
  if (policy.max_attempts > 1)
    chain.retry_with_backoff(policy.max_attempts - 1, policy.retry_delay, policy.max_retry_delay,
                             4.0);
  chain.dead_letter();
  return chain;
}

namespace {

micros cooldown_of(const policy_step& step, int index) {
  using std::chrono::microseconds;
  if (!step.cooldowns.empty()) {
    auto i = std::min<std::size_t>(static_cast<std::size_t>(index), step.cooldowns.size() - 1);
    return std::chrono::duration_cast<microseconds>(step.cooldowns[i]).count();
  }
  auto cap = std::chrono::duration_cast<microseconds>(step.cap).count();
  auto base = static_cast<double>(std::chrono::duration_cast<microseconds>(step.first).count());
  for (int i = 0; i < index && base < static_cast<double>(cap); ++i)
    base *= step.factor;
  auto delay = std::min(static_cast<micros>(base), cap);
  thread_local std::mt19937 random{std::random_device{}()};
  return delay + std::uniform_int_distribution<micros>{0, delay / 4}(random);
}

} // namespace

failure_decision decide(const error_policy& chain, const envelope& e,
                        const std::exception_ptr& error) {
  auto d = what_was_thrown(error);
  auto failure = e.attempts + 1;
  const auto* step = d.bad_input ? nullptr : chain.step_of(failure);
  if (step == nullptr)
    return d; // dead-letter
  d.what = step->action;
  if (step->action == failure_action::retry_later) {
    // Which retry of this step this failure is: the failures before it that earlier steps cover.
    int before = 0;
    for (const auto& s : chain.steps()) {
      if (&s == step)
        break;
      before += s.times;
    }
    d.retry_at = now_micros() + cooldown_of(*step, failure - before - 1);
  }
  d.pause = step->pause;
  return d;
}

} // namespace depot
