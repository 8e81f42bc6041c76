// depot-bench: shared options, results and measuring helpers of the benchmark cases.
// Every case measures depot's path (a node with senders and handlers running at the same time)
// and, in the same run and on the same database, a baseline doing the raw claim cycle through
// libpq without depot code.
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
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
  std::vector<std::string> cases{"noop", "bank"};
  int batch_size = 100; ///< envelopes claimed and handled per transaction (node and baseline)
  int send_batch = 500; ///< messages per send transaction (senders and baseline producer)
  int senders = 1;      ///< sender threads of depot's path
  int concurrency = 2;  ///< workers per queue of the node
  int accounts = 1000;  ///< accounts of the bank case
  int timeout_s = 600;  ///< give up on a case after this long
  int rounds = 3;       ///< runs of each path per case, alternating; the median is reported
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
};

/// One case: depot's path and its baseline (the median rounds).
struct case_result {
  std::string name;
  measurement ours;
  measurement baseline;
  std::vector<double> rounds_msgs_per_s;          ///< depot's path, every round in order
  std::vector<double> rounds_baseline_msgs_per_s; ///< the baseline, every round in order
  std::uint64_t envelopes_handled = 0;            ///< by the node, cascades and warm-up included
  double drained_s = 0; ///< first send until every queue was empty (cascades)
  [[nodiscard]] double ratio() const {
    return baseline.msgs_per_s > 0 ? ours.msgs_per_s / baseline.msgs_per_s : 0;
  }
};

/// Runs depot's path for `name` ("noop" or "bank"). Throws on setup errors.
measurement run_depot_case(const options& o, const std::string& name, case_result& result);

/// Runs the libpq baseline with bodies shaped like those of case `name`.
measurement run_baseline(const options& o, const std::string& name);

// -- helpers ----------------------------------------------------------------------------------

using clock = std::chrono::steady_clock;

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch())
    .count();
}

/// The sequence number carried in a body as `"seq":N`; -1 when absent.
inline std::int64_t seq_of(std::string_view body) {
  constexpr std::string_view key = "\"seq\":";
  auto at = body.find(key);
  if (at == std::string_view::npos)
    return -1;
  std::int64_t seq = -1;
  auto begin = body.data() + at + key.size();
  std::from_chars(begin, body.data() + body.size(), seq);
  return seq;
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

/// The connection string `db` with `search_path` set to `schema` (then public).
std::string with_search_path(const std::string& db, const std::string& schema);

} // namespace bench
