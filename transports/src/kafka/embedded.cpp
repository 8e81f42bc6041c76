// librdkafka's mock cluster, owned by a client handle of its own.
#include <fmt/format.h>

#include "client.hpp"
#include "depot/transports/kafka.hpp"
// after rdkafka.h (client.hpp), as it demands
#include <librdkafka/rdkafka_mock.h>

namespace depot {

struct embedded_kafka::impl {
  kafka::handle owner; // the cluster runs on this handle's threads
  rd_kafka_mock_cluster_t* cluster = nullptr;
  std::string bootstrap;

  ~impl() {
    if (cluster != nullptr)
      rd_kafka_mock_cluster_destroy(cluster); // before its handle
  }
};

embedded_kafka::embedded_kafka(int brokers) : impl_(std::make_unique<impl>()) {
  char reason[512];
  auto* conf = rd_kafka_conf_new();
  // The handle only hosts the cluster: it connects nowhere, and need not say so.
  rd_kafka_conf_set(conf, "log_level", "3", reason, sizeof reason);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, reason, sizeof reason);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw kafka::client_error{fmt::format("cannot start the embedded Kafka cluster: {}", reason)};
  }
  impl_->owner.reset(rk);
  impl_->cluster = rd_kafka_mock_cluster_new(rk, brokers);
  if (impl_->cluster == nullptr)
    throw kafka::client_error{"cannot start the embedded Kafka cluster (librdkafka's mock)"};
  impl_->bootstrap = rd_kafka_mock_cluster_bootstraps(impl_->cluster);
}

embedded_kafka::~embedded_kafka() = default;

const std::string& embedded_kafka::bootstrap() const {
  return impl_->bootstrap;
}

void embedded_kafka::create_topic(const std::string& topic, int partitions) {
  if (auto err = rd_kafka_mock_topic_create(impl_->cluster, topic.c_str(), partitions, 1))
    throw kafka::client_error{
      fmt::format("cannot create topic {}: {}", topic, rd_kafka_err2str(err))};
}

void embedded_kafka::fail_requests(int api_key, int count, int error) {
  std::vector<rd_kafka_resp_err_t> errors(static_cast<std::size_t>(count),
                                          static_cast<rd_kafka_resp_err_t>(error));
  rd_kafka_mock_push_request_errors_array(impl_->cluster, static_cast<std::int16_t>(api_key),
                                          errors.size(), errors.data());
}

void embedded_kafka::set_broker_down(int id, bool down) {
  if (down)
    rd_kafka_mock_broker_set_down(impl_->cluster, id);
  else
    rd_kafka_mock_broker_set_up(impl_->cluster, id);
}

} // namespace depot
