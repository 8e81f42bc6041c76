// The transfer node binary: depot's commands plus the bank's `seed` and a self-verifying `demo`.
#include <chrono>
#include <map>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bank.hpp"
#include "transfer.hpp"

namespace {

using namespace std::chrono;

struct demo_options : bank::seeding {
  demo_options() { accounts = 50; }
  std::int64_t transfers = 200;
  /// Above the retries of a credit to a missing target (two, each promoted within a heartbeat),
  /// so that those fail before they time out.
  std::int64_t credit_timeout_ms = 4000;
};

/// What the demo makes a transfer go through.
enum class path {
  plain,          ///< completes
  missing_target, ///< the credit fails after its retries: compensated
  short_source,   ///< the source lacks the amount: compensated at the start
  missing_source, ///< the source does not exist: compensated at the start
  slow_credit,    ///< the credit is held back past its timeout: compensated
};

struct planned {
  transfer::start_transfer start;
  path way = path::plain;
};

std::string account(std::int64_t number) {
  return fmt::format("acct-{}", number);
}

/// Transfer k goes from account k mod n to another account, both of the seeded ones, with a
/// small amount; every fifth transfer takes one of the failing paths, in turn. Names outside
/// acct-1 ... acct-n do not exist.
std::vector<planned> plan(const demo_options& o) {
  std::vector<planned> all;
  for (std::int64_t k = 0; k < o.transfers; ++k) {
    auto source = k % o.accounts;
    auto target = (source + 1 + (k / o.accounts) % (o.accounts - 1)) % o.accounts;
    planned p{
      {fmt::format("t-{}", k + 1), account(source + 1), account(target + 1), 1 + (k * 7) % 50},
      path::plain};
    switch (k % 20) {
      case 3:
        p.way = path::missing_target;
        p.start.to = account(o.accounts + 1 + k);
        break;
      case 8:
        p.way = path::short_source;
        p.start.amount = o.accounts * o.balance + 1; // more than all the money there is
        break;
      case 13:
        p.way = path::missing_source;
        p.start.from = account(o.accounts + 1 + k);
        break;
      case 18: p.way = path::slow_credit; break;
      default: break;
    }
    all.push_back(std::move(p));
  }
  return all;
}

/// Whether a transfer finds its money must not depend on the order in which transfers run:
/// every source must hold what all of its transfers may reserve at once.
void check_plan(const demo_options& o, const std::vector<planned>& transfers) {
  std::map<std::string, std::int64_t> reserved;
  for (const auto& t : transfers)
    if (t.way != path::short_source && t.way != path::missing_source)
      reserved[t.start.from] += t.start.amount;
  for (const auto& [id, amount] : reserved)
    if (amount > o.balance)
      throw std::invalid_argument{fmt::format(
        "--balance {} is too small for {} transfers over {} accounts: {} may reserve {} at once",
        o.balance, o.transfers, o.accounts, id, amount)};
}

/// The start of the reason a saga of each failing path compensates for.
std::string reason_of(const planned& t) {
  switch (t.way) {
    case path::plain: return {};
    case path::missing_target:
      return fmt::format("step {} failed", depot::type_name_of<transfer::credit_target>());
    case path::short_source: return t.start.from + " has ";
    case path::missing_source: return "no account " + t.start.from;
    case path::slow_credit: return "credit not done within ";
  }
  return {};
}

/// One saga as the demo reads it back.
struct outcome {
  std::string status, reason;
};

int run_demo(const demo_options& o, depot::command_env& env) {
  if (o.accounts < 2 || o.transfers < 1 || o.credit_timeout_ms < 1)
    throw std::invalid_argument{
      "--accounts must be at least 2, --transfers and --credit-timeout-ms at least 1"};
  auto transfers = plan(o);
  check_plan(o, transfers);
  const milliseconds credit_timeout{o.credit_timeout_ms};

  depot::routing app;
  transfer::register_transfer(app, {credit_timeout});
  // The bank of the slow transfers' targets answers after the credit's timeout: their credits
  // are held back (once) past it, so that the timeout compensates them and the late credit
  // finds the transfer compensated.
  std::set<std::string> slow;
  for (const auto& t : transfers)
    if (t.way == path::slow_credit)
      slow.insert(t.start.transfer_id);
  const std::string held_back = "transfer-demo-held-back";
  const auto hold = duration_cast<microseconds>(credit_timeout + 1s).count();
  app.queue(transfer::saga_name)
    .use(depot::before("slow target bank", [&](const depot::envelope& e, depot::context&) {
      if (e.message_type == depot::type_name_of<transfer::credit_target>() &&
          slow.contains(e.key) && e.header_value(held_back).empty())
        throw depot::deferral{
          depot::now_micros() + hold, "the target's bank answers slowly", {{held_back, "1"}}};
    }));
  const auto table =
    fmt::format("{}.{}", env.settings.schema, app.find_saga(transfer::saga_name)->table);

  auto session = env.open_session();
  auto& db = *session;
  depot::node node{app, env.settings, env.config};
  node.start();
  {
    node.purge({transfer::saga_name}); // what an earlier demo left
    soci::transaction tr{db};
    bank::create_tables(db);
    db << "DELETE FROM accounts";
    db << "DELETE FROM " + table;
    bank::seed(db, o.accounts, o.balance, o.threshold);
    tr.commit();
  }
  auto total_balance = [&db] {
    long long sum = 0;
    db << "SELECT coalesce(sum(balance), 0) FROM accounts", soci::into(sum);
    return static_cast<std::int64_t>(sum);
  };
  const auto before = total_balance();
  std::map<path, std::int64_t> planned_paths;
  for (const auto& t : transfers)
    ++planned_paths[t.way];
  fmt::print(
    "transfer demo: seeded {} accounts with balance {}; sending {} transfers ({} plain, {} to "
    "missing targets, {} from short sources, {} from missing sources, {} with a slow credit; "
    "credit timeout {} ms)\n",
    o.accounts, o.balance, o.transfers, planned_paths[path::plain],
    planned_paths[path::missing_target], planned_paths[path::short_source],
    planned_paths[path::missing_source], planned_paths[path::slow_credit], o.credit_timeout_ms);

  auto started = steady_clock::now();
  std::vector<transfer::start_transfer> starts;
  for (const auto& t : transfers)
    starts.push_back(t.start);
  node.send_all(starts);

  // Done when every saga finished and nothing is left on the saga's queue (the held-back
  // credits come back after their transfers were compensated).
  auto finished = [&] {
    long long n = 0;
    db << "SELECT count(*) FROM " + table + " WHERE status IN ('completed', 'compensated')",
      soci::into(n);
    return n;
  };
  auto waiting_envelopes = [&node] {
    std::int64_t n = 0;
    for (const auto& c : node.counts())
      if (c.queue == transfer::saga_name && c.status != "dead")
        n += c.count;
    return n;
  };
  auto deadline = steady_clock::now() + minutes{2} + credit_timeout;
  while ((finished() < o.transfers || waiting_envelopes() > 0) && steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds{100});
  auto took = duration<double>(steady_clock::now() - started).count();
  auto stats = node.stats();
  std::int64_t dead = 0;
  for (const auto& c : node.counts())
    if (c.queue == transfer::saga_name && c.status == "dead")
      dead += c.count;
  auto left = waiting_envelopes();
  node.stop();

  std::map<std::string, outcome> sagas;
  {
    soci::rowset<soci::row> rows = db.prepare
                                   << "SELECT id, status, coalesce(reason, '') FROM " + table;
    for (const auto& r : rows)
      sagas[r.get<std::string>(0)] = {r.get<std::string>(1), r.get<std::string>(2)};
  }
  // Each transfer took its planned path; the balances follow from the completed ones.
  std::map<path, std::int64_t> took_path;
  std::int64_t completed = 0, compensated = 0, unfinished = 0, astray = 0;
  std::map<std::string, std::int64_t> expected;
  for (std::int64_t a = 1; a <= o.accounts; ++a)
    expected[account(a)] = o.balance;
  for (const auto& t : transfers) {
    auto i = sagas.find(t.start.transfer_id);
    if (i == sagas.end()) {
      ++unfinished;
      continue;
    }
    const auto& [status, reason] = i->second;
    if (status == "completed") {
      ++completed;
      expected[t.start.from] -= t.start.amount;
      expected[t.start.to] += t.start.amount;
    } else if (status == "compensated") {
      ++compensated;
    } else {
      ++unfinished;
    }
    auto want = t.way == path::plain ? "completed" : "compensated";
    if (status == want && reason.starts_with(reason_of(t))) {
      ++took_path[t.way];
    } else if (astray++ < 5) {
      fmt::print(stderr, "transfer {} ({} -> {}, {}) is {} ({}), expected {} ({})\n",
                 t.start.transfer_id, t.start.from, t.start.to, t.start.amount, status, reason,
                 want, reason_of(t));
    }
  }
  std::int64_t exact = 0, wrong = 0;
  {
    soci::rowset<soci::row> rows = db.prepare << "SELECT id, balance FROM accounts";
    for (const auto& r : rows) {
      auto id = r.get<std::string>(0);
      auto balance = r.get<long long>(1);
      if (expected.contains(id) && expected[id] == balance) {
        ++exact;
      } else if (wrong++ < 5) {
        fmt::print(stderr, "balance of {} is {}, expected {}\n", id, balance, expected[id]);
      }
    }
  }
  const auto after = total_balance();

  struct check {
    std::string what;
    std::int64_t got, want;
  };
  auto accounts = o.accounts;
  std::vector<check> checks{
    {"transfers started", static_cast<std::int64_t>(sagas.size()), o.transfers},
    {"completed", completed, planned_paths[path::plain]},
    {"compensated", compensated, o.transfers - planned_paths[path::plain]},
    {"  after a failed credit (missing target)", took_path[path::missing_target],
     planned_paths[path::missing_target]},
    {"  at the start (source short of money)", took_path[path::short_source],
     planned_paths[path::short_source]},
    {"  at the start (source missing)", took_path[path::missing_source],
     planned_paths[path::missing_source]},
    {"  after the credit timed out", took_path[path::slow_credit],
     planned_paths[path::slow_credit]},
    {"transfers not as planned", astray, 0},
    {"sagas unfinished (running, compensating, stuck)", unfinished, 0},
    {"credits held back by the slow bank", static_cast<std::int64_t>(stats.deferred),
     planned_paths[path::slow_credit]},
    {"dead letters on queue transfer", dead, 0},
    {"envelopes left on queue transfer", left, 0},
    {"total balance before", before, accounts * o.balance},
    {"total balance after", after, before},
    {"balances exact", exact, accounts},
  };
  bool all_exact = true;
  for (const auto& c : checks) {
    fmt::print("  {:<48} {:>7} (expected {})\n", c.what, c.got, c.want);
    all_exact = all_exact && c.got == c.want;
  }
  fmt::print("all sagas finished after {:.2f} s; handled {} envelopes, retried {}\n", took,
             stats.handled, stats.retried);
  if (!all_exact) {
    fmt::print("FAILED: transfers or balances do not add up\n");
    return depot::exit_code::failure;
  }
  fmt::print(
    "verified: {} transfers: {} completed, {} compensated ({} failed credits, {} short or "
    "missing sources, {} credit timeouts), each as planned, none left unfinished\n",
    o.transfers, completed, compensated, took_path[path::missing_target],
    took_path[path::short_source] + took_path[path::missing_source], took_path[path::slow_credit]);
  fmt::print(
    "verified: money conserved: total balance {} before and after; {} balances exact, as the "
    "{} completed transfers imply\n",
    before, exact, completed);
  return depot::exit_code::ok;
}

} // namespace

int main(int argc, char** argv) {
  transfer::transfer_settings settings;
  try {
    settings = transfer::settings_from_environment();
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "transfer: {}\n", e.what());
    return depot::exit_code::usage;
  }
  depot::routing app;
  transfer::register_transfer(app, settings);
  depot::cli cli{"transfer", app};
  cli.on_db_apply(bank::create_tables);
  bank::seeding seeding;
  demo_options o;
  cli.add_command(bank::seed_command(seeding));
  cli.add_command({{"demo"},
                   "",
                   "reset the accounts, run transfers (some failing) through a node, verify "
                   "every outcome and balance",
                   [&o](depot::command_options& opts) {
                     bank::add_options(opts, o);
                     opts.add(o.transfers, "transfers", "number of transfers");
                     opts.add(o.credit_timeout_ms, "credit-timeout-ms",
                              "credit timeout of the demo's transfers, in milliseconds");
                   },
                   [&o](depot::command_env& env) { return run_demo(o, env); }});
  return cli.run(argc, argv);
}
