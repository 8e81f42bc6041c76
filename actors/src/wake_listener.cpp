// The wake listener actor: short waits keep its mailbox, and shutdown, responsive.
#include "wake_listener.hpp"

#include <caf/all.hpp>

#include "depot/persistence/names.hpp"
#include "depot/persistence/notification_listener.hpp"
#include "periodic.hpp"

namespace depot {

namespace {

using listen_atom = caf::atom_constant<caf::atom("listen")>;

struct listener_state {
  std::unique_ptr<persistence::notification_listener> listener;
  static inline const char* name = "depot.wake_listener";
};

caf::behavior listen(caf::stateful_actor<listener_state>* self, node_context& node) {
  fail_on_exception(self);
  self->send(self, listen_atom::value);
  return {
    [self, &node](listen_atom) {
      auto& st = self->state;
      const auto& s = node.settings();
      try {
        if (!st.listener)
          st.listener = std::make_unique<persistence::notification_listener>(
            s.db, persistence::names::notify_channel(s.schema));
        for (auto& notice : st.listener->wait(std::chrono::milliseconds{200}))
          if (notice.sender != node.number())
            node.wake(notice.queues);
        self->send(self, listen_atom::value);
      } catch (const persistence::db_error&) {
        st.listener.reset(); // polling covers the gap
        self->delayed_send(self, max_backoff, listen_atom::value);
      }
    },
  };
}

} // namespace

std::vector<supervised> wake_listener::actors(node_context& node) {
  return {{"wake listener",
           [&node](caf::actor_system& sys) {
             return sys.spawn<caf::detached>(
               [&node](caf::stateful_actor<listener_state>* self) { return listen(self, node); });
           },
           {}}};
}

} // namespace depot
