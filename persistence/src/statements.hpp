// Private: the text of every statement depot runs on a schema, built once per schema from the
// names in names.hpp. Statement bodies live here and nowhere else in persistence/.
#pragma once

#include <string>
#include <string_view>

namespace depot::persistence {

struct statements {
  explicit statements(std::string_view schema);

  // schema
  std::string schema_exists, schema_version, create_schema, create_version_table, record_version,
    search_path;
  // inbox
  std::string insert_incoming, copy_incoming, notify, claim, claim_keyed, claim_again, pause_queue,
    paused_queues, resume_queue, set_breaker, close_breaker, open_breakers, promote_due,
    forget_received_ids;
  // outbox
  std::string insert_outgoing, lock_relay, pending_outgoing, delete_outgoing,
    count_outgoing_attempt, outgoing_backlog;
  // Kafka listener offsets
  std::string save_kafka_offsets, load_kafka_offsets;
  // dead letters
  std::string insert_dead_letter, list_dead_letters, replay_dead_letters, purge_dead_letters;
  // nodes
  std::string lock_node, lock_nodes_table, next_node_number, delete_node_number, insert_node,
    heartbeat, reinsert_node, node_statuses, delete_node, delete_dead_nodes, lock_leader,
    cluster_members;
  // admin
  std::string pending, ready_capped, counts, purge, free_connections;
};

/// The statements of `schema`, built on first use and kept for the life of the process.
[[nodiscard]] const statements& statements_of(std::string_view schema);

} // namespace depot::persistence
