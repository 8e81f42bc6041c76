// The demo's Kafka client: plain librdkafka, CloudEvents made by depot's mapping.
#include "kafka_demo.hpp"

#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <depot/transports/cloudevents.hpp>

namespace bank {

struct kafka_client::impl {
  std::string brokers;
  rd_kafka_t* producer = nullptr;

  ~impl() {
    if (producer != nullptr)
      rd_kafka_destroy(producer);
  }
};

namespace {

rd_kafka_t* make(rd_kafka_type_t type, const std::map<std::string, std::string>& properties) {
  char reason[512];
  auto* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : properties)
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), reason, sizeof reason) != RD_KAFKA_CONF_OK)
      throw std::runtime_error{fmt::format("Kafka property {}: {}", k, reason)};
  auto* rk = rd_kafka_new(type, conf, reason, sizeof reason);
  if (rk == nullptr)
    throw std::runtime_error{fmt::format("cannot create a Kafka client: {}", reason)};
  return rk;
}

std::string header(rd_kafka_headers_t* headers, const char* name) {
  const void* value = nullptr;
  std::size_t size = 0;
  if (headers == nullptr ||
      rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return {};
  return {static_cast<const char*>(value), size};
}

} // namespace

kafka_client::kafka_client(const std::string& brokers) : impl_(std::make_unique<impl>()) {
  impl_->brokers = brokers;
  impl_->producer =
    make(RD_KAFKA_PRODUCER, {{"bootstrap.servers", brokers}, {"enable.idempotence", "true"}});
}

kafka_client::~kafka_client() = default;

std::int64_t kafka_client::produce(const std::vector<debit_account>& debits) {
  std::int64_t produced = 0;
  auto send = [&](const depot::envelope& e) {
    auto r = depot::cloudevents::to_record(e, commands_topic, "urn:bank:demo-client",
                                           depot::cloudevents_mode::binary);
    auto* headers = rd_kafka_headers_new(r.headers.size());
    for (const auto& [name, value] : r.headers)
      rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                          static_cast<ssize_t>(value.size()));
    for (;;) {
      auto err = rd_kafka_producev(
        impl_->producer, RD_KAFKA_V_TOPIC(r.topic.c_str()),
        RD_KAFKA_V_KEY(r.key->data(), r.key->size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_headers_destroy(headers);
        throw std::runtime_error{fmt::format("produce: {}", rd_kafka_err2str(err))};
      }
      rd_kafka_poll(impl_->producer, 10);
    }
    ++produced;
  };
  depot::envelope first;
  for (const auto& d : debits) {
    depot::envelope e;
    e.id = depot::new_envelope_id();
    e.message_type = std::string{depot::type_name_of<debit_account>()};
    e.body = depot::to_json(d);
    e.key = d.account_id;
    e.received_at = depot::now_micros();
    send(e);
    if (first.id.empty())
      first = e;
  }
  if (!first.id.empty())
    send(first); // the same event again: the bank must ignore it
  if (rd_kafka_flush(impl_->producer, 30'000) != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw std::runtime_error{"commands not acknowledged by Kafka within 30 s"};
  return produced;
}

kafka_client::events kafka_client::read_events(std::int64_t expected,
                                               std::chrono::seconds timeout) {
  auto* consumer =
    make(RD_KAFKA_CONSUMER, {{"bootstrap.servers", impl_->brokers},
                             {"group.id", fmt::format("bank-demo-reader-{}", depot::now_micros())},
                             {"auto.offset.reset", "earliest"},
                             {"enable.auto.commit", "false"}});
  rd_kafka_poll_set_consumer(consumer);
  auto* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, events_topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(consumer, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  events result;
  std::set<std::string> seen;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (result.distinct < expected && std::chrono::steady_clock::now() < deadline) {
    auto* m = rd_kafka_consumer_poll(consumer, 200);
    if (m == nullptr)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_headers_t* headers = nullptr;
      rd_kafka_message_headers(m, &headers);
      auto id = header(headers, "ce_id");
      auto type = header(headers, "ce_type");
      std::string key = m->key ? std::string{static_cast<const char*>(m->key), m->key_len} : "";
      if (id.empty() || type.empty() || header(headers, "ce_specversion") != "1.0" ||
          header(headers, "ce_source").empty() || header(headers, "ce_time").empty() ||
          key != header(headers, "ce_partitionkey"))
        ++result.malformed;
      else if (!seen.insert(id).second)
        ++result.duplicates;
      else {
        ++result.distinct;
        ++result.by_type[type];
      }
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  return result;
}

} // namespace bank
