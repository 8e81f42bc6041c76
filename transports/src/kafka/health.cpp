// Kafka's part of `health`: brokers, listener lag, outbox backlog.
#include <fmt/format.h>

#include "client.hpp"
#include "depot/transports/kafka.hpp"

namespace depot {

namespace {

/// Lag of `group` on every partition of `topic`, or the reason it is unknown.
std::string lag_of(rd_kafka_t* consumer, const rd_kafka_metadata_t& md, const std::string& topic,
                   int timeout_ms) {
  const rd_kafka_metadata_topic_t* t = nullptr;
  for (int i = 0; i < md.topic_cnt; ++i)
    if (topic == md.topics[i].topic)
      t = &md.topics[i];
  if (t == nullptr || t->partition_cnt == 0)
    return "no such topic yet";
  kafka::partition_list parts{rd_kafka_topic_partition_list_new(t->partition_cnt)};
  for (int p = 0; p < t->partition_cnt; ++p)
    rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), t->partitions[p].id);
  if (auto err = rd_kafka_committed(consumer, parts.get(), timeout_ms))
    return fmt::format("committed offsets unknown: {}", rd_kafka_err2str(err));
  std::int64_t lag = 0;
  for (int i = 0; i < parts->cnt; ++i) {
    std::int64_t low = 0, high = 0;
    if (auto err = rd_kafka_query_watermark_offsets(
          consumer, topic.c_str(), parts->elems[i].partition, &low, &high, timeout_ms))
      return fmt::format("end offsets unknown: {}", rd_kafka_err2str(err));
    auto committed = parts->elems[i].offset;
    lag += high - (committed >= 0 ? committed : low);
  }
  return fmt::format("lag {}", lag);
}

} // namespace

kafka_health check_kafka(const routing& app, const node_settings& s,
                         const std::vector<std::pair<std::string, micros>>& backlog,
                         std::chrono::milliseconds timeout, std::chrono::milliseconds max_wait) {
  kafka_health h;
  auto now = now_micros();
  for (const auto& [destination, oldest] : backlog) {
    auto waited = std::chrono::milliseconds{(now - oldest) / 1000};
    auto late = waited > max_wait;
    h.healthy = h.healthy && !late;
    h.lines.push_back(fmt::format("outbox {}: oldest envelope waiting {} ms{}", destination,
                                  waited.count(), late ? " (too long: is a relay running?)" : ""));
  }
  if (s.kafka.empty() || s.kafka == "embedded") {
    h.lines.push_back(s.kafka.empty() ? "kafka: not configured"
                                      : "kafka: embedded in the node; brokers not checked");
    return h;
  }
  auto ms = static_cast<int>(timeout.count());
  // A consumer per listener group (committed offsets are a group's); the first asks the brokers.
  auto group_of = [&s](const kafka_listener& l) { return l.group.empty() ? s.service : l.group; };
  auto client = [&s](const std::string& group) {
    kafka::config conf{s.kafka, s, s.service + "-health"};
    conf.set("group.id", group).apply_user_properties();
    return conf.make(RD_KAFKA_CONSUMER);
  };
  const auto& listeners = app.kafka_listeners();
  auto first = client(listeners.empty() ? s.service : group_of(listeners.front()));
  const rd_kafka_metadata_t* md = nullptr;
  if (auto err = rd_kafka_metadata(first.get(), 1, nullptr, &md, ms)) {
    h.healthy = false;
    h.lines.push_back(
      fmt::format("kafka {}: no metadata within {} ms: {}", s.kafka, ms, rd_kafka_err2str(err)));
    return h;
  }
  for (const auto& l : listeners) {
    auto group = group_of(l);
    auto other = &l == &listeners.front() ? kafka::handle{} : client(group);
    auto* consumer = other ? other.get() : first.get();
    for (const auto& topic : l.topics)
      h.lines.push_back(
        fmt::format("kafka listener {} on {}: {}", group, topic, lag_of(consumer, *md, topic, ms)));
  }
  rd_kafka_metadata_destroy(md);
  h.lines.push_back(fmt::format("kafka {}: brokers answer", s.kafka));
  return h;
}

} // namespace depot
