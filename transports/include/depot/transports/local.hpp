// The local transport: durable sending from outside a handler (the node's send functions, the
// CLI's `send`). Routes JSON bodies to their endpoints and stores them in one transaction.
// Blocks on Postgres.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "depot/persistence/connection.hpp"
#include "depot/runtime/context.hpp"
#include "depot/runtime/routing.hpp"

namespace depot {

/// Routes `bodies` of message type `type` and commits the envelopes of durable endpoints (local
/// queues' and transports') in one transaction; the memory ones in the result are for a running
/// node's buffered queues. A transient failure, a lost connection or an unknown commit outcome
/// is retried for up to 30 s with the same envelope ids (a commit that did happen is not
/// repeated). Bodies that are not a valid `type` are refused together: each is kept as a dead
/// letter with its reason, nothing else is stored, and the first one's decode_error or
/// validation_error is thrown, naming its dead letter. Throws no_route or
/// persistence::db_error otherwise.
outgoing_envelopes send_durably(persistence::connection& conn, const routing& routes,
                                const std::string& source, int sender_node, std::string_view type,
                                const std::vector<std::string>& bodies, const send_options& options,
                                micros at, dispatch how);

} // namespace depot
