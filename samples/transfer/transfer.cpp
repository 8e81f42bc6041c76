// The transfer saga's steps. Each runs in the handling transaction of its message, with the
// saga's row locked: what it does to the accounts commits together with the saga's new state and
// the messages it sends, or not at all. Every step locks at most one account row, so steps of
// different transfers never wait for each other in a cycle.
#include "transfer.hpp"

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>
#include <soci/soci.h>

#include "bank.hpp"

namespace transfer {

using namespace std::chrono_literals;

namespace {

/// The account statements, prepared once per connection (ctx.prepared) and bound to the
/// members.
struct account_sql {
  explicit account_sql(soci::session& db)
    : load((db.prepare << "SELECT balance FROM accounts WHERE id = :id FOR UPDATE", soci::use(id),
            soci::into(balance)))
    , add((db.prepare << "UPDATE accounts SET balance = balance + :amount WHERE id = :id "
                         "RETURNING balance",
           soci::use(amount), soci::use(id), soci::into(balance))) {}

  /// Locks account `account` for the handling transaction and reads its balance; false when it
  /// does not exist.
  bool lock(const std::string& account) {
    id = account;
    load.execute(true);
    return load.got_data();
  }
  /// Adds `delta` to the balance of account `account`; false when it does not exist.
  bool change(const std::string& account, std::int64_t delta) {
    id = account;
    amount = delta;
    add.execute(true);
    return add.got_data();
  }

  std::string id;
  long long balance = 0, amount = 0;
  soci::statement load, add;
};

/// Reserves the amount on the source, then asks for the credit and a timeout guarding it. A
/// source that does not exist or lacks the amount ends the transfer at once: nothing was
/// recorded to compensate, so it is compensated with no money moved.
void start(const start_transfer& m, transfer_state& s, depot::saga_context& ctx,
           std::chrono::milliseconds credit_timeout) {
  s = {m.transfer_id, m.from, m.to, m.amount};
  auto& source = ctx.prepared<account_sql>();
  if (!source.lock(m.from)) {
    ctx.compensate("no account " + m.from);
    return;
  }
  if (source.balance < m.amount) {
    ctx.compensate(fmt::format("{} has {}, less than {}", m.from, source.balance, m.amount));
    return;
  }
  source.change(m.from, -m.amount);
  ctx.compensate_with(release_reservation{m.transfer_id});
  ctx.send(credit_target{m.transfer_id});
  ctx.request_timeout<credit_target>(credit_timed_out{m.transfer_id}, credit_timeout);
}

} // namespace

void start_transfer::validate(depot::field_errors& errors) const {
  if (transfer_id.empty())
    errors.add("transfer_id", "must name the transfer");
  if (from.empty())
    errors.add("from", "must name an account");
  if (to.empty())
    errors.add("to", "must name an account");
  else if (to == from)
    errors.add("to", "must differ from the source, " + from);
  if (amount < 1)
    errors.add("amount", "must be at least 1, not " + std::to_string(amount));
}

transfer_settings settings_from_environment() {
  transfer_settings s;
  const char* text = std::getenv("TRANSFER_CREDIT_TIMEOUT_MS");
  if (text == nullptr)
    return s;
  char* end = nullptr;
  errno = 0;
  auto ms = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno != 0 || ms < 1)
    throw std::invalid_argument{fmt::format(
      "TRANSFER_CREDIT_TIMEOUT_MS must be a number of milliseconds, at least 1, not '{}'", text)};
  s.credit_timeout = std::chrono::milliseconds{ms};
  return s;
}

void register_transfer(depot::routing& app, const transfer_settings& settings) {
  auto credit_timeout = settings.credit_timeout;
  auto saga = app.saga<transfer_state>(saga_name);
  saga
    .starts<start_transfer>(
      [credit_timeout](const start_transfer& m, transfer_state& s, depot::saga_context& ctx) {
        start(m, s, ctx, credit_timeout);
      })
    .handles<credit_target>([](const credit_target&, transfer_state& s, depot::saga_context& ctx) {
      if (!ctx.prepared<account_sql>().change(s.to, s.amount))
        throw bank::no_account{s.to};
      ctx.compensate_with(reverse_credit{s.transfer_id});
      ctx.send(confirm_transfer{s.transfer_id});
    })
    .handles<confirm_transfer>(
      [](const confirm_transfer&, transfer_state&, depot::saga_context& ctx) { ctx.complete(); })
    .handles<credit_timed_out>(
      [credit_timeout](const credit_timed_out&, transfer_state&, depot::saga_context& ctx) {
        ctx.compensate("credit not done within " + depot::show_duration(credit_timeout));
      })
    .handles<release_reservation>(
      [](const release_reservation&, transfer_state& s, depot::saga_context& ctx) {
        // A source closed meanwhile: the saga is stuck until it exists again and the dead
        // letter is replayed.
        if (!ctx.prepared<account_sql>().change(s.from, s.amount))
          throw bank::no_account{s.from};
      })
    .handles<reverse_credit>(
      [](const reverse_credit&, transfer_state& s, depot::saga_context& ctx) {
        if (!ctx.prepared<account_sql>().change(s.to, -s.amount))
          throw bank::no_account{s.to};
      });
  // A target may be opened a moment after the transfer starts: try the credit twice more, then
  // give up. For a step of the saga giving up means compensating (the reservation is released),
  // not a dead letter; only a compensation that fails for good is kept as one.
  saga.queue()
    .on_exception<bank::no_account>()
    .retry_with_cooldown(100ms, 200ms)
    .then_dead_letter();
}

} // namespace transfer
