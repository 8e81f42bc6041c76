// The circuit breaker of a queue on one node: when too many handlings fail within a window,
// the queue stops claiming (its envelopes wait, durable and untouched) or runs its fallback
// handlers instead, for a pause; then one probe envelope decides whether it closes again.
// Shared by the queue's workers on the node; thread-safe. Times are passed in, so tests need no
// clock.
#pragma once

#include <array>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>

#include "depot/runtime/envelope.hpp"

namespace depot {

struct breaker_settings {
  /// Handlings within the window before the breaker may open.
  int minimum_handlings = 10;
  /// The share of failed handlings within the window that opens it.
  double failure_ratio = 0.5;
  /// How far back handlings count.
  std::chrono::milliseconds window{std::chrono::seconds{30}};
  /// How long it stays open before a probe.
  std::chrono::milliseconds pause{std::chrono::seconds{10}};
};

class circuit_breaker {
public:
  enum class state { closed, open, half_open };

  /// What the next claim of a worker may do.
  struct permit {
    enum class kind {
      claim,    ///< claim a batch, handle it as usual
      probe,    ///< half-open: claim one envelope; report it with record() or give it back
      fallback, ///< open, with fallback handlers: claim a batch, run the fallbacks
      none,     ///< open (or the probe is out): claim nothing
    } what = kind::claim;
  };

  /// A change of state, to log and show.
  struct transition {
    state to = state::closed;
    micros until = 0; ///< open: when the probe may go
    std::string reason;
  };

  explicit circuit_breaker(breaker_settings settings, bool has_fallback = false);

  /// What a worker may claim at `now`; may move open to half-open (and say so in `moved`).
  permit take(micros now, std::optional<transition>& moved);
  /// The probe found nothing to handle: another worker may probe.
  void give_back_probe();
  /// Records the handlings of one committed batch (a fallback batch's do not count). Returns
  /// the transition they cause, if any.
  std::optional<transition> record(int succeeded, int failed, micros now);

  [[nodiscard]] state current() const;
  [[nodiscard]] micros open_until() const;
  [[nodiscard]] const breaker_settings& settings() const { return settings_; }

private:
  static constexpr std::size_t buckets = 10; // the window in tenths

  void clear();
  std::optional<transition> open(micros now, std::string reason);

  breaker_settings settings_;
  bool has_fallback_;
  mutable std::mutex mutex_;
  state state_ = state::closed;
  micros open_until_ = 0;
  bool probe_out_ = false;
  struct bucket {
    micros start = 0;
    int succeeded = 0, failed = 0;
  };
  std::array<bucket, buckets> window_{};
};

[[nodiscard]] const char* to_string(circuit_breaker::state s);

} // namespace depot
