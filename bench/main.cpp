// depot-bench: measures depot's durable path against a raw libpq baseline on the same database,
// in the same run, and writes the results as JSON (see bench/README.md).
//   depot-bench [--db URI] [--messages N] [--out FILE] [--cases noop,bank,...] [tuning options]
// Some cases run this binary again as a child process with `--role=...` (see child_process.hpp):
// those options are the parent's to set and are not among those --help lists.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <caf/actor_system_config.hpp>
#include <caf/config_option_adder.hpp>
#include <fmt/format.h>
#include <libpq-fe.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include "bench.hpp"

namespace {

using bench::options;

/// CAF's config machinery, taking `--name value` as well as `--name=value`.
class option_config : public caf::actor_system_config {
public:
  /// Parses the command line; returns false when --help was printed.
  bool parse_args(int argc, char** argv) {
    string_list args;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.starts_with("--") && a.find('=') == std::string::npos) {
        auto* opt =
          custom_options_.cli_long_name_lookup(caf::string_view{a.data() + 2, a.size() - 2});
        if (opt != nullptr && !opt->is_flag()) {
          if (i + 1 >= argc)
            throw std::invalid_argument{fmt::format("option {} needs a value", a)};
          a += "=";
          a += argv[++i];
        }
      }
      args.push_back(std::move(a));
    }
    if (auto err = parse(std::move(args)))
      throw std::invalid_argument{render(err)};
    return !cli_helptext_printed;
  }
};

class bench_config : public option_config {
public:
  explicit bench_config(options& o) : o_(o) {
    cases_ = fmt::format("{}", fmt::join(bench::case_names(), ","));
    caf::config_option_adder{custom_options_, "global"}
      .add(o.db, "db", "libpq connection URI (default: $DEPOT_DB)")
      .add(o.messages, "messages", "messages per throughput case")
      .add(o.out, "out", "where the JSON results go")
      .add(cases_, "cases",
           "comma-separated cases: noop, bank, bank_concurrent, saga, latency, latency_remote, "
           "cluster, recovery, kafka (default: all)")
      .add(o.batch_size, "batch-size", "envelopes claimed and handled per transaction")
      .add(o.send_batch, "send-batch", "messages per send transaction")
      .add(o.senders, "senders", "sender threads of depot's path")
      .add(o.concurrency, "concurrency", "node workers per queue")
      .add(o.accounts, "accounts", "accounts of the bank cases")
      .add(o.latency_messages, "latency-messages", "messages of the latency cases, one at a time")
      .add(o.recovery_messages, "recovery-messages", "backlog of the recovery case")
      .add(o.saga_instances, "saga-instances", "sagas of the saga case, three steps each")
      .add(o.kafka_offsets, "kafka-offsets",
           "where the kafka case's listener keeps its offsets: kafka or postgres")
      .add(o.timeout_s, "timeout", "seconds before a case gives up")
      .add(o.rounds, "rounds", "runs of each path per case (alternating); the median counts");
  }

  /// Parses the command line into the options; returns false when --help was printed.
  bool parse_options(int argc, char** argv) {
    if (!parse_args(argc, argv))
      return false;
    o_.cases.clear();
    std::size_t start = 0;
    while (start <= cases_.size()) {
      auto comma = cases_.find(',', start);
      auto item = cases_.substr(start, comma == std::string::npos ? comma : comma - start);
      if (!item.empty())
        o_.cases.push_back(item);
      if (comma == std::string::npos)
        break;
      start = comma + 1;
    }
    return true;
  }

private:
  options& o_;
  std::string cases_;
};

/// The options of a child process; the parent gives every one as --name=value.
class role_config : public option_config {
public:
  explicit role_config(bench::role_options& r) {
    caf::config_option_adder{custom_options_, "global"}
      .add(r.role, "role", "remote-sender or node")
      .add(r.db, "db", "libpq connection URI")
      .add(r.schema, "schema", "depot's schema")
      .add(r.node_id, "node-id", "node id of the node role")
      .add(r.batch_size, "batch-size", "envelopes claimed and handled per transaction")
      .add(r.concurrency, "concurrency", "node workers per queue");
  }
};

/// Runs this process as the child role its command line names.
int run_role(int argc, char** argv) {
  bench::role_options r;
  try {
    role_config cfg{r};
    if (!cfg.parse_args(argc, argv))
      return 0;
    if (r.role == "remote-sender")
      return bench::run_remote_sender(r);
    if (r.role == "node")
      return bench::run_recovery_node(r);
    throw std::invalid_argument{fmt::format("unknown role '{}'", r.role)};
  } catch (const std::exception& e) {
    fmt::print(stderr, "depot-bench --role={}: {}\n", r.role, e.what());
    return 1;
  }
}

std::string cpu_model() {
  std::ifstream in{"/proc/cpuinfo"};
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("model name")) {
      auto colon = line.find(':');
      auto value = colon == std::string::npos ? line : line.substr(colon + 1);
      return value.substr(std::min(value.find_first_not_of(' '), value.size()));
    }
  return "unknown";
}

struct machine_info {
  unsigned nproc = std::thread::hardware_concurrency();
  std::string cpu = cpu_model();
  std::string postgres, fsync, synchronous_commit;
};

std::string show(PGconn* c, const char* setting) {
  auto* r = PQexec(c, fmt::format("SHOW {}", setting).c_str());
  std::string v = PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "?";
  PQclear(r);
  return v;
}

machine_info machine(const std::string& db) {
  machine_info m;
  auto* c = PQconnectdb(db.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string error = PQerrorMessage(c);
    PQfinish(c);
    throw std::runtime_error{fmt::format("cannot connect to {}: {}", db, error)};
  }
  m.postgres = show(c, "server_version");
  m.fsync = show(c, "fsync");
  m.synchronous_commit = show(c, "synchronous_commit");
  PQfinish(c);
  return m;
}

void write_json(const std::string& path, const machine_info& mi, const options& o,
                const std::vector<bench::case_result>& results) {
  rapidjson::StringBuffer buf;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w{buf};
  auto str = [&w](const char* key, const std::string& v) {
    w.Key(key);
    w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
  };
  auto num = [&w](const char* key, double v) {
    w.Key(key);
    w.Double(v);
  };
  auto integer = [&w](const char* key, std::int64_t v) {
    w.Key(key);
    w.Int64(v);
  };
  w.StartObject();
  w.Key("machine");
  w.StartObject();
  integer("nproc", mi.nproc);
  str("cpu", mi.cpu);
  str("postgres", mi.postgres);
  str("fsync", mi.fsync);
  str("synchronous_commit", mi.synchronous_commit);
  w.EndObject();
  w.Key("settings");
  w.StartObject();
  integer("messages", o.messages);
  integer("batch_size", o.batch_size);
  integer("send_batch", o.send_batch);
  integer("senders", o.senders);
  integer("concurrency", o.concurrency);
  integer("accounts", o.accounts);
  integer("rounds", o.rounds);
  integer("bank_concurrent_workers", bench::bank_concurrent_workers);
  integer("latency_messages", o.latency_messages);
  integer("recovery_messages", o.recovery_messages);
  integer("saga_instances", o.saga_instances);
  integer("baseline_producers", 1);
  integer("baseline_consumers", 1);
  w.EndObject();
  w.Key("cases");
  w.StartArray();
  for (const auto& r : results) {
    w.StartObject();
    str("name", r.name);
    num("msgs_per_s", r.ours.msgs_per_s);
    num("p50_ms", r.ours.p50_ms);
    num("p99_ms", r.ours.p99_ms);
    num("baseline_msgs_per_s", r.baseline.msgs_per_s);
    num("ratio", r.ratio());
    num("baseline_p50_ms", r.baseline.p50_ms);
    num("baseline_p99_ms", r.baseline.p99_ms);
    num("seconds", r.ours.seconds);
    num("baseline_seconds", r.baseline.seconds);
    num("drained_s", r.drained_s);
    integer("messages", r.ours.messages);
    integer("envelopes_handled", static_cast<std::int64_t>(r.envelopes_handled));
    w.Key("ok");
    w.Bool(r.ours.ok && r.baseline.ok);
    str("note", r.ours.note.empty() ? r.baseline.note : r.ours.note);
    // Per counted message: WAL bytes, and CPU microseconds of PostgreSQL and of this process.
    auto per = [&](const char* key, const bench::measurement& m) {
      auto n = static_cast<double>(std::max<std::int64_t>(m.messages, 1));
      w.Key(key);
      w.StartObject();
      num("wal_bytes_per_msg", static_cast<double>(m.used.wal_bytes) / n);
      num("postgres_cpu_us_per_msg", m.used.postgres_cpu_s * 1e6 / n);
      num("bench_cpu_us_per_msg", m.used.bench_cpu_s * 1e6 / n);
      w.EndObject();
    };
    per("profile", r.ours);
    per("baseline_profile", r.baseline);
    auto list = [&w](const char* key, const std::vector<double>& values) {
      w.Key(key);
      w.StartArray();
      for (auto v : values)
        w.Double(v);
      w.EndArray();
    };
    list("rounds_msgs_per_s", r.rounds_msgs_per_s);
    list("rounds_baseline_msgs_per_s", r.rounds_baseline_msgs_per_s);
    // Fields only one case measures appear only on that case.
    if (bench::kind_of(r.name) == bench::case_kind::recovery)
      num("recovery_s", r.ours.recovery_s);
    if (r.name == "bank_concurrent") {
      num("single_worker_msgs_per_s", r.single_worker.msgs_per_s);
      list("rounds_single_worker_msgs_per_s", r.rounds_single_worker_msgs_per_s);
      num("raw_single_consumers", bench::bank_busy_queues);
      num("raw_single_msgs_per_s", r.raw_single.msgs_per_s);
      list("rounds_raw_single_msgs_per_s", r.rounds_raw_single_msgs_per_s);
      num("raw_concurrent_consumers", bench::bank_busy_queues * bench::bank_concurrent_workers);
      num("raw_concurrent_msgs_per_s", r.raw_concurrent.msgs_per_s);
      list("rounds_raw_concurrent_msgs_per_s", r.rounds_raw_concurrent_msgs_per_s);
      per("single_worker_profile", r.single_worker);
      per("raw_single_profile", r.raw_single);
      per("raw_concurrent_profile", r.raw_concurrent);
    }
    if (r.name == "cluster") {
      num("query_msgs_per_s", r.queries.msgs_per_s);
      num("query_p50_ms", r.queries.p50_ms);
      num("query_p99_ms", r.queries.p99_ms);
      num("local_query_msgs_per_s", r.local_queries.msgs_per_s);
      num("local_query_p50_ms", r.local_queries.p50_ms);
      num("local_query_p99_ms", r.local_queries.p99_ms);
      list("rounds_query_msgs_per_s", r.rounds_queries_per_s);
      list("rounds_local_query_msgs_per_s", r.rounds_local_queries_per_s);
    }
    if (r.name == "kafka") {
      num("raw_msgs_per_s", r.kafka_raw.msgs_per_s);
      num("raw_p50_ms", r.kafka_raw.p50_ms);
      num("raw_p99_ms", r.kafka_raw.p99_ms);
      list("rounds_raw_msgs_per_s", r.rounds_kafka_raw_msgs_per_s);
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  auto parent = std::filesystem::path{path}.parent_path();
  if (!parent.empty())
    std::filesystem::create_directories(parent);
  std::ofstream out{path};
  out << buf.GetString() << '\n';
  if (!out)
    throw std::runtime_error{fmt::format("cannot write {}", path)};
}

/// `more`'s msgs/s as a share of `fewer`'s: what more workers (or consumers) gave.
double scaling(const bench::measurement& more, const bench::measurement& fewer) {
  return fewer.msgs_per_s > 0 ? more.msgs_per_s / fewer.msgs_per_s : 0;
}

/// The figures of case `name` in `r`, for the progress lines.
std::string figures(const std::string& name, const bench::case_result& r) {
  switch (bench::kind_of(name)) {
    case bench::case_kind::latency: {
      auto text = fmt::format(
        "depot p50 {:.2f} ms, p99 {:.2f} ms ({} messages, {:.0f} msg/s), baseline p50 {:.2f} "
        "ms, p99 {:.2f} ms",
        r.ours.p50_ms, r.ours.p99_ms, r.ours.messages, r.ours.msgs_per_s, r.baseline.p50_ms,
        r.baseline.p99_ms);
      if (name == "cluster")
        text += fmt::format(
          "; queries across nodes {:.0f}/s (p50 {:.2f} ms), on one node "
          "{:.0f}/s (p50 {:.2f} ms)",
          r.queries.msgs_per_s, r.queries.p50_ms, r.local_queries.msgs_per_s,
          r.local_queries.p50_ms);
      return text;
    }
    case bench::case_kind::recovery:
      return fmt::format("depot restart to first handled {:.3f} s", r.ours.recovery_s);
    case bench::case_kind::throughput: break;
  }
  auto text = fmt::format(
    "depot {:.0f} msg/s in {:.2f} s (drained {:.2f} s, {} envelopes), baseline {:.0f} msg/s in "
    "{:.2f} s",
    r.ours.msgs_per_s, r.ours.seconds, r.drained_s, r.envelopes_handled, r.baseline.msgs_per_s,
    r.baseline.seconds);
  if (name == "bank_concurrent")
    text += fmt::format(
      ", 1 worker {:.0f} msg/s; raw cycle with {} consumers {:.0f} msg/s, with {} "
      "{:.0f} msg/s",
      r.single_worker.msgs_per_s, bench::bank_busy_queues, r.raw_single.msgs_per_s,
      bench::bank_busy_queues * bench::bank_concurrent_workers, r.raw_concurrent.msgs_per_s);
  if (name == "kafka")
    text = fmt::format(
      "depot {:.0f} msg/s in {:.2f} s (p50 {:.1f} ms, p99 {:.1f} ms, {} envelopes), baseline "
      "{:.0f} msg/s in {:.2f} s (p50 {:.1f} ms, p99 {:.1f} ms), raw librdkafka {:.0f} msg/s "
      "(p50 {:.1f} ms, p99 {:.1f} ms), ratio {:.3f}",
      r.ours.msgs_per_s, r.ours.seconds, r.ours.p50_ms, r.ours.p99_ms, r.envelopes_handled,
      r.baseline.msgs_per_s, r.baseline.seconds, r.baseline.p50_ms, r.baseline.p99_ms,
      r.kafka_raw.msgs_per_s, r.kafka_raw.p50_ms, r.kafka_raw.p99_ms, r.ratio());
  return text;
}

} // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view{argv[1]}.starts_with("--role="))
    return run_role(argc, argv);
  // A child process that died must not take this one with it when it writes to its pipe.
  std::signal(SIGPIPE, SIG_IGN);
  options o;
  if (const char* db = std::getenv("DEPOT_DB"))
    o.db = db;
  try {
    bench_config cfg{o};
    if (!cfg.parse_options(argc, argv))
      return 0;
    if (o.db.empty())
      throw std::invalid_argument{"no database: set DEPOT_DB or --db"};
    if (o.messages < 1 || o.batch_size < 1 || o.send_batch < 1 || o.senders < 1 ||
        o.concurrency < 1 || o.accounts < 1 || o.rounds < 1 || o.latency_messages < 1 ||
        o.recovery_messages < 1 || o.saga_instances < 1)
      throw std::invalid_argument{
        "messages, latency-messages, recovery-messages, saga-instances, batch sizes, senders, "
        "concurrency, accounts and rounds must be at least 1"};
    const auto& known = bench::case_names();
    for (const auto& c : o.cases)
      if (std::find(known.begin(), known.end(), c) == known.end())
        throw std::invalid_argument{
          fmt::format("unknown case '{}' (cases: {})", c, fmt::join(known, ", "))};
  } catch (const std::exception& e) {
    fmt::print(stderr, "depot-bench: {}\n", e.what());
    return 2;
  }

  try {
    auto started = bench::clock::now();
    auto mi = machine(o.db);
    fmt::print("machine: {} cores, {}; PostgreSQL {} (fsync {}, synchronous_commit {})\n", mi.nproc,
               mi.cpu, mi.postgres, mi.fsync, mi.synchronous_commit);
    fmt::print(
      "settings: {} messages per throughput case; node batch-size {}, concurrency {} per queue, "
      "{} sender thread(s) x {} per send; baseline: 1 producer (COPY x {}), "
      "1 consumer (DELETE ... SKIP LOCKED x {}); bank: {} accounts (bank_concurrent: {} and 1 "
      "worker per queue); saga: {} sagas of 3 steps (baseline: as plain handlers); latency: {} "
      "messages; recovery: {} messages\n",
      o.messages, o.batch_size, o.concurrency, o.senders, o.send_batch, o.send_batch, o.batch_size,
      o.accounts, bench::bank_concurrent_workers, o.saga_instances, o.latency_messages,
      o.recovery_messages);
    std::fflush(stdout);
    std::vector<bench::case_result> results;
    bool ok = true;
    for (const auto& name : o.cases) {
      auto t = bench::clock::now();
      // Rounds alternate the two paths, so that a slow spell of the machine hits both; each path
      // is then represented by its median round.
      std::vector<bench::case_result> rounds;
      for (int i = 0; i < o.rounds; ++i) {
        auto& round = rounds.emplace_back();
        bench::run_round(o, name, round);
        const auto& note = round.ours.note.empty() ? round.baseline.note : round.ours.note;
        fmt::print("{} round {}: {}{}{}\n", name, i + 1, figures(name, round),
                   note.empty() ? "" : "; ", note);
        std::fflush(stdout);
      }
      auto r = bench::median_of(name, rounds);
      fmt::print("{}: median of {} round(s): {}; case took {:.1f} s\n", name, o.rounds,
                 figures(name, r), std::chrono::duration<double>(bench::clock::now() - t).count());
      auto show_profile = [&](const char* who, const bench::measurement& m) {
        if (m.used.at_ns == 0)
          return; // not measured (recovery, its absent baseline)
        auto n = static_cast<double>(m.messages);
        fmt::print(
          "  {:<8} per message: {:.0f} WAL bytes, {:.0f} us PostgreSQL CPU, {:.0f} us "
          "bench CPU ({:.0f}% of {} cores busy)\n",
          who, static_cast<double>(m.used.wal_bytes) / n, m.used.postgres_cpu_s * 1e6 / n,
          m.used.bench_cpu_s * 1e6 / n,
          m.seconds > 0
            ? 100 * (m.used.postgres_cpu_s + m.used.bench_cpu_s) / (m.seconds * mi.nproc)
            : 0,
          mi.nproc);
      };
      show_profile("depot", r.ours);
      show_profile("baseline", r.baseline);
      if (name == "kafka")
        show_profile("raw", r.kafka_raw);
      std::fflush(stdout);
      ok = ok && r.ours.ok && r.baseline.ok;
      results.push_back(std::move(r));
    }
    fmt::print("\n{:<15} {:>12} {:>9} {:>9} {:>20} {:>7} {:>13} {:>13} {:>11}\n", "case",
               "msgs_per_s", "p50_ms", "p99_ms", "baseline_msgs_per_s", "ratio", "base_p50_ms",
               "base_p99_ms", "recovery_s");
    for (const auto& r : results)
      fmt::print(
        "{:<15} {:>12.0f} {:>9.1f} {:>9.1f} {:>20.0f} {:>7.3f} {:>13.1f} {:>13.1f} {:>11}\n",
        r.name, r.ours.msgs_per_s, r.ours.p50_ms, r.ours.p99_ms, r.baseline.msgs_per_s, r.ratio(),
        r.baseline.p50_ms, r.baseline.p99_ms,
        bench::kind_of(r.name) == bench::case_kind::recovery
          ? fmt::format("{:.3f}", r.ours.recovery_s)
          : "-");
    for (const auto& r : results)
      if (r.name == "bank_concurrent")
        fmt::print(
          "bank_concurrent with 1 worker per queue: {:.0f} msg/s ({} workers: {:.3f} of it); the "
          "raw cycle with {} consumers: {:.0f} msg/s ({} consumers: {:.3f} of it)\n",
          r.single_worker.msgs_per_s, bench::bank_concurrent_workers,
          scaling(r.ours, r.single_worker), bench::bank_busy_queues, r.raw_single.msgs_per_s,
          bench::bank_busy_queues * bench::bank_concurrent_workers,
          scaling(r.raw_concurrent, r.raw_single));
    for (const auto& r : results)
      if (r.name == "cluster")
        fmt::print(
          "cluster: send to the other node p50 {:.2f} ms ({:.2f}x the same node's); queries "
          "across nodes {:.0f}/s, p50 {:.2f} ms, p99 {:.2f} ms; on one node {:.0f}/s, p50 "
          "{:.2f} ms, p99 {:.2f} ms\n",
          r.ours.p50_ms, r.baseline.p50_ms > 0 ? r.ours.p50_ms / r.baseline.p50_ms : 0,
          r.queries.msgs_per_s, r.queries.p50_ms, r.queries.p99_ms, r.local_queries.msgs_per_s,
          r.local_queries.p50_ms, r.local_queries.p99_ms);
    for (const auto& r : results)
      if (r.name == "kafka")
        fmt::print(
          "kafka: raw librdkafka (produce and consume, no database) {:.0f} msg/s, p50 "
          "{:.1f} ms, p99 {:.1f} ms\n",
          r.kafka_raw.msgs_per_s, r.kafka_raw.p50_ms, r.kafka_raw.p99_ms);
    write_json(o.out, mi, o, results);
    fmt::print("\nwrote {} ({:.1f} s in all)\n", o.out,
               std::chrono::duration<double>(bench::clock::now() - started).count());
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "depot-bench: {}\n", e.what());
    return 1;
  }
}
