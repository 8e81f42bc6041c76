// The Kafka transport: the outbox relayed to Kafka topics as CloudEvents by one relay per store,
// and Kafka topics fed into the durable inbox by listeners. A node adds it when its application
// declares a Kafka route or listener (see depot/runtime/kafka.hpp) and --kafka is set. Also
// librdkafka's mock cluster, a real Kafka protocol endpoint inside this process, for
// `--kafka embedded`, tests and the `kafka mock` command.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "depot/runtime/routing.hpp"
#include "depot/runtime/settings.hpp"

namespace depot {

class service;

/// librdkafka's mock cluster in this process: brokers listening on localhost that any Kafka
/// client (kcat, another process) can use while it lives. Topics are created on first use
/// with 4 partitions, or by create_topic.
class embedded_kafka {
public:
  explicit embedded_kafka(int brokers = 1);
  ~embedded_kafka();
  embedded_kafka(const embedded_kafka&) = delete;
  embedded_kafka& operator=(const embedded_kafka&) = delete;

  /// The bootstrap brokers, "127.0.0.1:port,...".
  [[nodiscard]] const std::string& bootstrap() const;
  /// Creates `topic` with `partitions` partitions.
  void create_topic(const std::string& topic, int partitions);
  /// Makes the next `count` requests of Kafka API `api_key` (0 = Produce, 1 = Fetch, 8 =
  /// OffsetCommit, ...) fail with Kafka error code `error` (fault injection).
  void fail_requests(int api_key, int count, int error);
  /// Takes broker `id` (1..brokers) down or brings it back up.
  void set_broker_down(int id, bool down);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// What `health` found of Kafka.
struct kafka_health {
  bool healthy = true;
  std::vector<std::string> lines; ///< one per finding, for operators
};

/// Checks Kafka for `health`: the brokers answer a metadata request within `timeout`; each
/// listener's lag per topic (the end offsets minus what its group committed); the outbox
/// backlog per destination (`backlog`, from the store). Unhealthy when the brokers do not answer
/// or an outbox envelope has waited longer than `max_wait`. With `--kafka embedded` the
/// brokers live inside the node and only the backlog is checked.
[[nodiscard]] kafka_health check_kafka(const routing& app, const node_settings& settings,
                                       const std::vector<std::pair<std::string, micros>>& backlog,
                                       std::chrono::milliseconds timeout,
                                       std::chrono::milliseconds max_wait);

/// The Kafka transport of a node running `app` with `settings` (--kafka set): the relay and
/// one listener per kafka_listener, each a detached actor with its own store connection.
/// `--kafka embedded` starts an embedded_kafka that lives as long as the transport.
[[nodiscard]] std::unique_ptr<service> make_kafka_transport(const routing& app,
                                                            const node_settings& settings);

} // namespace depot
