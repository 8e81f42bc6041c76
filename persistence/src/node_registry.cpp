// The node registry's statements: registration under an advisory lock, heartbeats, recovery.
#include "depot/persistence/node_registry.hpp"

#include <fmt/format.h>

#include "depot/persistence/names.hpp"
#include "depot/runtime/message.hpp"
#include "pg_native.hpp"
#include "row_codec.hpp"
#include "statements.hpp"

namespace depot::persistence {

bool node_registry::lock_number(int number) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    int locked = 0;
    auto cls = names::lock_class(conn_.settings().schema);
    sql << conn_.sql().lock_node, soci::use(cls, "c"), soci::use(number, "n"), soci::into(locked);
    return locked != 0;
  });
}

node_registration node_registry::register_node(int number, std::string_view uri,
                                               std::string_view version) {
  auto& sql = conn_.session();
  const auto& text = conn_.sql();
  return guarded(sql, [&] {
    node_registration self{new_envelope_id(), number};
    soci::transaction tr{sql};
    sql << text.lock_nodes_table;
    if (number == 0)
      sql << text.next_node_number, soci::into(self.number);
    // A live node holds its number's advisory lock on its session; a dead process's lock went
    // with its connection, so a restart takes its number over at once.
    if (!lock_number(self.number))
      throw db_error{failure_kind::permanent, "",
                     fmt::format("node id {} is held by a live node; give this node another "
                                 "--node-id (DEPOT_NODE_ID)",
                                 self.number)};
    soci::statement previous = (sql.prepare << text.delete_node_number, soci::use(self.number));
    previous.execute(true); // the row of an earlier incarnation that did not deregister
    auto u = std::string{uri};
    auto v = std::string{version};
    sql << text.insert_node, soci::use(self.id, "id"), soci::use(self.number, "n"),
      soci::use(u, "u"), soci::use(v, "v");
    tr.commit();
    return self;
  });
}

namespace {

/// A node's queues and peers, as they travel to and from Postgres.
struct node_lists {
  std::vector<std::string> queues;
  std::vector<int> peers;
};
DEPOT_MESSAGE(node_lists, "depot.node-lists", queues, peers)

} // namespace

void node_registry::heartbeat(const node_registration& self, std::string_view version,
                              const node_health_row& health, const node_presence& presence) {
  auto& sql = conn_.session();
  const auto& text = conn_.sql();
  guarded(sql, [&] {
    auto reason = postgres_text(health.reason);
    auto lists = to_json(node_lists{presence.queues, presence.peers});
    soci::statement st =
      (sql.prepare << text.heartbeat, soci::use(health.health, "h"), soci::use(reason, "r"),
       soci::use(presence.uri, "u"), soci::use(lists, "l"), soci::use(self.id, "id"));
    st.execute(true);
    if (st.get_affected_rows() > 0)
      return;
    // Declared dead by another node (its work was recovered): come back under the same number.
    auto v = std::string{version};
    soci::statement back =
      (sql.prepare << text.reinsert_node, soci::use(self.id, "id"), soci::use(self.number, "n"),
       soci::use(v, "v"), soci::use(health.health, "h"), soci::use(reason, "r"),
       soci::use(presence.uri, "u"), soci::use(lists, "l"));
    back.execute(true);
    if (back.get_affected_rows() == 0)
      throw db_error{failure_kind::permanent, "",
                     fmt::format("node id {} was taken by another node while this one was "
                                 "unreachable; restart this node",
                                 self.number)};
  });
}

bool node_registry::try_lead() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    int locked = 0;
    auto cls = names::lock_class(conn_.settings().schema);
    sql << conn_.sql().lock_leader, soci::use(cls, "c"), soci::into(locked);
    return locked != 0;
  });
}

std::vector<cluster_member> node_registry::members() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<cluster_member> result;
    auto cls = names::lock_class(conn_.settings().schema);
    soci::rowset<soci::row> rows =
      (sql.prepare << conn_.sql().cluster_members, soci::use(cls, "c"));
    for (const auto& r : rows) {
      auto& m = result.emplace_back();
      m.number = r.get<int>(0);
      m.presence.uri = r.get<std::string>(1);
      m.started = r.get<long long>(2);
      m.heartbeat = r.get<long long>(3);
      auto lists = from_json<node_lists>(r.get<std::string>(4));
      m.presence.queues = std::move(lists.queues);
      m.presence.peers = std::move(lists.peers);
      m.health = r.get<std::string>(5);
      m.version = r.get<std::string>(6);
      m.leader = r.get<int>(7) != 0;
    }
    return result;
  });
}

std::vector<node_status> node_registry::statuses() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<node_status> result;
    soci::rowset<soci::row> rows = sql.prepare << conn_.sql().node_statuses;
    for (const auto& r : rows)
      result.push_back(
        {r.get<int>(0), {r.get<std::string>(1), r.get<std::string>(2)}, r.get<long long>(3)});
    return result;
  });
}

void node_registry::deregister(const node_registration& self) {
  auto& sql = conn_.session();
  guarded(sql, [&] {
    soci::transaction tr{sql};
    sql << conn_.sql().delete_node, soci::use(self.id);
    tr.commit();
  });
}

std::vector<int> node_registry::recover_stale(micros stale_after) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto stale = static_cast<long long>(stale_after);
    auto cls = names::lock_class(conn_.settings().schema);
    soci::transaction tr{sql};
    soci::rowset<int> rows =
      (sql.prepare << conn_.sql().delete_dead_nodes, soci::use(stale, "s"), soci::use(cls, "c"));
    std::vector<int> dead(rows.begin(), rows.end());
    tr.commit();
    return dead;
  });
}

} // namespace depot::persistence
