// Private: librdkafka handles for depot's Kafka clients: configuration from the node's options
// (brokers, --kafka-property), depot's defaults for producers and consumers, librdkafka's log
// lines in depot's log, and the records of librdkafka messages.
#pragma once

#include <memory>
#include <string>

#include <librdkafka/rdkafka.h>

#include "depot/runtime/error.hpp"
#include "depot/runtime/settings.hpp"
#include "depot/transports/cloudevents.hpp"

namespace depot::kafka {

/// A Kafka client that could not be made (a bad property, no brokers).
class client_error : public error {
public:
  explicit client_error(const std::string& what) : error(errc::startup_failed, what) {}
};

struct handle_deleter {
  void operator()(rd_kafka_t* rk) const;
};
using handle = std::unique_ptr<rd_kafka_t, handle_deleter>;

struct message_deleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using message = std::unique_ptr<rd_kafka_message_t, message_deleter>;

struct partitions_deleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using partition_list = std::unique_ptr<rd_kafka_topic_partition_list_t, partitions_deleter>;

/// A configuration under construction; owns it until a client takes it.
class config {
public:
  /// `brokers` (host:port,...), then `s`'s --kafka-property items, which may override depot's
  /// defaults set before them with set().
  config(const std::string& brokers, const node_settings& s, std::string client_id);
  ~config();
  config(const config&) = delete;
  config& operator=(const config&) = delete;

  /// Sets a property; throws client_error naming it when librdkafka refuses it.
  config& set(const std::string& name, const std::string& value);
  /// Applies the --kafka-property items (after depot's defaults: they win).
  config& apply_user_properties();
  [[nodiscard]] rd_kafka_conf_t* get() { return conf_; }
  /// Makes a client of `type` from this configuration (which it takes).
  [[nodiscard]] handle make(rd_kafka_type_t type);

private:
  rd_kafka_conf_t* conf_;
  const node_settings& settings_;
};

/// The record of a consumed message (copies its bytes).
[[nodiscard]] cloudevents::record record_of(const rd_kafka_message_t& m);

} // namespace depot::kafka
