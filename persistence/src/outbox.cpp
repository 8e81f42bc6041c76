// The outbox's statements.
#include "depot/persistence/outbox.hpp"

#include <algorithm>

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

std::vector<envelope> outbox::claim(std::string_view destination, int owner, int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto d = std::string{destination};
    soci::transaction tr{sql};
    sql << "SET LOCAL synchronous_commit = off"; // as inbox::claim: a lost claim is harmless
    soci::rowset<soci::row> rows =
      (sql.prepare << conn_.sql().claim_outgoing, soci::use(owner, "owner"), soci::use(d, "d"),
       soci::use(limit, "n"));
    std::vector<envelope> result;
    for (const auto& r : rows) {
      auto& e = result.emplace_back();
      e.id = r.get<std::string>(0);
      e.queue = r.get<std::string>(1);
      e.message_type = r.get<std::string>(2);
      e.body = r.get<std::string>(3);
      e.headers = parse_headers(r.get<std::string>(4));
      e.deliver_by = r.get<long long>(5);
      e.attempts = r.get<int>(6);
      e.received_at = r.get<long long>(7);
    }
    tr.commit();
    std::stable_sort(result.begin(), result.end(), [](const envelope& a, const envelope& b) {
      return a.received_at < b.received_at;
    });
    return result;
  });
}

std::size_t outbox::complete(const std::vector<std::string>& ids, int owner) {
  if (ids.empty())
    return 0;
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    long long deleted = 0;
    sql << conn_.sql().complete_outgoing, soci::use(id_array, "ids"), soci::use(owner, "o"),
      soci::into(deleted);
    return static_cast<std::size_t>(deleted);
  });
}

void outbox::release(const std::vector<std::string>& ids, int owner) {
  if (ids.empty())
    return;
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto id_array = uuid_array(ids);
    sql << conn_.sql().release_outgoing, soci::use(id_array, "ids"), soci::use(owner, "o");
  });
}

} // namespace depot::persistence
