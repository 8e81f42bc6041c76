// The heartbeat service: the node's liveness and health in its row, beaten on the connection
// that holds the node's advisory lock and on nothing else, so that no other work, however long,
// can delay it and make peers think this node died. Blocks on Postgres: a detached actor.
#pragma once

#include "cluster.hpp"
#include "depot/actors/service.hpp"
#include "depot/persistence/node_registry.hpp"

namespace depot {

class heartbeat final : public service {
public:
  /// `lock_holder` holds the connection that registered `self` by the time actors() is called;
  /// both outlive the service's actors. Every beat writes `cluster`'s presence, tries the
  /// leader's lock until it holds it, and tells the node actor which nodes are registered.
  heartbeat(const std::unique_ptr<persistence::connection>& lock_holder,
            const persistence::node_registration& self, std::string version,
            std::shared_ptr<cluster_view> cluster)
    : lock_holder_(lock_holder)
    , self_(self)
    , version_(std::move(version))
    , cluster_(std::move(cluster)) {}

  [[nodiscard]] std::string name() const override { return "heartbeat"; }
  [[nodiscard]] std::size_t connections() const override { return 0; } // the node's own
  [[nodiscard]] std::vector<supervised> actors(node_context& node) override;

private:
  const std::unique_ptr<persistence::connection>& lock_holder_;
  const persistence::node_registration& self_;
  std::string version_;
  std::shared_ptr<cluster_view> cluster_;
};

} // namespace depot
