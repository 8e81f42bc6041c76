// The bank's handlers. DebitAccount changes a balance and cascades; the cascade handlers record
// what they saw in account_events (one row per envelope, so counts prove exactly-once).
#include "bank.hpp"

#include <chrono>

#include <fmt/format.h>
#include <soci/soci.h>

namespace bank {

using namespace std::chrono_literals;

namespace {

/// The account statements, prepared once per connection (ctx.prepared) and bound to the
/// members: set the inputs, execute, read the outputs.
struct account_sql {
  explicit account_sql(soci::session& db)
    : load((db.prepare << "SELECT balance, minimum_threshold FROM accounts WHERE id = :id FOR "
                          "UPDATE",
            soci::use(id), soci::into(balance, found), soci::into(minimum_threshold)))
    , save((db.prepare << "UPDATE accounts SET balance = :b WHERE id = :id", soci::use(balance),
            soci::use(id))) {}

  std::string id;
  long long balance = 0, minimum_threshold = 0;
  soci::indicator found = soci::i_null;
  soci::statement load, save;
};

/// What the cascade handlers record, prepared once per connection.
struct event_sql {
  explicit event_sql(soci::session& db)
    : record((db.prepare << "INSERT INTO account_events (envelope_id, message_type, account_id, "
                            "balance) VALUES (:id::uuid, :t, :a, :b)",
              soci::use(envelope_id), soci::use(message_type), soci::use(account_id),
              soci::use(balance))) {}

  std::string envelope_id, message_type, account_id;
  long long balance = 0;
  soci::statement record;
};

/// The balance query, prepared once per connection.
struct balance_sql {
  explicit balance_sql(soci::session& db)
    : load((db.prepare << "SELECT balance FROM accounts WHERE id = :id", soci::use(id),
            soci::into(balance, found))) {}

  std::string id;
  long long balance = 0;
  soci::indicator found = soci::i_null;
  soci::statement load;
};

void record(depot::context& ctx, const std::string& account_id, std::int64_t balance) {
  auto& sql = ctx.prepared<event_sql>();
  sql.envelope_id = ctx.incoming().id;
  sql.message_type = ctx.incoming().message_type;
  sql.account_id = account_id;
  sql.balance = balance;
  sql.record.execute(true);
}

void handle(const debit_account& cmd, depot::context& ctx) {
  auto& acct = ctx.prepared<account_sql>();
  acct.id = cmd.account_id;
  acct.load.execute(true);
  if (acct.found == soci::i_null || !acct.load.got_data())
    throw no_account{acct.id};
  if (__builtin_sub_overflow(acct.balance, cmd.amount, &acct.balance))
    throw depot::validation_error{"debit of " + std::to_string(cmd.amount) +
                                  " would overflow the balance of " + acct.id};
  acct.save.execute(true);
  if (acct.balance > 0 && acct.balance < acct.minimum_threshold) {
    ctx.publish(low_balance_detected{acct.id, acct.balance});
  } else if (acct.balance < 0) {
    ctx.publish(account_overdrawn{acct.id, acct.balance}, {.deliver_within = 1h});
    ctx.schedule(enforce_account_overdrawn_deadline{acct.id}, 240h);
  }
  ctx.publish(account_updated{acct.id, acct.balance}, {.deliver_within = 5s});
}

balance answer(const get_balance& query, depot::context& ctx) {
  auto& sql = ctx.prepared<balance_sql>();
  sql.id = query.account_id;
  sql.load.execute(true);
  if (sql.found == soci::i_null || !sql.load.got_data())
    throw depot::validation_error{"no account " + query.account_id};
  return {query.account_id, sql.balance};
}

} // namespace

void debit_account::validate(depot::field_errors& errors) const {
  if (account_id.empty())
    errors.add("account_id", "must name an account");
  if (amount < 1)
    errors.add("amount", "must be at least 1, not " + std::to_string(amount));
}

void create_tables(soci::session& db) {
  db << "CREATE TABLE IF NOT EXISTS accounts (id text PRIMARY KEY, balance bigint NOT NULL, "
        "minimum_threshold bigint NOT NULL)";
  db << "CREATE TABLE IF NOT EXISTS account_events (envelope_id uuid PRIMARY KEY, message_type "
        "text NOT NULL, account_id text NOT NULL, balance bigint, recorded_at timestamptz NOT "
        "NULL DEFAULT now())";
}

void seed(soci::session& db, std::int64_t n, std::int64_t balance, std::int64_t threshold) {
  long long count = n, b = balance, t = threshold;
  db << "INSERT INTO accounts (id, balance, minimum_threshold) SELECT 'acct-' || i, :b, :t FROM "
        "generate_series(1, :n) AS i ON CONFLICT (id) DO UPDATE SET balance = excluded.balance, "
        "minimum_threshold = excluded.minimum_threshold",
    soci::use(b, "b"), soci::use(t, "t"), soci::use(count, "n");
}

void add_options(depot::command_options& opts, seeding& s) {
  opts.add(s.accounts, "accounts", "number of accounts");
  opts.add(s.balance, "balance", "starting balance of each account");
  opts.add(s.threshold, "threshold", "minimum threshold of each account");
}

depot::command seed_command(seeding& s) {
  return {{"seed"},
          "",
          "create or reset accounts acct-1 ... acct-N",
          [&s](depot::command_options& opts) { add_options(opts, s); },
          [&s](depot::command_env& env) {
            auto db = env.open_session();
            soci::transaction tr{*db};
            create_tables(*db);
            seed(*db, s.accounts, s.balance, s.threshold);
            tr.commit();
            fmt::print("seeded {} accounts (balance {}, threshold {})\n", s.accounts, s.balance,
                       s.threshold);
            return depot::exit_code::ok;
          }};
}

void register_bank(depot::routing& app) {
  // Every debit and its cascades share one trace (spans logged at debug: DEPOT_LOG=debug).
  app.use(depot::tracing(depot::log_level::debug));
  // An account may be opened a moment after its first debit: try again twice, then keep the
  // debit as a dead letter to replay once the account exists.
  app.handle<debit_account>(handle)
    .on_exception<no_account>()
    .retry_with_cooldown(100ms, 500ms)
    .then_dead_letter();
  // Queries are answered from memory queues: no envelope is stored for them.
  app.handle<get_balance>(answer).on_queue(queries_queue).buffered();
  app.handle<low_balance_detected>([](const low_balance_detected& m, depot::context& ctx) {
    record(ctx, m.account_id, m.balance);
  });
  app.handle<account_overdrawn>(
    [](const account_overdrawn& m, depot::context& ctx) { record(ctx, m.account_id, m.balance); });
  app.handle<enforce_account_overdrawn_deadline>(
    [](const enforce_account_overdrawn_deadline& m, depot::context& ctx) {
      record(ctx, m.account_id, 0);
    });
  app.handle<account_updated>(
    [](const account_updated& m, depot::context& ctx) { record(ctx, m.account_id, m.balance); });
}

void register_kafka(depot::routing& app) {
  app.listen_to_kafka({commands_topic});
  app.publish<account_updated>().to_kafka(events_topic);
  app.publish<low_balance_detected>().to_kafka(events_topic);
  app.publish<account_overdrawn>().to_kafka(events_topic);
}

} // namespace bank
