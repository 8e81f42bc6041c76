// The bank node binary: depot's commands plus `seed` and `demo`.
#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include <optional>

#include <depot/transports/kafka.hpp>

#include "bank.hpp"
#include "kafka_demo.hpp"

namespace {

using namespace std::chrono;

struct seed_options : bank::seeding {
  std::int64_t messages = 10000;
};

/// What the demo expects after every debit was handled once.
struct expectation {
  std::map<std::string, std::int64_t> balances;
  std::int64_t low = 0, overdrawn = 0, updated = 0;
};

/// Debit k goes to account (k mod n) + 1 with that account's fixed amount, so the sequence of
/// balances of each account, and with it every cascade count, does not depend on the order in
/// which workers handle the debits.
std::int64_t amount_of(std::int64_t account) {
  return 10 + (account * 7) % 41;
}

expectation expect(const seed_options& o) {
  expectation x;
  for (std::int64_t a = 1; a <= o.accounts; ++a) {
    auto debits = o.messages / o.accounts + (a <= o.messages % o.accounts ? 1 : 0);
    auto balance = o.balance;
    for (std::int64_t k = 0; k < debits; ++k) {
      balance -= amount_of(a);
      if (balance > 0 && balance < o.threshold)
        ++x.low;
      else if (balance < 0)
        ++x.overdrawn;
      ++x.updated;
    }
    x.balances[fmt::format("acct-{}", a)] = balance;
  }
  return x;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

/// What show_failures did.
struct failure_story {
  std::int64_t refused = 0;        ///< invalid debits, kept as dead letters at the send
  std::int64_t replayed = 0;       ///< debits of missing accounts replayed once the accounts exist
  std::int64_t replayed_again = 0; ///< what a second replay found (nothing)
  bool ok = false;
};

/// Sends debits that fail: two invalid ones (refused at the send, kept as dead letters) and one
/// for each of three accounts that do not exist yet (retried by the bank's error policy, then
/// dead-lettered). Opens those accounts, replays their dead letters, and adds what the replayed
/// debits do to `x`.
failure_story show_failures(const seed_options& o, depot::node& node, soci::session& db,
                            expectation& x) {
  failure_story story;
  for (std::int64_t amount : {0, -5}) {
    try {
      node.send(bank::debit_account{"acct-1", amount});
    } catch (const depot::validation_error& e) {
      ++story.refused;
      fmt::print("refused: {}\n", e.what());
    }
  }
  constexpr std::int64_t missing = 3;
  for (auto a = o.accounts + 1; a <= o.accounts + missing; ++a)
    node.send(bank::debit_account{fmt::format("acct-{}", a), amount_of(a)});
  depot::persistence::dead_letter_filter no_account;
  no_account.exception_type = "bank::no_account";
  auto dead_letters = [&] {
    std::int64_t n = 0;
    for (const auto& c : node.counts())
      if (c.status == "dead")
        n += c.count;
    return n;
  };
  auto deadline = steady_clock::now() + seconds{30};
  while (dead_letters() < story.refused + missing && steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds{50});
  fmt::print("{} debits of missing accounts dead-lettered after their retries\n",
             dead_letters() - story.refused);

  long long balance = o.balance, threshold = o.threshold, first = o.accounts + 1,
            last = o.accounts + missing;
  db << "INSERT INTO accounts (id, balance, minimum_threshold) SELECT 'acct-' || i, :b, :t FROM "
        "generate_series(:first::bigint, :last::bigint) AS i ON CONFLICT (id) DO NOTHING",
    soci::use(balance, "b"), soci::use(threshold, "t"), soci::use(first, "first"),
    soci::use(last, "last");
  story.replayed = static_cast<std::int64_t>(node.replay_dead_letters(no_account).size());
  story.replayed_again = static_cast<std::int64_t>(node.replay_dead_letters(no_account).size());
  for (auto a = o.accounts + 1; a <= o.accounts + missing; ++a) {
    x.balances[fmt::format("acct-{}", a)] = o.balance - amount_of(a);
    ++x.updated;
  }
  story.ok = node.wait_idle(minutes{1});
  fmt::print("opened {} accounts, replayed {} dead letters (a second replay: {})\n", missing,
             story.replayed, story.replayed_again);
  return story;
}

int run_demo(const seed_options& o, depot::command_env& env) {
  if (o.accounts < 1 || o.messages < 1)
    throw std::invalid_argument{"--accounts and --messages must be at least 1"};
  // Latency of a debit: from the commit that stored it to the start of its handler.
  std::mutex m;
  std::vector<double> latencies;
  depot::routing app;
  bank::register_bank(app);
  app.use([&](const depot::envelope& e, depot::context&, const depot::next_step& next) {
    if (e.message_type == depot::type_name_of<bank::debit_account>()) {
      auto ms = static_cast<double>(depot::now_micros() - e.received_at) / 1000.0;
      std::lock_guard guard{m};
      latencies.push_back(ms);
    }
    next();
  });

  // With --kafka (embedded: a cluster of the demo's own), part of the debits come in through
  // bank.commands and every event goes out on bank.events.
  auto settings = env.settings;
  std::optional<depot::embedded_kafka> cluster;
  if (settings.kafka == "embedded") {
    cluster.emplace();
    settings.kafka = cluster->bootstrap();
  }
  auto kafka = !settings.kafka.empty();
  std::optional<bank::kafka_client> client;
  if (kafka) {
    bank::register_kafka(app);
    client.emplace(settings.kafka);
  }

  auto session = env.open_session();
  auto& db = *session;
  depot::node node{app, settings, env.config};
  node.start();
  {
    std::vector<std::string> queues{depot::kafka_topic(bank::events_topic).uri()};
    for (const auto& q : app.queues())
      queues.push_back(q.name);
    node.purge(queues); // what an earlier demo left
    soci::transaction tr{db};
    bank::create_tables(db);
    db << "TRUNCATE account_events";
    db << "DELETE FROM accounts";
    bank::seed(db, o.accounts, o.balance, o.threshold);
    tr.commit();
  }
  fmt::print("seeded {} accounts with balance {} (threshold {}); sending {} debits\n", o.accounts,
             o.balance, o.threshold, o.messages);

  auto started = steady_clock::now();
  constexpr std::int64_t batch = 500;
  std::vector<bank::debit_account> through_kafka; // every tenth debit, with Kafka
  for (std::int64_t k = 0; k < o.messages; k += batch) {
    std::vector<bank::debit_account> debits;
    for (auto i = k; i < std::min(k + batch, o.messages); ++i) {
      auto a = i % o.accounts + 1;
      (kafka && i % 10 == 9 ? through_kafka : debits)
        .push_back({fmt::format("acct-{}", a), amount_of(a)});
    }
    node.send_all(debits);
  }
  std::int64_t produced = client ? client->produce(through_kafka) : 0;
  auto sent = steady_clock::now();
  auto x = expect(o);
  std::int64_t total = 0;
  for (const auto& [id, balance] : x.balances)
    total += balance;
  // Debits from Kafka are stored as the listener consumes them: wait until all are applied.
  auto applied = [&db, total] {
    long long sum = 0;
    db << "SELECT coalesce(sum(balance), 0) FROM accounts", soci::into(sum);
    return sum == total;
  };
  auto deadline = steady_clock::now() + minutes{5};
  while (!applied() && steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds{50});
  if (!node.wait_idle(minutes{5})) {
    fmt::print(stderr, "demo: queues did not drain within 5 minutes\n");
    return depot::exit_code::failure;
  }
  auto drained = steady_clock::now();
  auto failures_shown = show_failures(o, node, db, x);
  bank::kafka_client::events out;
  auto expected_events = x.low + x.overdrawn + x.updated;
  if (client) {
    out = client->read_events(expected_events, seconds{60});
    fmt::print("kafka: {} debits produced to {} (one of them twice), {} events read back from {}\n",
               through_kafka.size(), bank::commands_topic, out.distinct, bank::events_topic);
  }
  auto stats = node.stats();
  auto counts = node.counts();
  node.stop();

  int failures = 0;
  std::int64_t exact = 0;
  soci::rowset<soci::row> rows = db.prepare << "SELECT id, balance FROM accounts";
  for (const auto& r : rows) {
    auto id = r.get<std::string>(0);
    auto balance = r.get<long long>(1);
    if (x.balances.contains(id) && x.balances[id] == balance) {
      ++exact;
    } else if (failures++ < 5) {
      fmt::print(stderr, "balance of {} is {}, expected {}\n", id, balance, x.balances[id]);
    }
  }
  auto count_of = [&db](const std::string& sql) {
    long long n = 0;
    db << sql, soci::into(n);
    return static_cast<std::int64_t>(n);
  };
  auto events = [&](const char* type) {
    return count_of(
      fmt::format("SELECT count(*) FROM account_events WHERE message_type = '{}'", type));
  };
  // What the store holds per queue and status (dead letters as "dead").
  std::map<std::pair<std::string, std::string>, std::int64_t> stored;
  std::int64_t dead = 0;
  for (const auto& c : counts) {
    stored[{c.queue, c.status}] = c.count;
    if (c.status == "dead")
      dead += c.count;
  }
  auto expired = stored[{std::string{depot::type_name_of<bank::account_updated>()}, "expired"}];
  auto deadlines = stored[{
    std::string{depot::type_name_of<bank::enforce_account_overdrawn_deadline>()}, "scheduled"}];
  struct check {
    const char* what;
    std::int64_t got, want;
  };
  std::vector<check> checks{
    {"low-balance-detected handled", events("bank.low-balance-detected"), x.low},
    {"account-overdrawn handled", events("bank.account-overdrawn"), x.overdrawn},
    {"overdraft deadlines scheduled", deadlines, x.overdrawn},
    {"account-updated handled + expired", events("bank.account-updated") + expired, x.updated},
    {"invalid debits refused", failures_shown.refused, 2},
    {"dead letters (the refused debits)", dead, 2},
    {"missing-account debits replayed", failures_shown.replayed, 3},
    {"replayed by a second replay", failures_shown.replayed_again, 0},
  };
  if (kafka) {
    auto type = [&out](const char* t) { return out.by_type[t]; };
    checks.push_back({"kafka: commands produced (one twice)", produced,
                      static_cast<std::int64_t>(through_kafka.size()) + 1});
    checks.push_back({"kafka: distinct events out", out.distinct, expected_events});
    checks.push_back({"kafka: account-updated events", type("bank.account-updated"), x.updated});
    checks.push_back(
      {"kafka: low-balance-detected events", type("bank.low-balance-detected"), x.low});
    checks.push_back(
      {"kafka: account-overdrawn events", type("bank.account-overdrawn"), x.overdrawn});
    checks.push_back({"kafka: events missing an attribute", out.malformed, 0});
  }
  bool cascades_exact = true;
  for (const auto& c : checks) {
    fmt::print("  {:<36} {:>7} (expected {})\n", c.what, c.got, c.want);
    cascades_exact = cascades_exact && c.got == c.want;
  }

  auto seconds = duration<double>(drained - started).count();
  fmt::print("sent {} debits in {:.2f} s; all queues drained after {:.2f} s\n", o.messages,
             duration<double>(sent - started).count(), seconds);
  fmt::print(
    "handled {} envelopes ({} debits + cascades): {:.0f} debits/s, {:.0f} envelopes/s; "
    "{} account-updated expired\n",
    stats.handled, o.messages, static_cast<double>(o.messages) / seconds,
    static_cast<double>(stats.handled) / seconds, expired);
  fmt::print("debit latency from send commit to handler start: p50 {:.1f} ms, p99 {:.1f} ms\n",
             percentile(latencies, 0.50), percentile(latencies, 0.99));
  fmt::print("retried {}, dead-lettered {} by the node, replayed {}\n", stats.retried,
             stats.dead_lettered, failures_shown.replayed);
  auto accounts = static_cast<std::int64_t>(x.balances.size());
  if (exact != accounts || !cascades_exact || !failures_shown.ok) {
    fmt::print("FAILED: {} of {} balances exact, cascades {}\n", exact, accounts,
               cascades_exact ? "exact" : "wrong");
    return depot::exit_code::failure;
  }
  fmt::print("verified: {} debits, {} balances exact, cascades exact\n", o.messages, o.accounts);
  fmt::print("verified: {} replayed debits of opened accounts, each applied once\n",
             failures_shown.replayed);
  if (kafka)
    fmt::print(
      "verified: kafka round trip: {} debits in through {} (a redelivered one ignored), "
      "{} events out on {}, each a CloudEvent keyed by its account\n",
      through_kafka.size(), bank::commands_topic, out.distinct, bank::events_topic);
  return depot::exit_code::ok;
}

} // namespace

int main(int argc, char** argv) {
  depot::routing app;
  bank::register_bank(app);
  depot::cli cli{"bank", app};
  cli.on_db_apply(bank::create_tables);
  cli.on_settings([](depot::routing& routes, const depot::node_settings& s) {
    if (!s.kafka.empty())
      bank::register_kafka(routes);
  });
  seed_options o;
  cli.add_command(bank::seed_command(o));
  cli.add_command({{"demo"},
                   "",
                   "reset the sample, send debits through a node, verify every effect",
                   [&o](depot::command_options& opts) {
                     bank::add_options(opts, o);
                     opts.add(o.messages, "messages", "number of DebitAccount commands");
                   },
                   [&o](depot::command_env& env) { return run_demo(o, env); }});
  return cli.run(argc, argv);
}
