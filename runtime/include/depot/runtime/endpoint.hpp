// Endpoints: where envelopes wait, and so the targets of routes. A local queue of the
// application is an endpoint of transport "local"; a transport (Kafka, a remote node) adds its
// own kind by name, and its envelopes wait in the outbox until that transport's relay delivers
// them. Plain data: no SQL, no CAF.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "depot/runtime/envelope.hpp"

namespace depot {

/// How an endpoint keeps its envelopes.
enum class endpoint_mode {
  durable,  ///< rows in Postgres: survives crashes, handled exactly once in effect
  buffered, ///< memory only: lost on crash, for ephemeral messages (local queues only)
};

[[nodiscard]] const char* to_string(endpoint_mode);

/// The transport name of the application's own queues.
inline constexpr std::string_view local_transport = "local";

/// A place envelopes go to.
struct endpoint {
  std::string transport{local_transport}; ///< "local", or the transport that delivers it
  std::string name;                       ///< the queue, or the transport's address (a topic)
  endpoint_mode mode = endpoint_mode::durable;

  [[nodiscard]] bool local() const { return transport == local_transport; }
  /// "transport://name": how the outbox names a transport's destination, and logs show it.
  [[nodiscard]] std::string uri() const { return transport + "://" + name; }
};

/// The reply a request handler produced.
struct reply_message {
  std::string reply_to;   ///< the requester's reply address (envelope header reply-to)
  std::string request_id; ///< the correlation id the requester waits under
  std::string message_type;
  std::string body;
};

/// What a handler (or a sender outside a handler) produced, sorted by where it is stored: the
/// inbox and the outbox rows commit with the transaction; memory envelopes and replies are
/// handed over after it committed.
struct outgoing_envelopes {
  std::vector<envelope> inbox;  ///< for durable local queues: rows of `incoming`
  std::vector<envelope> outbox; ///< for transports' endpoints: rows of `outgoing`, queue = uri
  std::vector<envelope> memory; ///< for buffered local queues
  std::vector<reply_message> replies;

  /// Files `e`, addressed to `to`, where `to` keeps it.
  void add(const endpoint& to, envelope e);
  /// Moves everything of `other` here.
  void append(outgoing_envelopes&& other);
  [[nodiscard]] bool empty() const {
    return inbox.empty() && outbox.empty() && memory.empty() && replies.empty();
  }
};

} // namespace depot
