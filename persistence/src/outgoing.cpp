// What a context produced, stored by concern.
#include "depot/persistence/outgoing.hpp"

#include "depot/persistence/inbox.hpp"
#include "depot/persistence/outbox.hpp"

#include <set>
#include <string>

namespace depot::persistence {

std::size_t store_outgoing(connection& conn, const outgoing_envelopes& out, int sender_node) {
  outbox{conn}.insert(out.outbox);
  std::set<std::string> destinations; // the relay's wake-up rides on the inbox's notification
  for (const auto& e : out.outbox)
    if (e.status == envelope_status::incoming)
      destinations.insert(e.queue);
  if (out.inbox.empty()) {
    inbox{conn}.notify_ready(destinations, sender_node);
    return 0;
  }
  return inbox{conn}.insert(out.inbox, sender_node, destinations);
}

} // namespace depot::persistence
