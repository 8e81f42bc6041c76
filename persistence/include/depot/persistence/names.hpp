// Every name depot's tables and their statements share, defined once: tables, functions, status
// values, the wake-up channel and the advisory-lock keys. SQL in persistence/ and the migrations
// in sql/ use these names; nothing outside persistence/ should need them.
#pragma once

#include <string>
#include <string_view>

namespace depot::persistence::names {

/// Tables of one service's schema.
namespace table {
inline constexpr std::string_view incoming = "incoming";
inline constexpr std::string_view outgoing = "outgoing";
inline constexpr std::string_view dead_letters = "dead_letters";
inline constexpr std::string_view nodes = "nodes";
inline constexpr std::string_view received_ids = "received_ids";
inline constexpr std::string_view queue_states = "queue_states";
inline constexpr std::string_view queue_breakers = "queue_breakers";
inline constexpr std::string_view kafka_offsets = "kafka_offsets";
/// The sequence of `incoming.seq`: claim order after priority.
inline constexpr std::string_view incoming_seq = "incoming_seq";
inline constexpr std::string_view schema_version = "schema_version";
} // namespace table

/// Values of `incoming.status` (see envelope_status).
namespace status {
inline constexpr std::string_view incoming = "incoming";
inline constexpr std::string_view scheduled = "scheduled";
/// Not a status of `incoming`: how store_admin::counts reports dead letters.
inline constexpr std::string_view dead = "dead";
} // namespace status

/// `schema.table`.
[[nodiscard]] inline std::string qualified(std::string_view schema, std::string_view table) {
  std::string result{schema};
  result += '.';
  result += table;
  return result;
}

/// The LISTEN/NOTIFY channel of a schema's wake-ups.
[[nodiscard]] inline std::string notify_channel(std::string_view schema) {
  return "depot_" + std::string{schema};
}

/// The first key of every session advisory lock of a schema (a node's, with its number as the
/// second; the outbox relay's, with -1): FNV-1a of the schema name.
[[nodiscard]] inline int lock_class(std::string_view schema) {
  unsigned h = 2166136261u;
  for (char c : schema)
    h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return static_cast<int>(h & 0x7fffffff);
}

/// The second key of the session advisory lock the cluster's leader holds (after the schema's
/// lock class; node numbers are positive and the outbox relay takes -1).
inline constexpr int leader_lock_key = -2;

/// Functions of one service's schema: the claims (see sql/009_claims.sql, where the setting
/// `depot.claimed`, local to a handling transaction, is a keyed claim's memo of the seqs it took).
namespace function {
inline constexpr std::string_view claim_ready = "claim_ready";
inline constexpr std::string_view claim_keyed = "claim_keyed";
} // namespace function

/// The key of the transaction lock that serialises schema migrations of one schema.
[[nodiscard]] inline std::string migration_lock(std::string_view schema) {
  return "depot.schema." + std::string{schema};
}

} // namespace depot::persistence::names
