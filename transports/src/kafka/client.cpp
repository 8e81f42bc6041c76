// librdkafka handles for depot's Kafka clients.
#include "client.hpp"

#include <fmt/format.h>

#include "depot/runtime/log.hpp"

namespace depot::kafka {

namespace {

/// librdkafka's syslog levels as depot's.
void log_line_of(const rd_kafka_t* rk, int level, const char* facility, const char* text) {
  auto at = level <= 3 ? log_level::error : level <= 5 ? log_level::warning : log_level::debug;
  log(at, "kafka {} {}: {}", rd_kafka_name(rk), facility, text);
}

} // namespace

void handle_deleter::operator()(rd_kafka_t* rk) const {
  rd_kafka_destroy(rk);
}

config::config(const std::string& brokers, const node_settings& s, std::string client_id)
  : conf_(rd_kafka_conf_new()), settings_(s) {
  rd_kafka_conf_set_log_cb(conf_, log_line_of);
  set("bootstrap.servers", brokers);
  set("client.id", client_id);
}

config::~config() {
  if (conf_ != nullptr)
    rd_kafka_conf_destroy(conf_);
}

config& config::set(const std::string& name, const std::string& value) {
  char reason[512];
  if (rd_kafka_conf_set(conf_, name.c_str(), value.c_str(), reason, sizeof reason) !=
      RD_KAFKA_CONF_OK)
    throw client_error{
      fmt::format("Kafka property {}={}: {} (see --kafka-property)", name, value, reason)};
  return *this;
}

config& config::apply_user_properties() {
  for (const auto& [name, value] : kafka_properties_of(settings_))
    set(name, value);
  return *this;
}

handle config::make(rd_kafka_type_t type) {
  char reason[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf_, reason, sizeof reason);
  if (rk == nullptr)
    throw client_error{fmt::format("cannot create a Kafka {}: {}",
                                   type == RD_KAFKA_PRODUCER ? "producer" : "consumer", reason)};
  conf_ = nullptr; // the client owns it now
  return handle{rk};
}

cloudevents::record record_of(const rd_kafka_message_t& m) {
  cloudevents::record r;
  r.topic = rd_kafka_topic_name(m.rkt);
  r.partition = m.partition;
  r.offset = m.offset;
  if (m.key != nullptr)
    r.key.emplace(static_cast<const char*>(m.key), m.key_len);
  if (m.payload != nullptr)
    r.value.assign(static_cast<const char*>(m.payload), m.len);
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(&m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    for (std::size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i)
      r.headers.emplace_back(name, value == nullptr
                                     ? std::string{}
                                     : std::string{static_cast<const char*>(value), size});
  }
  return r;
}

} // namespace depot::kafka
