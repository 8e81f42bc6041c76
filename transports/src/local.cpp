// The local transport: durable sending from outside a handler.
#include "depot/transports/local.hpp"

#include <fmt/format.h>

#include "depot/persistence/dead_letters.hpp"
#include "depot/persistence/outgoing.hpp"
#include "depot/persistence/retry.hpp"

namespace depot {

namespace {

/// The message key of each of `bodies`, when every one is a valid `type`. Otherwise keeps each
/// invalid body as a dead letter of the queue `type` goes to, with the reason, in one
/// transaction, and throws the first one's error naming its dead letter: bad input is refused
/// with a clear error and lost nowhere.
std::vector<std::string> keys_or_refuse(persistence::connection& conn, const routing& routes,
                                        const std::string& source, std::string_view type,
                                        const std::vector<std::string>& bodies) {
  std::vector<std::string> keys;
  keys.reserve(bodies.size());
  std::vector<envelope> invalid;
  std::vector<std::pair<std::string, std::string>> reasons; // exception type, message
  errc first = errc::decode_error;
  for (const auto& body : bodies) {
    try {
      keys.push_back(routes.validate(type, body));
    } catch (const error& x) {
      auto queues = routes.subscribers_of(type);
      if (!permanent_for_message(x.code()) || queues.empty())
        throw; // no queue of ours to keep it for: the caller has the error
      if (invalid.empty())
        first = x.code();
      auto& e = invalid.emplace_back();
      e.id = new_envelope_id();
      e.queue = queues.front()->name;
      e.message_type = std::string{type};
      e.body = body;
      e.headers[header::source] = source;
      reasons.emplace_back(detail::demangle(typeid(x).name()), x.what());
    }
  }
  if (invalid.empty())
    return keys;
  persistence::retry_transaction(conn, [&](persistence::connection& c) {
    persistence::dead_letters dead{c};
    for (std::size_t i = 0; i < invalid.size(); ++i)
      dead.add(invalid[i], reasons[i].first, reasons[i].second);
  });
  auto what = fmt::format("{} (kept as dead letter {}", reasons.front().second, invalid.front().id);
  if (invalid.size() > 1)
    what += fmt::format(", with {} more invalid bod{}", invalid.size() - 1,
                        invalid.size() == 2 ? "y" : "ies");
  what += "; nothing of this send was stored)";
  if (first == errc::validation_error)
    throw validation_error{what};
  throw decode_error{what};
}

} // namespace

outgoing_envelopes send_durably(persistence::connection& conn, const routing& routes,
                                const std::string& source, int sender_node, std::string_view type,
                                const std::vector<std::string>& bodies, const send_options& options,
                                micros at, dispatch how) {
  auto keys = keys_or_refuse(conn, routes, source, type, bodies);
  envelope none; // no incoming envelope: nothing to correlate with
  outgoing_envelopes out;
  context ctx{none, nullptr, routes, source, out};
  for (std::size_t i = 0; i < bodies.size(); ++i)
    ctx.enqueue(type, bodies[i], options, at, how, std::move(keys[i]));
  // The same envelopes (same ids) each attempt: an insert that did commit is skipped.
  persistence::retry_transaction(
    conn, [&](persistence::connection& c) { persistence::store_outgoing(c, out, sender_node); });
  return out;
}

} // namespace depot
