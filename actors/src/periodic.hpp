// Private: an actor behaviour that runs a tick now and then every interval, for the node's
// periodic actors (heartbeat, durability agent). Failures escape to the supervisor.
#pragma once

#include <chrono>

#include <caf/all.hpp>

#include "depot/actors/service.hpp"

namespace depot {

using tick_atom = caf::atom_constant<caf::atom("tick")>;

/// The behavior of an actor that runs `tick(self)` now and then every `interval`.
template <class State, class Tick>
caf::behavior every(caf::stateful_actor<State>* self, std::chrono::milliseconds interval,
                    Tick tick) {
  fail_on_exception(self);
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) mutable {
      tick(self);
      self->delayed_send(self, interval, tick_atom::value);
    },
  };
}

/// Backoff of a connection retry: 100 ms doubling to 5 s.
inline constexpr std::chrono::milliseconds min_backoff{100};
inline constexpr std::chrono::milliseconds max_backoff{5000};

[[nodiscard]] inline std::chrono::milliseconds next_backoff(std::chrono::milliseconds b) {
  return std::min(b * 2, max_backoff);
}

} // namespace depot
