// Storing what a handler or a sender produced, inside the caller's transaction: envelopes for
// local durable queues go to the inbox, envelopes for a transport's endpoints to the outbox.
// Memory envelopes and replies are not stored: the caller hands them over after commit.
// Blocks on Postgres.
#pragma once

#include <cstddef>

#include "depot/persistence/connection.hpp"
#include "depot/runtime/endpoint.hpp"

namespace depot::persistence {

/// Inserts `out.inbox` and `out.outbox` and notifies listeners once of the ready queues and
/// outbox destinations ("kafka://topic"), naming `sender_node`; ids already stored are skipped.
/// Returns how many inbox rows were new.
std::size_t store_outgoing(connection& conn, const outgoing_envelopes& out, int sender_node);

} // namespace depot::persistence
