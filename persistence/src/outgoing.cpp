// What a context produced, stored by concern.
#include "depot/persistence/outgoing.hpp"

#include "depot/persistence/inbox.hpp"
#include "depot/persistence/outbox.hpp"

namespace depot::persistence {

std::size_t store_outgoing(connection& conn, const outgoing_envelopes& out, int sender_node) {
  outbox{conn}.insert(out.outbox);
  return inbox{conn}.insert(out.inbox, sender_node);
}

} // namespace depot::persistence
