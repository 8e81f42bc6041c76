// The local transport: durable sending from outside a handler.
#include "depot/transports/local.hpp"

#include "depot/persistence/outgoing.hpp"
#include "depot/persistence/retry.hpp"

namespace depot {

outgoing_envelopes send_durably(persistence::connection& conn, const routing& routes,
                                const std::string& source, int sender_node, std::string_view type,
                                const std::vector<std::string>& bodies, const send_options& options,
                                micros at, dispatch how) {
  envelope none; // no incoming envelope: nothing to correlate with
  outgoing_envelopes out;
  context ctx{none, nullptr, routes, source, out};
  for (const auto& body : bodies)
    ctx.enqueue(type, body, options, at, how, routes.validate(type, body));
  // The same envelopes (same ids) each attempt: an insert that did commit is skipped.
  persistence::retry_transaction(
    conn, [&](persistence::connection& c) { persistence::store_outgoing(c, out, sender_node); });
  return out;
}

} // namespace depot
