// The transfer sample: a money transfer between two accounts of the bank sample's accounts table,
// run as a saga. It reserves (debits) the amount on the source, credits the target, confirms;
// when the credit fails or does not happen within its timeout, the reservation goes back to the
// source. Registered on a depot::routing by register_transfer().
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <depot/depot.hpp>

namespace transfer {

/// Starts transfer `transfer_id` (the saga id) of `amount` from account `from` to account `to`.
struct start_transfer {
  std::string transfer_id;
  std::string from;
  std::string to;
  std::int64_t amount = 0;
  /// A transfer names itself and two different accounts and moves a positive amount.
  void validate(depot::field_errors& errors) const;
};
DEPOT_MESSAGE(start_transfer, "transfer.start", transfer_id, from, to, amount)
// Every message of a transfer is keyed by its id: the steps of one transfer run one at a time.
DEPOT_MESSAGE_KEY(start_transfer, transfer_id)

/// The step that credits the target with the reserved amount.
struct credit_target {
  std::string transfer_id;
};
DEPOT_MESSAGE(credit_target, "transfer.credit-target", transfer_id)
DEPOT_MESSAGE_KEY(credit_target, transfer_id)

/// The step that completes a transfer whose target was credited.
struct confirm_transfer {
  std::string transfer_id;
};
DEPOT_MESSAGE(confirm_transfer, "transfer.confirm", transfer_id)
DEPOT_MESSAGE_KEY(confirm_transfer, transfer_id)

/// The timeout of the credit: due when the target was not credited in time.
struct credit_timed_out {
  std::string transfer_id;
};
DEPOT_MESSAGE(credit_timed_out, "transfer.credit-timed-out", transfer_id)
DEPOT_MESSAGE_KEY(credit_timed_out, transfer_id)

/// The compensation of the reservation: the amount goes back to the source.
struct release_reservation {
  std::string transfer_id;
};
DEPOT_MESSAGE(release_reservation, "transfer.release-reservation", transfer_id)
DEPOT_MESSAGE_KEY(release_reservation, transfer_id)

/// The compensation of the credit, for a transfer cancelled between its credit and its
/// confirmation: the amount is taken back from the target (which may overdraw it, as a debit
/// of the bank may).
struct reverse_credit {
  std::string transfer_id;
};
DEPOT_MESSAGE(reverse_credit, "transfer.reverse-credit", transfer_id)
DEPOT_MESSAGE_KEY(reverse_credit, transfer_id)

/// What the saga keeps of a transfer between its steps.
struct transfer_state {
  std::string transfer_id;
  std::string from;
  std::string to;
  std::int64_t amount = 0;
};
DEPOT_MESSAGE(transfer_state, "transfer.state", transfer_id, from, to, amount)

/// The saga type's name: its queue, and its table saga_transfer.
inline constexpr const char* saga_name = "transfer";

/// How a transfer behaves.
struct transfer_settings {
  /// A transfer whose target is not credited this long after its start is compensated.
  std::chrono::milliseconds credit_timeout{30'000};
};

/// The credit timeout given by TRANSFER_CREDIT_TIMEOUT_MS (milliseconds, at least 1), else the
/// default; throws std::invalid_argument naming the variable when it is not a valid number.
[[nodiscard]] transfer_settings settings_from_environment();

/// Registers the transfer saga and its queue's error policy.
void register_transfer(depot::routing& app, const transfer_settings& settings);

} // namespace transfer
