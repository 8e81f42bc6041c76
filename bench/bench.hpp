// depot-bench: shared options, results and measuring helpers of the benchmark cases.
// Every case measures depot's path and, in the same run and on the same database, a baseline
// doing the same work through libpq without depot code (recovery has none). No CAF and no depot
// here: this header is included everywhere.
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

/// What the command line chose.
struct options {
  std::string db; ///< libpq connection URI (default: $DEPOT_DB)
  std::int64_t messages = 100000;
  std::string out = "build/bench.json";
  std::vector<std::string> cases; ///< default: every case (see case_names())
  int batch_size = 100; ///< envelopes claimed and handled per transaction (node and baseline)
  int send_batch = 500; ///< messages per send transaction (senders and baseline producer)
  int senders = 1;      ///< sender threads of depot's path
  int concurrency = 2;  ///< workers per queue of the node
  int accounts = 1000;  ///< accounts of the bank cases
  int timeout_s = 600;  ///< give up on a case after this long
  int rounds = 3;       ///< runs of each path per case, alternating; the median is reported
  std::int64_t latency_messages = 2000;   ///< messages of the latency cases, one at a time
  std::int64_t recovery_messages = 50000; ///< backlog of the recovery case
  std::int64_t saga_instances = 10000;    ///< sagas of the saga case (three steps each)
  std::string kafka_offsets = "kafka";    ///< where the kafka case's listener keeps its offsets
};

/// What a child process of depot-bench (`--role=...`) runs with; the parent sets every field.
struct role_options {
  std::string role; ///< "remote-sender" or "node"
  std::string db;   ///< libpq connection URI, search_path included
  std::string schema;
  int node_id = 0;
  int batch_size = 100;
  int concurrency = 1;
};

/// WAL bytes written and CPU seconds used (PostgreSQL server processes, this process).
struct resources {
  std::int64_t wal_bytes = 0;
  double postgres_cpu_s = 0;
  double bench_cpu_s = 0;
  std::int64_t at_ns = 0;
  /// Now; `db` is where the WAL position is read.
  static resources sample(const std::string& db);
  resources operator-(const resources& earlier) const;
};

/// Starts a measured phase from the same state as every other: a CHECKPOINT writes back what
/// earlier phases left dirty, so that its cost (and the full-page images after it) is not charged
/// to whichever phase runs next.
void settle(const std::string& db);

/// One measured path: depot's or the baseline's.
struct measurement {
  double msgs_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double seconds = 0;        ///< first send to last handled commit
  std::int64_t messages = 0; ///< messages counted
  bool ok = false;           ///< every message was handled in time
  std::string note;          ///< what went wrong, or extra facts
  resources used;            ///< from the first send to the last handled commit
  double recovery_s = 0;     ///< recovery: restart of the killed node to its first handler start
};

/// One case: depot's path and its baseline (the median rounds).
struct case_result {
  std::string name;
  measurement ours;
  measurement baseline;
  measurement single_worker;  ///< bank_concurrent: depot's path with one worker per queue
  measurement raw_single;     ///< bank_concurrent: the bank baseline, a consumer per busy worker
  measurement raw_concurrent; ///< of the one-worker run and of the measured run
  measurement kafka_raw;      ///< kafka: raw librdkafka produce and consume, no database
  measurement queries;        ///< cluster: request round trips to the other node
  measurement local_queries;  ///< cluster: the same requests answered on the same node
  std::vector<double> rounds_msgs_per_s;               ///< depot's path, every round in order
  std::vector<double> rounds_baseline_msgs_per_s;      ///< the baseline, every round in order
  std::vector<double> rounds_single_worker_msgs_per_s; ///< bank_concurrent's one-worker runs
  std::vector<double> rounds_raw_single_msgs_per_s;
  std::vector<double> rounds_raw_concurrent_msgs_per_s;
  std::vector<double> rounds_kafka_raw_msgs_per_s; ///< kafka's raw librdkafka runs
  std::vector<double> rounds_queries_per_s;        ///< cluster's cross-node queries
  std::vector<double> rounds_local_queries_per_s;  ///< cluster's same-node queries
  std::uint64_t envelopes_handled = 0;             ///< by the node, cascades and warm-up included
  double drained_s = 0; ///< first send until every queue was empty (cascades)
  [[nodiscard]] double ratio() const {
    return baseline.msgs_per_s > 0 ? ours.msgs_per_s / baseline.msgs_per_s : 0;
  }
};

// -- helpers ----------------------------------------------------------------------------------

using clock = std::chrono::steady_clock;

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch())
    .count();
}

/// The integer after `key` (e.g. `"seq":`) in a flat JSON body the benchmark wrote; -1 when
/// absent.
inline std::int64_t number_after(std::string_view body, std::string_view key) {
  auto at = body.find(key);
  if (at == std::string_view::npos)
    return -1;
  std::int64_t value = -1;
  auto begin = body.data() + at + key.size();
  std::from_chars(begin, body.data() + body.size(), value);
  return value;
}

/// The sequence number carried in a body as `"seq":N`; -1 when absent.
inline std::int64_t seq_of(std::string_view body) {
  return number_after(body, "\"seq\":");
}

// -- the bank workload, shared by depot's path and the baseline -------------------------------

/// Every account's starting balance: never low, never overdrawn.
constexpr std::int64_t bank_balance = 1'000'000'000;
/// Every account's minimum threshold: no low-balance cascades.
constexpr std::int64_t bank_threshold = 0;

/// The account debit `seq` goes to (1 .. accounts).
inline std::int64_t bank_account_of(std::int64_t seq, int accounts) {
  return seq % accounts + 1;
}

/// What each debit of `account` takes: fixed per account, so that the balances expected do not
/// depend on the order of handling.
inline std::int64_t bank_amount_of(std::int64_t account) {
  return 10 + (account * 7) % 41;
}

/// The sum of the balances once debits 0 .. messages-1 were taken off.
inline std::int64_t bank_balances_after(std::int64_t messages, int accounts) {
  auto total = bank_balance * accounts;
  for (std::int64_t seq = 0; seq < messages; ++seq)
    total -= bank_amount_of(bank_account_of(seq, accounts));
  return total;
}

/// Send-commit and handler-start times of every message, indexed by sequence number.
class latencies {
public:
  explicit latencies(std::int64_t n)
    : sent_(std::make_unique<std::atomic<std::int64_t>[]>(static_cast<std::size_t>(n)))
    , started_(std::make_unique<std::atomic<std::int64_t>[]>(static_cast<std::size_t>(n)))
    , n_(n) {
    for (std::int64_t i = 0; i < n; ++i) {
      sent_[i].store(0, std::memory_order_relaxed);
      started_[i].store(0, std::memory_order_relaxed);
    }
  }

  void sent(std::int64_t seq, std::int64_t ns) {
    if (seq >= 0 && seq < n_)
      sent_[seq].store(ns, std::memory_order_relaxed);
  }

  /// Records the first start of `seq`; true when this was the first.
  bool started(std::int64_t seq, std::int64_t ns) {
    if (seq < 0 || seq >= n_)
      return false;
    std::int64_t none = 0;
    if (!started_[seq].compare_exchange_strong(none, ns, std::memory_order_relaxed))
      return false;
    distinct_.fetch_add(1, std::memory_order_release);
    return true;
  }

  /// How many distinct messages have started.
  [[nodiscard]] std::int64_t distinct() const { return distinct_.load(std::memory_order_acquire); }

  /// p50 and p99 in milliseconds over every message with both times.
  [[nodiscard]] std::pair<double, double> percentiles() const {
    std::vector<double> ms;
    ms.reserve(static_cast<std::size_t>(n_));
    for (std::int64_t i = 0; i < n_; ++i) {
      auto s = sent_[i].load(std::memory_order_relaxed);
      auto h = started_[i].load(std::memory_order_relaxed);
      if (s != 0 && h != 0)
        ms.push_back(static_cast<double>(h - s) / 1e6);
    }
    if (ms.empty())
      return {0, 0};
    std::sort(ms.begin(), ms.end());
    auto at = [&ms](double p) {
      auto i = static_cast<std::size_t>(p * static_cast<double>(ms.size() - 1) + 0.5);
      return ms[std::min(i, ms.size() - 1)];
    };
    return {at(0.50), at(0.99)};
  }

private:
  std::unique_ptr<std::atomic<std::int64_t>[]> sent_;
  std::unique_ptr<std::atomic<std::int64_t>[]> started_;
  std::int64_t n_;
  std::atomic<std::int64_t> distinct_{0};
};

// -- cases ------------------------------------------------------------------------------------

/// Workers per queue of bank_concurrent's measured run (its other run has one).
constexpr int bank_concurrent_workers = 4;
/// The bank's queues that are busy in a run: the debits and their AccountUpdated cascade.
constexpr int bank_busy_queues = 2;

/// Every case, in the order a default run runs them.
[[nodiscard]] const std::vector<std::string>& case_names();

/// What a case measures: that decides its figures and which of them picks its median round.
enum class case_kind {
  throughput, ///< noop, bank, bank_concurrent, saga, kafka: msgs_per_s under load
  latency,    ///< latency, latency_remote, cluster: p50_ms and p99_ms, one message at a time
  recovery,   ///< recovery: recovery_s
};
[[nodiscard]] case_kind kind_of(const std::string& name);

/// Runs one round of case `name` (depot's path, then its baseline) into `round`. Throws on setup
/// errors.
void run_round(const options& o, const std::string& name, case_result& round);

/// Case `name` over its rounds: each path's figures are those of its median round (by msgs_per_s,
/// p50_ms or recovery_s, after the case's kind), every round's msgs/s listed, and the case failed
/// when any round failed.
[[nodiscard]] case_result median_of(const std::string& name,
                                    const std::vector<case_result>& rounds);

/// Runs depot's throughput path for `name` ("noop", "bank", "bank_concurrent", "saga" or
/// "saga_plain", the saga case's baseline) with the workers per queue of `o`. Throws on setup
/// errors.
measurement run_depot_case(const options& o, const std::string& name, case_result& result);

/// Runs the libpq throughput baseline doing the work of case `name` ("noop" or "bank") with
/// `consumers` consumer connections (bank: each owns a partition of the accounts).
measurement run_baseline(const options& o, const std::string& name, int consumers = 1);

/// latency: one message at a time through an idle node, sent by this process.
measurement run_latency(const options& o, case_result& result);
/// latency_remote: as run_latency, sent by a child process (a node-less sender).
measurement run_remote_latency(const options& o, case_result& result);
/// The latency cases' baseline: one row at a time, INSERT and NOTIFY, LISTEN and claim.
measurement run_latency_baseline(const options& o);
/// recovery: a node killed with a backlog, restarted under the same node id.
measurement run_recovery(const options& o);
/// kafka: depot's Kafka path, its librdkafka + libpq baseline and raw librdkafka, one round of
/// each on fresh topics of the case's embedded cluster (see kafka.hpp).
void run_kafka_round(const options& o, case_result& round);

/// cluster: two nodes of one cluster, the measured queues served by one of them: a send on the
/// other to them, one at a time (baseline: the same-node `latency` path), and request round
/// trips across the two nodes and on one node.
void run_cluster_round(const options& o, case_result& round);

/// Child process roles: the sender of latency_remote and the node of recovery. Return the exit
/// code.
int run_remote_sender(const role_options& r);
int run_recovery_node(const role_options& r);

/// Sends messages 0 .. n-1 one at a time: `send(seq)` commits message seq and returns the time
/// of its commit; then waits until `handled()` (messages handled and committed since the start)
/// has counted it, pauses 5 ms, and sends the next. Fills `lat` through send and the handler;
/// returns the throughput (n / time to the last handled) and the percentiles of `lat`.
measurement one_at_a_time(const options& o, std::int64_t n, latencies& lat,
                          const std::function<std::int64_t(std::int64_t)>& send,
                          const std::function<std::int64_t()>& handled);

/// Drops and creates `schema` (through SOCI, on `db`).
void reset_schema(const std::string& db, const std::string& schema);

/// The connection string `db` with `search_path` set to `schema` (then public).
std::string with_search_path(const std::string& db, const std::string& schema);

} // namespace bench
