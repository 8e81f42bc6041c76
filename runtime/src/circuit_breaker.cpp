// The circuit breaker's state machine: closed, open, half-open.
#include "depot/runtime/circuit_breaker.hpp"

#include <fmt/format.h>

namespace depot {

const char* to_string(circuit_breaker::state s) {
  switch (s) {
    case circuit_breaker::state::closed: return "closed";
    case circuit_breaker::state::open: return "open";
    case circuit_breaker::state::half_open: return "half-open";
  }
  return "closed";
}

circuit_breaker::circuit_breaker(breaker_settings settings, bool has_fallback)
  : settings_(settings), has_fallback_(has_fallback) {}

circuit_breaker::permit circuit_breaker::take(micros now, std::optional<transition>& moved) {
  std::lock_guard guard{mutex_};
  using kind = permit::kind;
  if (state_ == state::open && now >= open_until_) {
    state_ = state::half_open;
    probe_out_ = false;
    moved = transition{state::half_open, 0, "pause over: one envelope probes"};
  }
  switch (state_) {
    case state::closed: return {kind::claim};
    case state::open: return {has_fallback_ ? kind::fallback : kind::none};
    case state::half_open:
      if (probe_out_)
        return {has_fallback_ ? kind::fallback : kind::none};
      probe_out_ = true;
      return {kind::probe};
  }
  return {kind::claim};
}

void circuit_breaker::give_back_probe() {
  std::lock_guard guard{mutex_};
  probe_out_ = false;
}

std::optional<circuit_breaker::transition> circuit_breaker::record(int succeeded, int failed,
                                                                   micros now) {
  std::lock_guard guard{mutex_};
  if (state_ == state::half_open) {
    probe_out_ = false;
    if (failed > 0)
      return open(now, "the probe failed");
    if (succeeded > 0) {
      state_ = state::closed;
      clear();
      return transition{state::closed, 0, "the probe succeeded"};
    }
    return std::nullopt;
  }
  if (state_ != state::closed)
    return std::nullopt; // late results of batches claimed before it opened
  auto width = std::chrono::duration_cast<std::chrono::microseconds>(settings_.window).count() /
               static_cast<micros>(buckets);
  width = std::max<micros>(width, 1);
  auto start = now - now % width;
  auto& b = window_[static_cast<std::size_t>(now / width) % buckets];
  if (b.start != start)
    b = bucket{start, 0, 0};
  b.succeeded += succeeded;
  b.failed += failed;
  int total = 0, failures = 0;
  for (const auto& x : window_) {
    if (x.start + width * static_cast<micros>(buckets) <= now)
      continue; // older than the window
    total += x.succeeded + x.failed;
    failures += x.failed;
  }
  if (total >= settings_.minimum_handlings && total > 0 &&
      static_cast<double>(failures) >= settings_.failure_ratio * static_cast<double>(total))
    return open(now, fmt::format("{} of {} handlings failed within {}", failures, total,
                                 settings_.window.count() >= 1000
                                   ? fmt::format("{}s", settings_.window.count() / 1000)
                                   : fmt::format("{}ms", settings_.window.count())));
  return std::nullopt;
}

std::optional<circuit_breaker::transition> circuit_breaker::open(micros now, std::string reason) {
  state_ = state::open;
  open_until_ =
    now + std::chrono::duration_cast<std::chrono::microseconds>(settings_.pause).count();
  probe_out_ = false;
  clear();
  return transition{state::open, open_until_, std::move(reason)};
}

void circuit_breaker::clear() {
  window_ = {};
}

circuit_breaker::state circuit_breaker::current() const {
  std::lock_guard guard{mutex_};
  return state_;
}

micros circuit_breaker::open_until() const {
  std::lock_guard guard{mutex_};
  return open_until_;
}

} // namespace depot
