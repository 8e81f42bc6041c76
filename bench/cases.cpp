// The cases depot-bench knows: what one round of each runs, and which figure picks its median
// round.
#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "bench.hpp"

namespace bench {

const std::vector<std::string>& case_names() {
  static const std::vector<std::string> names{"noop",    "bank",     "bank_concurrent",
                                              "saga",    "latency",  "latency_remote",
                                              "cluster", "recovery", "kafka"};
  return names;
}

case_kind kind_of(const std::string& name) {
  if (name == "latency" || name == "latency_remote" || name == "cluster")
    return case_kind::latency;
  if (name == "recovery")
    return case_kind::recovery;
  return case_kind::throughput;
}

void run_round(const options& o, const std::string& name, case_result& round) {
  if (name == "noop" || name == "bank") {
    round.ours = run_depot_case(o, name, round);
    round.baseline = run_baseline(o, name);
  } else if (name == "bank_concurrent") {
    auto concurrent = o;
    concurrent.concurrency = bank_concurrent_workers;
    round.ours = run_depot_case(concurrent, name, round);
    auto single = o;
    single.concurrency = 1;
    case_result single_round; // its drained time and envelope count are not reported
    round.single_worker = run_depot_case(single, name, single_round);
    if (!round.single_worker.ok) { // the case fails with either run
      round.ours.ok = false;
      round.ours.note = "with 1 worker: " + round.single_worker.note;
    }
    round.baseline = run_baseline(o, "bank");
    round.raw_single = run_baseline(o, "bank", bank_busy_queues);
    round.raw_concurrent = run_baseline(o, "bank", bank_busy_queues * bank_concurrent_workers);
    for (const auto* raw : {&round.raw_single, &round.raw_concurrent})
      if (!raw->ok) { // the case fails with any of its runs
        round.baseline.ok = false;
        round.baseline.note = "raw cycle with more consumers: " + raw->note;
      }
  } else if (name == "saga") {
    round.ours = run_depot_case(o, name, round);
    case_result plain_round; // its drained time and envelope count are not reported
    round.baseline = run_depot_case(o, "saga_plain", plain_round);
  } else if (name == "latency") {
    round.ours = run_latency(o, round);
    round.baseline = run_latency_baseline(o);
  } else if (name == "latency_remote") {
    round.ours = run_remote_latency(o, round);
    round.baseline = run_latency_baseline(o);
  } else if (name == "cluster") {
    run_cluster_round(o, round);
  } else if (name == "kafka") {
    run_kafka_round(o, round);
  } else if (name == "recovery") {
    round.ours = run_recovery(o);
    round.baseline.ok = true; // there is none
  } else {
    throw std::invalid_argument{fmt::format("unknown case '{}'", name)};
  }
}

namespace {

/// The figure that orders the rounds of case `name` to pick the median one.
double rank_of(const std::string& name, const measurement& m) {
  switch (kind_of(name)) {
    case case_kind::latency: return m.p50_ms;
    case case_kind::recovery: return m.recovery_s;
    case case_kind::throughput: return m.msgs_per_s;
  }
  return m.msgs_per_s;
}

} // namespace

case_result median_of(const std::string& name, const std::vector<case_result>& rounds) {
  auto median_by = [&](measurement case_result::*member) {
    std::vector<const case_result*> sorted;
    for (const auto& x : rounds)
      sorted.push_back(&x);
    std::sort(sorted.begin(), sorted.end(), [&](const auto* a, const auto* b) {
      return rank_of(name, a->*member) < rank_of(name, b->*member);
    });
    return sorted[(sorted.size() - 1) / 2];
  };
  case_result r;
  r.name = name;
  const auto* ours = median_by(&case_result::ours);
  r.ours = ours->ours;
  r.envelopes_handled = ours->envelopes_handled;
  r.drained_s = ours->drained_s;
  r.baseline = median_by(&case_result::baseline)->baseline;
  r.single_worker = median_by(&case_result::single_worker)->single_worker;
  r.raw_single = median_by(&case_result::raw_single)->raw_single;
  r.raw_concurrent = median_by(&case_result::raw_concurrent)->raw_concurrent;
  r.kafka_raw = median_by(&case_result::kafka_raw)->kafka_raw;
  r.queries = median_by(&case_result::queries)->queries;
  r.local_queries = median_by(&case_result::local_queries)->local_queries;
  for (const auto& x : rounds) {
    r.rounds_msgs_per_s.push_back(x.ours.msgs_per_s);
    r.rounds_baseline_msgs_per_s.push_back(x.baseline.msgs_per_s);
    r.rounds_single_worker_msgs_per_s.push_back(x.single_worker.msgs_per_s);
    r.rounds_raw_single_msgs_per_s.push_back(x.raw_single.msgs_per_s);
    r.rounds_raw_concurrent_msgs_per_s.push_back(x.raw_concurrent.msgs_per_s);
    r.rounds_kafka_raw_msgs_per_s.push_back(x.kafka_raw.msgs_per_s);
    r.rounds_queries_per_s.push_back(x.queries.msgs_per_s);
    r.rounds_local_queries_per_s.push_back(x.local_queries.msgs_per_s);
    if (!x.ours.ok || !x.baseline.ok) {
      r.ours.ok = r.ours.ok && x.ours.ok;
      r.baseline.ok = r.baseline.ok && x.baseline.ok;
      if (r.ours.note.empty())
        r.ours.note = x.ours.note.empty() ? x.baseline.note : x.ours.note;
    }
  }
  return r;
}

} // namespace bench
