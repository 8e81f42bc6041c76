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
    persistence::node_registry registry{conn};
    try {
      if (!st.connected) {
        conn.reconnect();
        if (!registry.lock_number(self_.number))
          log(log_level::error, "node id {} was taken over while the database was unreachable",
              self_.number);
        st.connected = true;
        log(log_level::info, "heartbeat: database connection is back");
      }
      auto h = node.health();
      registry.heartbeat(self_, version_, {to_string(h.status), h.reason});
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
