// The durability agent service: makes due scheduled envelopes ready, recovers what dead nodes
// held, removes handled ids past the dedup window and finished sagas past their retention,
// every heartbeat-interval, on a connection of its own (a long cleanup blocks nothing else).
// Blocks on Postgres: a detached actor.
#pragma once

#include "depot/actors/service.hpp"

namespace depot {

class durability_agent final : public service {
public:
  [[nodiscard]] std::string name() const override { return "durability agent"; }
  [[nodiscard]] std::size_t connections() const override { return 1; }
  [[nodiscard]] std::vector<supervised> actors(node_context& node) override;
};

} // namespace depot
