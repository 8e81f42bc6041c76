// The bank sample: messages, the accounts table and the handlers of DESIGN.md's DebitAccount
// example. Registered on a depot::routing by register_bank().
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <depot/depot.hpp>

namespace bank {

/// Takes `amount` (at least 1) from an account.
struct debit_account {
  std::string account_id;
  std::int64_t amount = 0;
  /// A debit takes a positive amount from a named account; anything else cannot be one.
  void validate(depot::field_errors& errors) const;
};
DEPOT_MESSAGE(debit_account, "bank.debit-account", account_id, amount)
// Debits of one account are handled one at a time, in order: they never contend for its row.
DEPOT_MESSAGE_KEY(debit_account, account_id)

struct low_balance_detected {
  std::string account_id;
  std::int64_t balance = 0;
};
DEPOT_MESSAGE(low_balance_detected, "bank.low-balance-detected", account_id, balance)
DEPOT_MESSAGE_KEY(low_balance_detected, account_id) // the Kafka key of its event

struct account_overdrawn {
  std::string account_id;
  std::int64_t balance = 0;
};
DEPOT_MESSAGE(account_overdrawn, "bank.account-overdrawn", account_id, balance)
DEPOT_MESSAGE_KEY(account_overdrawn, account_id)

struct enforce_account_overdrawn_deadline {
  std::string account_id;
};
DEPOT_MESSAGE(enforce_account_overdrawn_deadline, "bank.enforce-account-overdrawn-deadline",
              account_id)

struct account_updated {
  std::string account_id;
  std::int64_t balance = 0;
};
DEPOT_MESSAGE(account_updated, "bank.account-updated", account_id, balance)
DEPOT_MESSAGE_KEY(account_updated, account_id)

/// The query side: asks for an account's balance, answered with a `balance` from the accounts
/// table. Served on the buffered queue `queries_queue`: memory only, never stored.
struct get_balance {
  std::string account_id;
};
DEPOT_MESSAGE(get_balance, "bank.get-balance", account_id)

/// The reply to get_balance.
struct balance {
  std::string account_id;
  std::int64_t balance = 0;
};
DEPOT_MESSAGE(balance, "bank.balance", account_id, balance)

/// The buffered queue that answers the bank's queries.
inline constexpr const char* queries_queue = "bank.queries";

/// A debit of an account that does not exist (yet). The bank's error policy retries it twice,
/// then dead-letters it; replay it once the account exists.
struct no_account : std::runtime_error {
  explicit no_account(const std::string& id) : std::runtime_error{"no account " + id} {}
};

/// Creates the sample's tables: accounts, and account_events where the handlers of the
/// cascaded messages record what they saw. Idempotent.
void create_tables(soci::session& db);

/// Creates or resets accounts acct-1 ... acct-n.
void seed(soci::session& db, std::int64_t n, std::int64_t balance, std::int64_t threshold);

/// The accounts `seed` makes: acct-1 ... acct-<accounts>, each with `balance` and `threshold`.
struct seeding {
  std::int64_t accounts = 250;
  std::int64_t balance = 1000;
  std::int64_t threshold = 200;
};

/// Adds --accounts, --balance and --threshold, bound to `s`.
void add_options(depot::command_options& opts, seeding& s);

/// The `seed` command of the node binaries that use the accounts table: creates the tables and
/// creates or resets the accounts `s` describes (its options bind to `s`, which must outlive
/// the command).
depot::command seed_command(seeding& s);

/// Registers the bank's handlers.
void register_bank(depot::routing& app);

/// The topic the bank consumes DebitAccount commands from, as CloudEvents of either mode.
inline constexpr const char* commands_topic = "bank.commands";
/// The topic the bank publishes AccountUpdated, LowBalanceDetected and AccountOverdrawn to, as
/// binary CloudEvents keyed by account id.
inline constexpr const char* events_topic = "bank.events";

/// Connects the bank to Kafka (when --kafka is set): listens to bank.commands and publishes
/// its events to bank.events, besides handling them as before.
void register_kafka(depot::routing& app);

} // namespace bank
