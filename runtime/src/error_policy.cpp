// Error policy chains and the rules that pick one per exception type.
#include "depot/runtime/error_policy.hpp"

#include <cxxabi.h>
#include <memory>
#include <stdexcept>

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace depot {

std::string detail::demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out{abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free};
  return status == 0 && out ? out.get() : name;
}

const char* to_string(failure_action action) {
  switch (action) {
    case failure_action::retry_inline: return "retry";
    case failure_action::retry_later: return "retry later";
    case failure_action::requeue: return "requeue";
    case failure_action::pause_queue: return "pause the queue";
    case failure_action::dead_letter: return "dead-letter";
    case failure_action::discard: return "discard";
  }
  return "dead-letter";
}

namespace {

void require_times(int n, const char* what) {
  if (n < 1)
    throw std::invalid_argument{fmt::format("{} takes a count of at least 1, not {}", what, n)};
}

policy_step step(failure_action action, int times = 1) {
  policy_step s;
  s.action = action;
  s.times = times;
  return s;
}

} // namespace

error_policy& error_policy::add(policy_step step) {
  if (!steps_.empty()) {
    auto last = steps_.back().action;
    if (last == failure_action::dead_letter || last == failure_action::discard)
      throw std::logic_error{
        "an error policy ends with dead_letter() or discard(): nothing "
        "follows them"};
  }
  steps_.push_back(std::move(step));
  return *this;
}

error_policy& error_policy::retry_times(int n) {
  require_times(n, "retry_times");
  return add(step(failure_action::retry_inline, n));
}

error_policy& error_policy::add_cooldowns(std::vector<std::chrono::milliseconds> cooldowns) {
  if (cooldowns.empty())
    throw std::invalid_argument{"retry_with_cooldown takes at least one cooldown"};
  auto s = step(failure_action::retry_later, static_cast<int>(cooldowns.size()));
  s.cooldowns = std::move(cooldowns);
  return add(std::move(s));
}

error_policy& error_policy::retry_with_backoff(int n, std::chrono::milliseconds first,
                                               std::chrono::milliseconds cap, double factor) {
  require_times(n, "retry_with_backoff");
  if (factor < 1.0 || cap < first)
    throw std::invalid_argument{
      "retry_with_backoff takes a factor of at least 1 and a cap not "
      "below the first cooldown"};
  auto s = step(failure_action::retry_later, n);
  s.first = first;
  s.cap = cap;
  s.factor = factor;
  return add(std::move(s));
}

error_policy& error_policy::requeue(int n) {
  require_times(n, "requeue");
  return add(step(failure_action::requeue, n));
}

error_policy& error_policy::pause_queue(std::chrono::milliseconds duration, int n) {
  require_times(n, "pause_queue");
  auto s = step(failure_action::pause_queue, n);
  s.pause = duration;
  return add(std::move(s));
}

void error_policy::dead_letter() {
  add(step(failure_action::dead_letter));
}

void error_policy::discard() {
  add(step(failure_action::discard));
}

const policy_step* error_policy::step_of(int k) const {
  int covered = 0;
  for (const auto& s : steps_) {
    // A terminal step covers every failure that reaches it.
    if (s.action == failure_action::dead_letter || s.action == failure_action::discard)
      return &s;
    covered += s.times;
    if (k <= covered)
      return &s;
  }
  return nullptr;
}

std::string error_policy::describe() const {
  std::vector<std::string> parts;
  for (const auto& s : steps_) {
    switch (s.action) {
      case failure_action::retry_inline:
        parts.push_back(fmt::format("retry {} time(s)", s.times));
        break;
      case failure_action::retry_later:
        if (!s.cooldowns.empty())
          parts.push_back(fmt::format("retry after {}", fmt::join(s.cooldowns, ", ")));
        else
          parts.push_back(fmt::format("retry {} time(s) after {} x{} (at most {})", s.times,
                                      s.first, s.factor, s.cap));
        break;
      case failure_action::requeue:
        parts.push_back(fmt::format("requeue {} time(s)", s.times));
        break;
      case failure_action::pause_queue:
        parts.push_back(fmt::format("pause the queue for {} ({} time(s))", s.pause, s.times));
        break;
      case failure_action::dead_letter: parts.emplace_back("dead-letter"); break;
      case failure_action::discard: parts.emplace_back("discard"); break;
    }
  }
  if (steps_.empty() || (steps_.back().action != failure_action::dead_letter &&
                         steps_.back().action != failure_action::discard))
    parts.emplace_back("dead-letter");
  return fmt::format("{}", fmt::join(parts, ", then "));
}

error_policy& error_policies::on_any_exception() {
  return add("any exception", [](const std::exception_ptr&) { return true; });
}

error_policy& error_policies::add(std::string exception_type,
                                  std::function<bool(const std::exception_ptr&)> matches) {
  return rules_.emplace_back(rule{std::move(exception_type), std::move(matches), {}}).policy;
}

const error_policy* error_policies::match(const std::exception_ptr& thrown) const {
  for (const auto& r : rules_)
    if (r.matches(thrown))
      return &r.policy;
  return nullptr;
}

std::vector<std::string> error_policies::describe() const {
  std::vector<std::string> lines;
  for (const auto& r : rules_)
    lines.push_back(fmt::format("{}: {}", r.exception_type, r.policy.describe()));
  return lines;
}

} // namespace depot
