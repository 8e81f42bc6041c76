// The wake listener service: LISTEN/NOTIFY wake-ups from other processes that sent to this
// node's queues. Polling covers any gap. Blocks in poll(): a detached actor.
#pragma once

#include "depot/actors/service.hpp"

namespace depot {

class wake_listener final : public service {
public:
  [[nodiscard]] std::string name() const override { return "wake listener"; }
  [[nodiscard]] std::size_t connections() const override { return 1; }
  [[nodiscard]] std::vector<supervised> actors(node_context& node) override;
};

} // namespace depot
