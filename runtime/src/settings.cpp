// The option table of a node and the checks of its bounds.
#include "depot/runtime/settings.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <thread>

#include <fmt/format.h>

namespace depot {

namespace {

using std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr int max_workers = 1000;

} // namespace

std::string show_duration(milliseconds d) {
  auto ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0)
    return fmt::format("{}h", ms / 3'600'000);
  if (ms != 0 && ms % 60'000 == 0)
    return fmt::format("{}min", ms / 60'000);
  if (ms != 0 && ms % 1000 == 0)
    return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

namespace {

using queue_map = std::map<std::string, int>;

void check_service(const std::string& value) {
  if (value.empty())
    throw invalid_setting{"--service must not be empty"};
}

/// Calls `item(whole, name, value)` for each NAME=VALUE item of a comma-separated list; one that
/// is not NAME=VALUE is an invalid_setting of `option` saying it should be `shape`.
template <class Item>
void for_each_item(std::string_view option, std::string_view shape, std::string_view text,
                   Item item) {
  while (!text.empty()) {
    auto comma = text.find(',');
    auto one = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    auto eq = one.find('=');
    if (eq == std::string_view::npos || eq == 0)
      throw invalid_setting{fmt::format("--{}: '{}' is not {}", option, one, shape)};
    item(one, one.substr(0, eq), one.substr(eq + 1));
  }
}

std::vector<std::pair<std::string, std::string>> parse_properties(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> result;
  for_each_item("kafka-property", "NAME=VALUE", text,
                [&](std::string_view, std::string_view name, std::string_view value) {
                  result.emplace_back(name, value);
                });
  return result;
}

void check_kafka_properties(const std::string& value) {
  (void)parse_properties(value);
}

void check_cluster_host(const std::string& value) {
  if (value.empty())
    throw invalid_setting{"--cluster-host must not be empty"};
}

/// A readable file or nothing: the cluster-tls options.
void check_readable(const char* option, const std::string& path) {
  if (!path.empty() && !std::ifstream{path})
    throw invalid_setting{fmt::format("--{}: cannot read '{}'", option, path)};
}

/// The items of a comma-separated list, each trimmed of nothing: "a,b" -> a, b.
std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  while (!text.empty()) {
    auto comma = text.find(',');
    items.emplace_back(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
  }
  return items;
}

void check_queue_list(const std::string& value) {
  for (const auto& q : split_list(value))
    if (q.empty())
      throw invalid_setting{fmt::format("--queues '{}' names an empty queue", value)};
}

// Where each option lives: captureless lambdas, so the table stays plain data.
#define DEPOT_FIELD(type, expr) [](node_settings& s) -> type& { return expr; }

} // namespace

const std::vector<node_option>& node_options() {
  using namespace option_field;
  static const std::vector<node_option> all{
    {"db", "libpq connection URI of the message store; unset: the embedded PostgreSQL",
     text{DEPOT_FIELD(std::string, s.db)}},
    {"schema", "Postgres schema of depot's tables: a lower-case identifier",
     text{DEPOT_FIELD(std::string, s.schema), check_schema_name}},
    {"service", "service name: source of sent envelopes",
     text{DEPOT_FIELD(std::string, s.service), check_service}},
    {"node-id", "this node's number among the live nodes; 0 picks a free one",
     integer{DEPOT_FIELD(int, s.node_id), 0, 2'147'483'647}},
    {"concurrency", "workers per queue on this node",
     integer{DEPOT_FIELD(int, s.concurrency), 0, max_workers}},
    {"queue-concurrency", "per-queue workers: QUEUE=N,QUEUE=N",
     queue_counts{DEPOT_FIELD(queue_map, s.queue_concurrency), 0, max_workers}},
    {"batch-size", "envelopes claimed and handled per transaction",
     integer{DEPOT_FIELD(int, s.batch_size), 1, 10'000}},
    {"max-concurrent-batches",
     "batches this node's durable workers handle at once, across queues; 0: one per core, at "
     "least 2",
     integer{DEPOT_FIELD(int, s.max_concurrent_batches), 0, 100'000}},
    {"dedup-window", "how long ids of deduplicated envelopes are remembered",
     duration{DEPOT_FIELD(milliseconds, s.dedup_window), 0ms, 24h * 365}},
    {"polling-interval", "fallback poll of each queue",
     duration{DEPOT_FIELD(milliseconds, s.polling_interval), 10ms, 1h}},
    {"heartbeat-interval", "node heartbeat and durability agent period",
     duration{DEPOT_FIELD(milliseconds, s.heartbeat_interval), 10ms, 1min}},
    {"stale-after", "a node silent this long is dead; its row is removed",
     duration{DEPOT_FIELD(milliseconds, s.stale_after), 100ms, 1h}},
    {"cleanup-interval", "forgetting received ids past the dedup window",
     duration{DEPOT_FIELD(milliseconds, s.cleanup_interval), 100ms, 24h}},
    {"saga-retention", "how long a finished (completed or compensated) saga is kept",
     duration{DEPOT_FIELD(milliseconds, s.saga_retention), 0ms, 24h * 3650}},
    {"auto-provision", "apply the schema when the node starts",
     flag{DEPOT_FIELD(bool, s.auto_provision)}},
    {"max-attempts", "attempts before a dead letter",
     integer{DEPOT_FIELD(int, s.failures.max_attempts), 1, 1000}},
    {"retry-delay", "delay of the first retry (x4 each further one)",
     duration{DEPOT_FIELD(milliseconds, s.failures.retry_delay), 0ms, 24h}},
    {"max-retry-delay", "upper bound of a retry delay",
     duration{DEPOT_FIELD(milliseconds, s.failures.max_retry_delay), 0ms, 24h * 7}},
    {"max-restarts", "failures of one actor within restart-window before the node exits",
     integer{DEPOT_FIELD(int, s.max_restarts), 0, 1000}},
    {"restart-window", "the window max-restarts counts failures in",
     duration{DEPOT_FIELD(milliseconds, s.restart_window), 1s, 24h}},
    {"kafka",
     "Kafka bootstrap brokers host:port,...; 'embedded' runs a mock cluster in the node; "
     "unset: no Kafka",
     text{DEPOT_FIELD(std::string, s.kafka)}},
    {"kafka-property", "librdkafka properties for every Kafka client: NAME=VALUE,NAME=VALUE",
     text{DEPOT_FIELD(std::string, s.kafka_properties), check_kafka_properties}},
    {"service-uri",
     "CloudEvents source of the events this service publishes; unset: "
     "urn:depot:SERVICE",
     text{DEPOT_FIELD(std::string, s.service_uri)}},
    {"kafka-max-backlog", "a Kafka listener pauses while its queues hold more ready envelopes",
     integer{DEPOT_FIELD(int, s.kafka_max_backlog), 1, 100'000'000}},
    {"cluster-host", "address this node's node actor listens on for its peers",
     text{DEPOT_FIELD(std::string, s.cluster_host), check_cluster_host}},
    {"cluster-port", "port of this node's node actor; 0 picks a free one",
     integer{DEPOT_FIELD(int, s.cluster_port), 0, 65'535}},
    {"queues", "the queues this node serves: QUEUE,QUEUE; unset: every queue",
     text{DEPOT_FIELD(std::string, s.queues), check_queue_list}},
    {"cluster-tls-cert", "PEM certificate chain of this node for TLS between nodes; unset: no TLS",
     text{DEPOT_FIELD(std::string, s.cluster_tls_cert),
          [](const std::string& v) { check_readable("cluster-tls-cert", v); }}},
    {"cluster-tls-key", "PEM private key of cluster-tls-cert",
     text{DEPOT_FIELD(std::string, s.cluster_tls_key),
          [](const std::string& v) { check_readable("cluster-tls-key", v); }}},
    {"cluster-tls-ca", "PEM CA certificates a peer's certificate must chain to",
     text{DEPOT_FIELD(std::string, s.cluster_tls_ca),
          [](const std::string& v) { check_readable("cluster-tls-ca", v); }}},
  };
  return all;
}

#undef DEPOT_FIELD

std::string show(const node_option& o, const node_settings& settings) {
  auto& s = const_cast<node_settings&>(settings); // the table's refs read, never write, here
  return std::visit(
    [&s](const auto& f) -> std::string {
      using field = std::decay_t<decltype(f)>;
      if constexpr (std::is_same_v<field, option_field::text>)
        return f.ref(s);
      else if constexpr (std::is_same_v<field, option_field::integer>)
        return std::to_string(f.ref(s));
      else if constexpr (std::is_same_v<field, option_field::duration>)
        return show_duration(f.ref(s));
      else if constexpr (std::is_same_v<field, option_field::flag>)
        return f.ref(s) ? "true" : "false";
      else {
        std::vector<std::string> items;
        for (const auto& [queue, n] : f.ref(s))
          items.push_back(fmt::format("{}={}", queue, n));
        return fmt::format("{}", fmt::join(items, ","));
      }
    },
    o.field);
}

std::map<std::string, int> parse_queue_counts(const node_option& o, std::string_view text) {
  const auto& f = std::get<option_field::queue_counts>(o.field);
  std::map<std::string, int> result;
  for_each_item(
    o.name, "QUEUE=N", text,
    [&](std::string_view item, std::string_view queue, std::string_view digits) {
      int n = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      if (ec == std::errc::result_out_of_range || (ec == std::errc{} && (n < f.min || n > f.max)))
        throw out_of_range(o, item);
      if (ec != std::errc{} || end != digits.data() + digits.size())
        throw invalid_setting{
          fmt::format("--{}: '{}' is not QUEUE=N with a whole number N", o.name, item)};
      result[std::string{queue}] = n;
    });
  return result;
}

invalid_setting out_of_range(const node_option& o, std::string_view value) {
  return std::visit(
    [&](const auto& f) {
      using field = std::decay_t<decltype(f)>;
      if constexpr (std::is_same_v<field, option_field::integer> ||
                    std::is_same_v<field, option_field::queue_counts>)
        return invalid_setting{
          fmt::format("--{} {} is out of range [{}, {}]", o.name, value, f.min, f.max)};
      else if constexpr (std::is_same_v<field, option_field::duration>)
        return invalid_setting{fmt::format("--{} {} is out of range [{}, {}]", o.name, value,
                                           show_duration(f.min), show_duration(f.max))};
      else
        return invalid_setting{fmt::format("--{} {} is out of range", o.name, value)};
    },
    o.field);
}

void check(const node_settings& settings) {
  auto& s = const_cast<node_settings&>(settings); // the table's refs read, never write, here
  for (const auto& o : node_options()) {
    std::visit(
      [&](const auto& f) {
        using field = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<field, option_field::text>) {
          if (f.check != nullptr)
            f.check(f.ref(s));
        } else if constexpr (std::is_same_v<field, option_field::integer>) {
          if (f.ref(s) < f.min || f.ref(s) > f.max)
            throw out_of_range(o, show(o, s));
        } else if constexpr (std::is_same_v<field, option_field::duration>) {
          if (f.ref(s) < f.min || f.ref(s) > f.max)
            throw out_of_range(o, show(o, s));
        } else if constexpr (std::is_same_v<field, option_field::queue_counts>) {
          for (const auto& [queue, n] : f.ref(s))
            if (n < f.min || n > f.max)
              throw out_of_range(o, fmt::format("{}={}", queue, n));
        }
      },
      o.field);
  }
  if (s.stale_after < 2 * s.heartbeat_interval)
    throw invalid_setting{fmt::format(
      "--stale-after {} must be at least twice --heartbeat-interval {}: a live node would be "
      "declared dead between two heartbeats",
      show_duration(s.stale_after), show_duration(s.heartbeat_interval))};
  const int tls_set =
    !s.cluster_tls_cert.empty() + !s.cluster_tls_key.empty() + !s.cluster_tls_ca.empty();
  if (tls_set != 0 && tls_set != 3)
    throw invalid_setting{
      "TLS between nodes takes --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca "
      "together"};
  if (s.failures.max_retry_delay < s.failures.retry_delay)
    throw invalid_setting{fmt::format("--max-retry-delay {} is below --retry-delay {}",
                                      show_duration(s.failures.max_retry_delay),
                                      show_duration(s.failures.retry_delay))};
}

std::vector<std::pair<std::string, std::string>> kafka_properties_of(const node_settings& s) {
  return parse_properties(s.kafka_properties);
}

void check_schema_name(const std::string& name) {
  auto ok = !name.empty() && name.size() < 64 &&
            !std::isdigit(static_cast<unsigned char>(name[0])) &&
            std::all_of(name.begin(), name.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
            });
  if (!ok)
    throw invalid_setting{
      fmt::format("schema name '{}' is not a lower-case identifier; set "
                  "--schema (DEPOT_SCHEMA) to letters, digits and '_'",
                  name)};
}

std::vector<std::string> node_settings::named_queues() const {
  return split_list(queues);
}

int node_settings::concurrent_batches() const {
  if (max_concurrent_batches > 0)
    return max_concurrent_batches;
  return std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
}

bool node_settings::serves(std::string_view queue) const {
  if (queues.empty())
    return true;
  auto named = named_queues();
  return std::find(named.begin(), named.end(), queue) != named.end();
}

} // namespace depot
