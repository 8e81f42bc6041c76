// The outbox's statements.
#include "depot/persistence/outbox.hpp"

#include "depot/persistence/names.hpp"
#include "pg_native.hpp"
#include "row_codec.hpp"
#include "statements.hpp"

namespace depot::persistence {

void outbox::insert(const std::vector<envelope>& envelopes) {
  if (envelopes.empty())
    return;
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto rows = rows_json(envelopes);
    sql << conn_.sql().insert_outgoing, soci::use(rows);
  });
}

bool outbox::lock_relay() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    int locked = 0;
    auto cls = names::lock_class(conn_.settings().schema);
    sql << conn_.sql().lock_relay, soci::use(cls, "c"), soci::into(locked);
    return locked != 0;
  });
}

std::vector<envelope> outbox::pending(const std::vector<std::string>& destinations, int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    // One destination at a time: each read walks the index (destination, seq) in order.
    std::vector<envelope> result;
    std::string d;
    soci::row r;
    soci::statement st = (sql.prepare << conn_.sql().pending_outgoing, soci::use(d, "d"),
                          soci::use(limit, "n"), soci::into(r));
    for (const auto& destination : destinations) {
      if (static_cast<int>(result.size()) >= limit)
        break;
      d = destination;
      st.execute();
      while (st.fetch()) {
        auto& e = result.emplace_back();
        e.id = r.get<std::string>(0);
        e.queue = r.get<std::string>(1);
        e.message_type = r.get<std::string>(2);
        e.body = r.get<std::string>(3);
        e.headers = parse_headers(r.get<std::string>(4));
        e.attempts = r.get<int>(5);
        e.key = r.get<std::string>(6);
        e.received_at = r.get<long long>(7);
        e.seq = r.get<long long>(8);
      }
    }
    return result;
  });
}

std::size_t outbox::remove(const std::vector<std::string>& ids) {
  if (ids.empty())
    return 0;
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    long long deleted = 0;
    sql << conn_.sql().delete_outgoing, soci::use(id_array, "ids"), soci::into(deleted);
    return static_cast<std::size_t>(deleted);
  });
}

void outbox::count_attempt(const std::vector<std::string>& ids) {
  if (ids.empty())
    return;
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    sql << conn_.sql().count_outgoing_attempt, soci::use(id_array, "ids");
  });
}

std::vector<outbox_backlog> outbox::backlog() {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    soci::rowset<soci::row> rows = sql.prepare << conn_.sql().outgoing_backlog;
    std::vector<outbox_backlog> result;
    for (const auto& r : rows)
      result.push_back({r.get<std::string>(0), r.get<long long>(1), r.get<long long>(2)});
    return result;
  });
}

} // namespace depot::persistence
