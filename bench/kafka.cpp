// depot-bench's kafka case: one round runs depot's path, the baseline and raw librdkafka, each
// on fresh topics of one embedded Kafka cluster (librdkafka's mock, in this process, living as
// long as it) and on the same database.
//   depot: a node whose Kafka listener stores the commands in the durable inbox; a no-op
//          handler publishes one bench.debited event per command through the outbox, routed to
//          the events topic, which the node's relay produces.
//   baseline, raw: kafka_baseline.cpp.
// What is measured, and how the consumer-group joins are kept out of it: kafka.hpp's measure().
#include <fmt/format.h>

#include <depot/depot.hpp>
#include <depot/transports/kafka.hpp>

#include "bench.hpp"
#include "kafka.hpp"
#include "node.hpp"

namespace bench {

namespace {

/// A command as depot's handler decodes it: the DebitAccount fields and the two the benchmark
/// carries through.
struct kafka_debit {
  std::string account_id;
  std::int64_t amount = 0;
  std::int64_t seq = 0;
  std::int64_t sent_ns = 0;
};
DEPOT_MESSAGE(kafka_debit, "bench.debit", account_id, amount, seq, sent_ns)

/// The event the handler publishes for each command.
struct kafka_debited {
  std::string account_id;
  std::int64_t amount = 0;
  std::int64_t seq = 0;
  std::int64_t sent_ns = 0;
};
DEPOT_MESSAGE(kafka_debited, "bench.debited", account_id, amount, seq, sent_ns)

/// The case's cluster: made by the first round, destroyed when the process exits.
depot::embedded_kafka& cluster() {
  static depot::embedded_kafka c;
  return c;
}

/// depot's path: a node with a Kafka listener on f.commands and a relay to f.events.
measurement run_depot_kafka(const options& o, const kafka::flow& f,
                            const std::string& listener_group, case_result& result) {
  const std::string schema = "bench_kafka";
  reset_schema(o.db, schema);
  depot::routing app;
  app.handle<kafka_debit>([](const kafka_debit& m, depot::context& ctx) {
    ctx.publish(kafka_debited{m.account_id, m.amount, m.seq, m.sent_ns});
  });
  app.publish<kafka_debited>().to_kafka(f.events);
  app.listen_to_kafka({f.commands})
    .in_group(listener_group)
    .keep_offsets_in(o.kafka_offsets == "postgres" ? depot::offset_store::postgres
                                                   : depot::offset_store::kafka);

  auto s = node_settings_of(o, schema);
  s.kafka = f.brokers;
  s.service_uri = "urn:bench:depot";
  s.kafka_properties = fmt::format("fetch.wait.max.ms={}", kafka::fetch_wait_ms);
  depot::node n{app, s};
  n.start();
  auto m = kafka::measure(o, f, [&n] {
    auto h = n.health();
    return h.status == depot::node_health::state::failed ? "the node failed: " + h.reason
                                                         : std::string{};
  });
  auto stats = n.stats();
  n.stop();
  result.envelopes_handled = stats.handled;
  if (m.ok && stats.dead_lettered + stats.expired + stats.discarded > 0)
    m.note = fmt::format("{} dead-lettered, {} expired, {} discarded", stats.dead_lettered,
                         stats.expired, stats.discarded);
  return m;
}

} // namespace

void run_kafka_round(const options& o, case_result& round) {
  static int rounds = 0;
  auto& c = cluster();
  const auto r = ++rounds;
  auto flow_of = [&](const std::string& path) {
    kafka::flow f{c.bootstrap(), fmt::format("bench.commands.{}.r{}", path, r),
                  fmt::format("bench.events.{}.r{}", path, r),
                  fmt::format("bench-reader-{}-r{}", path, r)};
    c.create_topic(f.commands, kafka::partitions);
    c.create_topic(f.events, kafka::partitions);
    return f;
  };
  round.ours = run_depot_kafka(o, flow_of("depot"), fmt::format("bench-depot-r{}", r), round);
  round.drained_s = round.ours.seconds; // the last event consumed: nothing is left to drain
  round.baseline =
    kafka::run_baseline(o, flow_of("baseline"), fmt::format("bench-baseline-r{}", r));
  kafka::flow raw{c.bootstrap(), fmt::format("bench.raw.r{}", r), fmt::format("bench.raw.r{}", r),
                  fmt::format("bench-reader-raw-r{}", r)};
  c.create_topic(raw.commands, kafka::partitions);
  round.kafka_raw = kafka::run_raw(o, raw);
  if (!round.kafka_raw.ok && round.baseline.ok) { // the case fails with any of its runs
    round.baseline.ok = false;
    round.baseline.note = "raw librdkafka: " + round.kafka_raw.note;
  }
}

} // namespace bench
