// What an application declares about Kafka: the topics its message types are published to (in
// which CloudEvents mode) and the topics it listens to. Plain data: the transport that acts on
// it lives in transports/ (depot/transports/kafka.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "depot/runtime/endpoint.hpp"

namespace depot {

/// The transport name of Kafka topics: a route to topic "bank.events" is to endpoint
/// "kafka://bank.events", whose envelopes wait in the outbox until the relay produced them.
inline constexpr std::string_view kafka_transport = "kafka";

/// Topic `name` as an endpoint.
[[nodiscard]] inline endpoint kafka_topic(std::string name) {
  return {std::string{kafka_transport}, std::move(name), endpoint_mode::durable};
}

/// How a CloudEvent travels in a Kafka record (CloudEvents 1.0 Kafka protocol binding).
enum class cloudevents_mode {
  binary,     ///< attributes as ce_ headers, the data as the record value
  structured, ///< the whole event as one application/cloudevents+json value
};

[[nodiscard]] const char* to_string(cloudevents_mode);

/// Where a listener keeps its consumed positions.
enum class offset_store {
  kafka,    ///< committed to the consumer group after the inbox insert committed; a record
            ///< consumed again is dropped by the inbox's dedup on its id
  postgres, ///< written in the inbox insert's transaction and sought on assignment: a record
            ///< is never consumed twice by this group
};

[[nodiscard]] const char* to_string(offset_store);

/// Where a new consumer group starts.
enum class offset_reset { earliest, latest };

/// One Kafka listener: a consumer of a set of topics feeding the durable inbox. Records become
/// envelopes of their CloudEvents type, routed like a send of that type.
struct kafka_listener {
  std::vector<std::string> topics;
  std::string group;                           ///< consumer group; "" = the service name
  offset_reset start = offset_reset::earliest; ///< where a group without offsets begins
  offset_store offsets = offset_store::kafka;  ///< where consumed positions are kept
  std::int64_t max_backlog = 0; ///< pause above this many ready envelopes; 0 = the node's option
  /// Consumes only on the cluster's leader: one consumer of the group in the whole cluster,
  /// moving to the next leader when the leader changes (exclusive work, assigned by the lead).
  bool leader_only = false;

  /// Chains: `app.listen_to_kafka({"bank.commands"}).group("bank").start_at(offset_reset::latest)`.
  kafka_listener& in_group(std::string g) {
    group = std::move(g);
    return *this;
  }
  kafka_listener& start_at(offset_reset r) {
    start = r;
    return *this;
  }
  kafka_listener& keep_offsets_in(offset_store s) {
    offsets = s;
    return *this;
  }
  kafka_listener& pause_above(std::int64_t n) {
    max_backlog = n;
    return *this;
  }
  kafka_listener& on_leader_only() {
    leader_only = true;
    return *this;
  }
};

/// A topic's settings on output.
struct kafka_topic_settings {
  std::string name;
  cloudevents_mode mode = cloudevents_mode::binary;
};

} // namespace depot
