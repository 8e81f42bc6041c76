// depot's throughput path: a node handling while sender threads send, on a fresh schema per case.
//   noop: a handler that does nothing; every envelope counts.
//   bank, bank_concurrent: the bank sample's handlers; only DebitAccount commands count, their
//         cascades (AccountUpdated, ...) are handled at the same time.
//   saga: --saga-instances three-step sagas (saga.hpp): the senders send their starts, the node
//         runs the steps; every step counts, and the run ends when every saga has completed.
//   saga_plain: saga's baseline: the same chains as plain durable handlers.
// Latency is measured from the send commit (taken when send_all returns) to the handler start
// (taken in a middleware), keyed by a sequence number carried in the body as "seq"; in the saga
// cases, of a chain's start to the start of its last step.
// The end of the measurement is the commit of the last handled counted message (the saga cases:
// the last step of each chain): once every counted message has started, the last envelope each
// worker thread started is polled in the store until all of them are handled (gone from the
// inbox: the handling transaction deletes them).
#include <mutex>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "bank.hpp"
#include "bench.hpp"
#include "node.hpp"
#include "noop.hpp"
#include "saga.hpp"

namespace bench {

namespace {

using namespace std::chrono_literals;

/// The last counted envelope each worker thread started.
class last_started {
public:
  void note(const std::string& id) {
    std::lock_guard guard{m_};
    last_[std::this_thread::get_id()] = id;
  }
  std::vector<std::string> ids() {
    std::lock_guard guard{m_};
    std::vector<std::string> result;
    for (const auto& [thread, id] : last_)
      result.push_back(id);
    return result;
  }

private:
  std::mutex m_;
  std::unordered_map<std::thread::id, std::string> last_;
};

/// The saga case's paths: the saga, and its baseline of plain handlers.
bool is_saga_case(const std::string& name) {
  return name == "saga" || name == "saga_plain";
}

/// Sends the batches b = index, index + senders, ... of the run's `total` messages.
void send_batches(depot::node& n, const options& o, const std::string& name, std::int64_t total,
                  int index, latencies& lat) {
  for (std::int64_t b = index; b * o.send_batch < total; b += o.senders) {
    auto first = b * o.send_batch;
    auto last = std::min(total, first + o.send_batch);
    if (is_saga_case(name)) {
      std::vector<chain_start> ms;
      ms.reserve(static_cast<std::size_t>(last - first));
      for (auto seq = first; seq < last; ++seq)
        ms.push_back({chain_id(seq), seq});
      n.send_all(ms);
    } else if (name == "noop") {
      std::vector<noop> ms;
      ms.reserve(static_cast<std::size_t>(last - first));
      for (auto seq = first; seq < last; ++seq)
        ms.push_back({seq});
      n.send_all(ms);
    } else {
      // A DebitAccount body with the sequence number as an extra member (ignored by decoding),
      // sent through send_bodies: what send_all does after to_json.
      std::vector<std::string> bodies;
      bodies.reserve(static_cast<std::size_t>(last - first));
      for (auto seq = first; seq < last; ++seq) {
        auto a = bank_account_of(seq, o.accounts);
        auto body =
          depot::to_json(bank::debit_account{fmt::format("acct-{}", a), bank_amount_of(a)});
        body.pop_back();
        body += fmt::format(",\"seq\":{}}}", seq);
        bodies.push_back(std::move(body));
      }
      n.send_bodies(depot::type_name_of<bank::debit_account>(), std::move(bodies), {}, 0,
                    depot::dispatch::send);
    }
    auto t = now_ns();
    for (auto seq = first; seq < last; ++seq)
      lat.sent(seq, t);
  }
}

/// What each warm_up() debits from acct-1 (a debit takes at least 1); the balance check
/// counts it.
constexpr std::int64_t warm_up_debit = 1;

/// Sends the warm-up of sender `index`.
void warm_up(depot::node& n, const std::string& name, int index) {
  if (is_saga_case(name))
    n.send(chain_start{fmt::format("warm-up-{}", index), -1});
  else if (name == "noop")
    n.send(noop{-1});
  else
    n.send(bank::debit_account{"acct-1", warm_up_debit});
}

} // namespace

void reset_schema(const std::string& db, const std::string& schema) {
  auto session = depot::persistence::open_session(db);
  *session << fmt::format("DROP SCHEMA IF EXISTS {} CASCADE", schema);
  *session << fmt::format("CREATE SCHEMA {}", schema);
}

std::string with_search_path(const std::string& db, const std::string& schema) {
  if (db.starts_with("postgres://") || db.starts_with("postgresql://")) {
    auto sep = db.find('?') == std::string::npos ? "?" : "&";
    return fmt::format("{}{}options=-csearch_path%3D{}%2Cpublic", db, sep, schema);
  }
  return fmt::format("{} options='-csearch_path={},public'", db, schema);
}

measurement run_depot_case(const options& o, const std::string& name, case_result& result) {
  const bool bank_case = name == "bank" || name == "bank_concurrent";
  const bool saga_case = is_saga_case(name);
  const auto schema = fmt::format("bench_{}", name);
  const auto db = with_search_path(o.db, schema);
  const auto counted_type = std::string{bank_case   ? depot::type_name_of<bank::debit_account>()
                                        : saga_case ? depot::type_name_of<chain_last>()
                                                    : depot::type_name_of<noop>()};
  // What is sent, and how many envelopes the node handles per message sent (cascades, steps).
  const auto sent = saga_case ? o.saga_instances : o.messages;
  const std::uint64_t per_message = bank_case ? 2 : saga_case ? 3 : 1;
  reset_schema(o.db, schema);
  if (bank_case) {
    auto session = depot::persistence::open_session(db);
    soci::transaction tr{*session};
    bank::create_tables(*session);
    bank::seed(*session, o.accounts, bank_balance, bank_threshold);
    tr.commit();
  }

  latencies lat{sent};
  last_started last;
  depot::routing app;
  if (bank_case)
    bank::register_bank(app);
  else if (name == "saga")
    register_chain_saga(app);
  else if (name == "saga_plain")
    register_chain_handlers(app);
  else
    app.handle<noop>([](const noop&, depot::context&) {});
  app.use([&](const depot::envelope& e, depot::context&, const depot::next_step& next) {
    if (e.message_type == counted_type) {
      auto seq = seq_of(e.body);
      if (seq >= 0) {
        auto t = now_ns();
        last.note(e.id); // before started(): whoever sees every start sees every note
        lat.started(seq, t);
      }
    }
    next();
  });

  depot::node n{app, node_settings_of(o, schema)};
  n.start();

  // Warm-up: one envelope per sender opens the sender connections and the handling path.
  // Each bank warm-up handles two envelopes (a debit of warm_up_debit and its AccountUpdated),
  // each saga warm-up three (a chain of its own).
  {
    std::vector<std::thread> ts;
    for (int i = 0; i < o.senders; ++i)
      ts.emplace_back([&, i] { warm_up(n, name, i); });
    for (auto& t : ts)
      t.join();
  }
  const auto warm = per_message * static_cast<std::uint64_t>(o.senders);
  auto deadline = clock::now() + 60s;
  while (n.stats().handled + n.stats().expired < warm && clock::now() < deadline)
    std::this_thread::sleep_for(1ms);

  auto probe = depot::persistence::open_session(o.db);
  measurement m;
  m.messages = saga_case ? sent * 3 : sent; // the saga cases count steps
  settle(o.db);
  const auto before = resources::sample(o.db);
  const auto t0 = now_ns();
  std::vector<std::thread> senders;
  std::exception_ptr send_error;
  std::mutex send_error_mutex;
  for (int i = 0; i < o.senders; ++i)
    senders.emplace_back([&, i] {
      try {
        send_batches(n, o, name, sent, i, lat);
      } catch (...) {
        std::lock_guard guard{send_error_mutex};
        send_error = std::current_exception();
      }
    });

  // Every counted message started: then the last one of each worker thread must commit.
  deadline = clock::now() + std::chrono::seconds{o.timeout_s};
  while (lat.distinct() < sent && clock::now() < deadline) {
    std::this_thread::sleep_for(200us);
    std::lock_guard guard{send_error_mutex};
    if (send_error)
      break;
  }
  std::int64_t t_end = 0;
  if (lat.distinct() == sent) {
    auto ids = last.ids();
    auto array = fmt::format("{{{}}}", fmt::join(ids, ","));
    long long unfinished = 0;
    while (clock::now() < deadline) {
      *probe << fmt::format("SELECT count(*) FROM {}.incoming WHERE id = ANY(:ids::uuid[])",
                            schema),
        soci::use(array), soci::into(unfinished);
      if (unfinished == 0) {
        t_end = now_ns();
        m.used = resources::sample(o.db) - before;
        break;
      }
      std::this_thread::sleep_for(200us);
    }
  }
  for (auto& t : senders)
    t.join();
  if (send_error)
    std::rethrow_exception(send_error);

  // Cascades: wait until every envelope sent was handled or expired.
  const auto expected = warm + static_cast<std::uint64_t>(sent) * per_message;
  while (n.stats().handled + n.stats().expired < expected && clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  const auto t_drained = now_ns();
  auto stats = n.stats();
  n.stop();

  result.envelopes_handled = stats.handled;
  result.drained_s = static_cast<double>(t_drained - t0) / 1e9;
  if (t_end == 0) {
    m.note = fmt::format("timed out: {} of {} messages started", lat.distinct(), sent);
    return m;
  }
  m.ok = true;
  m.seconds = static_cast<double>(t_end - t0) / 1e9;
  m.msgs_per_s = static_cast<double>(m.messages) / m.seconds;
  std::tie(m.p50_ms, m.p99_ms) = lat.percentiles();
  if (stats.expired > 0)
    m.note = fmt::format("{} envelopes expired", stats.expired);

  if (bank_case) {
    // The debits took exactly their amounts off the balances.
    auto session = depot::persistence::open_session(db);
    long long total = 0;
    *session << "SELECT sum(balance) FROM accounts", soci::into(total);
    auto expected_total = bank_balances_after(o.messages, o.accounts) - warm_up_debit * o.senders;
    if (total != expected_total) {
      m.ok = false;
      m.note = fmt::format("balances sum to {}, expected {}", total, expected_total);
    }
  }
  if (saga_case && stats.handled < expected) {
    m.ok = false;
    m.note = fmt::format("{} of {} steps handled", stats.handled, expected);
  }
  if (name == "saga") {
    // Every saga, the warm-ups' too, completed after its three steps.
    auto session = depot::persistence::open_session(db);
    long long completed = 0;
    *session << "SELECT count(*) FROM saga_chain WHERE status = 'completed' AND "
                "(state->>'steps')::bigint = 3",
      soci::into(completed);
    const auto sagas = sent + o.senders;
    if (completed != sagas) {
      m.ok = false;
      m.note = fmt::format("{} of {} sagas completed", completed, sagas);
    }
  }
  return m;
}

} // namespace bench
