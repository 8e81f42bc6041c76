// The local transport: durable sending from outside a handler.
#include "depot/transports/local.hpp"

#include "depot/persistence/unit_of_work.hpp"

namespace depot {

sent_envelopes send_durably(persistence::message_store& store, const routing& routes,
                            const std::string& source, int sender_node, std::string_view type,
                            const std::vector<std::string>& bodies, const send_options& options,
                            micros at, dispatch how) {
  envelope none; // no incoming envelope: nothing to correlate with
  context ctx{none, nullptr, routes, source};
  for (const auto& body : bodies) {
    routes.validate(type, body);
    ctx.enqueue(type, body, options, at, how);
  }
  persistence::unit_of_work uow{store};
  store.insert_incoming(ctx.durable(), sender_node);
  uow.commit();
  return {std::move(ctx.durable()), std::move(ctx.buffered())};
}

} // namespace depot
