// The local transport: durable sending from outside a handler.
#include "depot/transports/local.hpp"

#include "depot/persistence/inbox.hpp"
#include "depot/persistence/retry.hpp"

namespace depot {

sent_envelopes send_durably(persistence::connection& conn, const routing& routes,
                            const std::string& source, int sender_node, std::string_view type,
                            const std::vector<std::string>& bodies, const send_options& options,
                            micros at, dispatch how) {
  envelope none; // no incoming envelope: nothing to correlate with
  context ctx{none, nullptr, routes, source};
  for (const auto& body : bodies) {
    routes.validate(type, body);
    ctx.enqueue(type, body, options, at, how);
  }
  // The same envelopes (same ids) each attempt: an insert that did commit is skipped.
  persistence::retry_transaction(
    conn, [&](persistence::connection& c) { persistence::inbox{c}.insert(ctx.durable(), sender_node); });
  return {std::move(ctx.durable()), std::move(ctx.buffered())};
}

} // namespace depot
