// The durability agent's tick.
#include "durability_agent.hpp"

#include <fmt/format.h>

#include "depot/persistence/inbox.hpp"
#include "depot/persistence/node_registry.hpp"
#include "depot/persistence/saga_store.hpp"
#include "depot/runtime/log.hpp"
#include "periodic.hpp"

namespace depot {

namespace {

struct agent_state {
  std::unique_ptr<persistence::connection> conn;
  bool connected = true;
  micros last_cleanup = 0;
  static inline const char* name = "depot.durability_agent";
};

void agent_tick(caf::stateful_actor<agent_state>* self, node_context& node) {
  auto& st = self->state;
  const auto& s = node.settings();
  try {
    if (!st.conn) {
      st.conn = node.connect();
    } else if (!st.connected) {
      st.conn->reconnect();
      log(log_level::info, "durability agent: database connection is back");
    }
    st.connected = true;
    if (!node.leader())
      return; // the leader's work
    persistence::inbox inbox{*st.conn};
    persistence::node_registry registry{*st.conn};
    // The nodes serving what became ready hear it: this one directly, the others through
    // the notification.
    auto tell = [&](const std::vector<std::string>& ready) {
      if (ready.empty())
        return;
      node.wake(ready);
      inbox.notify_ready({ready.begin(), ready.end()}, node.number());
    };
    tell(inbox.promote_due());
    auto dead = registry.recover_stale(
      std::chrono::duration_cast<std::chrono::microseconds>(s.stale_after).count());
    if (!dead.empty()) {
      // What the dead nodes were handling rolled back with their transactions: it is ready.
      log(log_level::info, "durability agent: node(s) {} stopped without deregistering",
          fmt::join(dead, ", "));
      std::vector<std::string> queues;
      for (const auto& q : node.app().queues())
        queues.push_back(q.name);
      tell(queues);
    }
    auto now = now_micros();
    auto interval = std::chrono::duration_cast<std::chrono::microseconds>(s.cleanup_interval);
    if (now - st.last_cleanup >= interval.count()) {
      constexpr int chunk = 10000;
      while (inbox.forget_received_ids(chunk) == chunk) {}
      persistence::saga_store sagas{*st.conn};
      for (const auto& saga : node.app().sagas()) {
        std::size_t removed = 0, n = 0;
        while ((n = sagas.forget_finished(saga, chunk)) > 0) {
          removed += n;
          if (n < chunk)
            break;
        }
        if (removed > 0)
          log(log_level::info, "durability agent: removed {} finished saga(s) {} past retention",
              removed, saga.name);
      }
      st.last_cleanup = now;
    }
  } catch (const persistence::db_error& e) {
    if (st.connected)
      log(log_level::warning, "durability agent: database {} ({}); retrying", to_string(e.kind()),
          e.what());
    st.connected = st.conn && st.conn->connected();
  }
}

} // namespace

std::vector<supervised> durability_agent::actors(node_context& node) {
  return {{"durability agent",
           [&node](caf::actor_system& sys) {
             return sys.spawn<caf::detached>([&node](caf::stateful_actor<agent_state>* self) {
               return every(self, node.settings().heartbeat_interval,
                            [&node](auto* s) { agent_tick(s, node); });
             });
           },
           {}}};
}

} // namespace depot
