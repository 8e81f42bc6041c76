// The heartbeat actor: beats every heartbeat-interval, reconnects and retakes the node's lock
// after an outage.
#include "heartbeat.hpp"

#include "depot/runtime/log.hpp"
#include "periodic.hpp"

namespace depot {

namespace {

struct heartbeat_state {
  bool connected = true;
  static inline const char* name = "depot.heartbeat";
};

} // namespace

std::vector<supervised> heartbeat::actors(node_context& node) {
  auto beat = [this, &node](caf::stateful_actor<heartbeat_state>* self) {
    auto& st = self->state;
    auto& conn = *lock_holder_;
    auto& cluster = *cluster_;
    persistence::node_registry registry{conn};
    try {
      if (!st.connected) {
        if (cluster.leader.exchange(false))
          log(log_level::warning, "node {} lost the leader's lock with its connection",
              self_.number);
        conn.reconnect();
        if (!registry.lock_number(self_.number))
          log(log_level::error, "node id {} was taken over while the database was unreachable",
              self_.number);
        st.connected = true;
        log(log_level::info, "heartbeat: database connection is back");
      }
      auto h = node.health();
      registry.heartbeat(self_, version_, {to_string(h.status), h.reason}, cluster.presence());
      if (!cluster.leader && registry.try_lead()) {
        cluster.leader = true;
        log(log_level::info, "node {} leads the cluster", self_.number);
      }
      std::vector<int> numbers;
      std::vector<std::string> uris;
      std::vector<std::vector<std::string>> queues;
      for (auto& m : registry.members()) {
        numbers.push_back(m.number);
        uris.push_back(std::move(m.presence.uri));
        queues.push_back(std::move(m.presence.queues));
      }
      if (auto a = cluster.node_actor())
        caf::anon_send(a, members_atom::value, std::move(numbers), std::move(uris),
                       std::move(queues));
    } catch (const persistence::db_error& e) {
      if (st.connected)
        log(log_level::warning, "heartbeat: database {} ({}); retrying", to_string(e.kind()),
            e.what());
      st.connected = conn.connected();
    }
  };
  auto interval = node.settings().heartbeat_interval;
  return {{"heartbeat",
           [beat, interval](caf::actor_system& sys) {
             return sys.spawn<caf::detached>(
               [beat, interval](caf::stateful_actor<heartbeat_state>* self) {
                 return every(self, interval, beat);
               });
           },
           {}}};
}

} // namespace depot
