// The settings of a node, one field per option, each with its documented default, and the one
// table of options (name, meaning, field, bounds) that the CLI binds to CAF's option machinery,
// that `describe` prints and that docs/configuration.md is checked against. Plain data here:
// no CAF, no SQL.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "depot/runtime/error.hpp"
#include "depot/runtime/failure_policy.hpp"

namespace depot {

struct node_settings {
  std::string db;                ///< libpq connection URI of the message store (required)
  std::string schema = "depot";  ///< Postgres schema holding depot's tables
  std::string service = "depot"; ///< service name: envelope source, consumer group
  int node_id = 0;     ///< this node's number (its outbox claims carry it); 0 = pick a free one
  int concurrency = 1; ///< workers per durable queue on this node
  std::map<std::string, int> queue_concurrency; ///< per-queue override of concurrency
  int batch_size = 100;                         ///< envelopes claimed and handled per transaction
  /// batches this node's durable workers handle at once, across queues; 0 = one per core, at
  /// least 2 (see concurrent_batches)
  int max_concurrent_batches = 0;
  std::chrono::milliseconds dedup_window{24 * 3600 * 1000}; ///< how long handled ids are kept
  std::chrono::milliseconds polling_interval{1000};         ///< fallback poll of each queue
  std::chrono::milliseconds heartbeat_interval{1000};       ///< node heartbeat and agent period
  std::chrono::milliseconds stale_after{10'000};            ///< a node silent this long is dead
  std::chrono::milliseconds cleanup_interval{60'000}; ///< removal of ids past the dedup window
  /// how long a completed or compensated saga's row is kept
  std::chrono::milliseconds saga_retention{7 * 24 * 3600 * 1000LL};
  bool auto_provision = true; ///< apply the schema at start
  failure_policy failures;    ///< default error policy of every queue
  int max_restarts = 5;       ///< failures of one actor within restart_window before the node stops
  std::chrono::milliseconds restart_window{60'000}; ///< the window max_restarts counts in
  /// Kafka bootstrap brokers "host:port,host:port", or "embedded" (a mock cluster inside the
  /// node); "" = no Kafka endpoints
  std::string kafka;
  std::string kafka_properties; ///< librdkafka properties "name=value,name=value" for every client
  std::string
    service_uri; ///< CloudEvents source of this service's events; "" = urn:depot:<service>
  int kafka_max_backlog = 10'000; ///< a Kafka listener pauses above this many ready envelopes
  std::string cluster_host = "127.0.0.1"; ///< where this node's node actor listens for peers
  int cluster_port = 0;                   ///< its port; 0 = a free one
  std::string queues; ///< the queues this node serves, "a,b"; "" = every queue of the app
  /// TLS between nodes (CAF's OpenSSL module): this node's certificate chain and private key
  /// (PEM files), and the CA certificates its peers' must chain to. All three or none.
  std::string cluster_tls_cert, cluster_tls_key, cluster_tls_ca;

  /// Whether nodes talk over TLS (the cluster-tls options are set).
  [[nodiscard]] bool cluster_tls() const { return !cluster_tls_cert.empty(); }

  /// Whether this node serves `queue` (see queues).
  [[nodiscard]] bool serves(std::string_view queue) const;
  /// The queues named by `queues`, in order; empty when it names none (every queue).
  [[nodiscard]] std::vector<std::string> named_queues() const;

  /// The CloudEvents source of this service's events.
  [[nodiscard]] std::string source_uri() const {
    return service_uri.empty() ? "urn:depot:" + service : service_uri;
  }

  /// How many batches this node's durable workers handle at once: max_concurrent_batches, or
  /// when 0, one per core of this machine and at least 2.
  [[nodiscard]] int concurrent_batches() const;

  /// Workers for `queue` on this node.
  [[nodiscard]] int concurrency_of(const std::string& queue, int queue_default) const {
    auto i = queue_concurrency.find(queue);
    if (i != queue_concurrency.end())
      return i->second;
    return queue_default > 0 ? queue_default : concurrency;
  }
};

/// Thrown for a setting outside what a node accepts; what() names the option, the value given
/// and what it may be. Code errc::invalid_setting; a depot::error, so a std::runtime_error (not
/// a std::invalid_argument): catch invalid_setting or depot::error.
class invalid_setting : public error {
public:
  explicit invalid_setting(const std::string& what) : error(errc::invalid_setting, what) {}
};

/// The kinds of option values, each with where it lives in node_settings and its bounds.
namespace option_field {
struct text {
  std::string& (*ref)(node_settings&);
  /// Throws invalid_setting, naming the option, for a value it does not take; may be null.
  void (*check)(const std::string& value) = nullptr;
};
struct integer {
  int& (*ref)(node_settings&);
  int min, max;
};
struct duration {
  std::chrono::milliseconds& (*ref)(node_settings&);
  std::chrono::milliseconds min, max;
};
struct flag {
  bool& (*ref)(node_settings&);
};
/// QUEUE=N,QUEUE=N: a count per queue, each within [min, max].
struct queue_counts {
  std::map<std::string, int>& (*ref)(node_settings&);
  int min, max;
};
} // namespace option_field

/// One option of every node binary: `--name`, `DEPOT_<NAME>`, a row of docs/configuration.md.
struct node_option {
  std::string_view name;
  std::string_view help;
  std::variant<option_field::text, option_field::integer, option_field::duration,
               option_field::flag, option_field::queue_counts>
    field;
};

/// Every option, in the order --help and describe show them.
[[nodiscard]] const std::vector<node_option>& node_options();

/// A duration as the command line takes it, in the largest unit that keeps it whole: "250ms",
/// "2s", "1min", "24h".
[[nodiscard]] std::string show_duration(std::chrono::milliseconds d);

/// The value of option `o` in `s` as the command line takes it ("250ms", "true", "q=2,r=1").
[[nodiscard]] std::string show(const node_option& o, const node_settings& s);

/// Parses "QUEUE=N,QUEUE=N" for option `o` (a queue_counts option); throws invalid_setting
/// naming the option and the bad item.
[[nodiscard]] std::map<std::string, int> parse_queue_counts(const node_option& o,
                                                            std::string_view text);

/// The error for `value` given to option `o`, an integer or duration outside its bounds.
[[nodiscard]] invalid_setting out_of_range(const node_option& o, std::string_view value);

/// Checks every option of `s` against its bounds, and the rules between options (stale-after
/// at least twice heartbeat-interval, max-retry-delay not below retry-delay). Throws
/// invalid_setting for the first that fails.
void check(const node_settings& s);

/// The librdkafka properties of --kafka-property as (name, value) pairs; throws invalid_setting
/// naming the option and the item that is not NAME=VALUE.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> kafka_properties_of(
  const node_settings& s);

/// Throws invalid_setting unless `name` is a plain lower-case SQL identifier (letters, digits,
/// '_', not starting with a digit, at most 63 bytes): the only schema names depot accepts.
void check_schema_name(const std::string& name);

} // namespace depot
