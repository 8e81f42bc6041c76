// depot-bench's kafka case, the parts every path shares: plain librdkafka clients, the
// commands producer, the events reader and the measurement around them. Commands are binary
// CloudEvents of type bench.debit, produced to a commands topic; each path turns every command
// into one event on its events topic (raw: reads the commands themselves), which a reader
// consumes back. No CAF and no depot code here: the baseline and the raw path use it too.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <librdkafka/rdkafka.h>

#include "bench.hpp"

namespace bench::kafka {

/// The CloudEvents type of the commands, and of the events each path makes of them.
inline constexpr const char* command_type = "bench.debit";
inline constexpr const char* event_type = "bench.debited";

/// Partitions of every topic of the case (the mock cluster's default).
inline constexpr int partitions = 4;

/// fetch.wait.max.ms of every consumer of the case (the bench's, the baseline's and, through
/// --kafka-property, depot's listener). The mock broker answers a fetch that finds no data only
/// after this wait, even when records arrive meanwhile (a real broker answers as soon as they
/// do): at librdkafka's default of 500 ms each idle consumer in a path would add up to half a
/// second, which measures the mock and not the path.
inline constexpr const char* fetch_wait_ms = "10";

/// Closes (consumers) and destroys a librdkafka client.
struct client_deleter {
  void operator()(rd_kafka_t* rk) const;
};
using client = std::unique_ptr<rd_kafka_t, client_deleter>;

/// A producer of `brokers` with acks=all and linger.ms=5 (as depot's relay), idempotent or not,
/// whose delivery reports go to `on_delivery` (may be null) with `opaque`. Throws
/// std::runtime_error naming what librdkafka refused.
[[nodiscard]] client make_producer(const std::string& brokers, bool idempotent,
                                   void (*on_delivery)(rd_kafka_t*, const rd_kafka_message_t*,
                                                       void*),
                                   void* opaque);
/// A consumer in `group` subscribed to `topic`, starting at the earliest offsets when the group
/// has none, committing by itself or not.
[[nodiscard]] client make_consumer(const std::string& brokers, const std::string& group,
                                   const std::string& topic, bool auto_commit);

/// The JSON data of command `seq`, produced at `sent_ns`: a DebitAccount of 1 from account
/// acct-K with the sequence number and the produce time (steady clock) as extra members, which
/// every path carries into the event it makes.
[[nodiscard]] std::string command_body(std::int64_t seq, std::int64_t sent_ns, int accounts);

/// One path's pass: where its commands go and where the reader finds what became of them.
struct flow {
  std::string brokers;
  std::string commands; ///< the topic the commands are produced to
  std::string events;   ///< the topic the reader consumes (raw: `commands`)
  std::string group;    ///< the reader's consumer group (fresh per pass)
};

/// Measures one pass of a path that is already running: starts a reader of `f.events`,
/// produces one warm-up command (seq -1) and waits until the reader sees it (every consumer
/// group's first join, the connections and the first batches: not timed), then produces
/// o.messages commands from this thread as fast as librdkafka takes them and ends when the
/// reader has seen an event of each. Throughput: commands divided by the time from the first
/// produce to the consumption of the last new one; latency: from each command's produce call
/// (its sent_ns) to the consumption of its first event. The resources are sampled over the
/// same span, after a CHECKPOINT. It gives up early when `trouble()` says what went wrong.
[[nodiscard]] measurement measure(const options& o, const flow& f,
                                  const std::function<std::string()>& trouble);

/// The kafka case's baseline: a hand-written librdkafka + libpq pipeline doing the durable
/// steps of depot's path, one thread per stage, its ingest consumer in `ingest_group` (see
/// kafka_baseline.cpp).
[[nodiscard]] measurement run_baseline(const options& o, const flow& f,
                                       const std::string& ingest_group);

/// The transport's limit: the commands produced and consumed back (f.events = f.commands), no
/// database.
[[nodiscard]] measurement run_raw(const options& o, const flow& f);

} // namespace bench::kafka
