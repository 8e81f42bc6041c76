// The saga tables' statements. A table per saga type, so its statements are built from the
// table's name; the lists a saga keeps (compensations, timeouts, steps) travel as one JSON
// object and are stored as jsonb columns of their own, for operators to query.
#include "depot/persistence/saga_store.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "depot/persistence/names.hpp"
#include "pg_native.hpp"

namespace depot::persistence {

/// The lists of a saga row, as they travel to and from Postgres.
struct saga_lists {
  std::vector<saga_compensation> compensations;
  std::vector<saga_timeout> timeouts;
  std::vector<saga_step> steps;
};
DEPOT_MESSAGE(saga_lists, "depot.saga-lists", compensations, timeouts, steps)

namespace {

// Integer microseconds since the epoch of timestamptz `column`.
std::string micros_of(std::string_view column) {
  return fmt::format("coalesce((extract(epoch from {}) * 1000000)::bigint, 0)", column);
}

bool finished(saga_status s) {
  return s == saga_status::completed || s == saga_status::compensated;
}

} // namespace

bool saga_store::cancel_scheduled(const std::string& id) {
  if (!is_uuid(id))
    return false;
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    auto schema = conn_.settings().schema;
    long long removed = 0;
    // A claimed envelope is locked by the transaction handling it: too late to cancel.
    sql << fmt::format(
      "WITH i AS (DELETE FROM {0} WHERE id IN (SELECT id FROM {0} WHERE id = :id::uuid FOR "
      "UPDATE SKIP LOCKED) RETURNING 1), o AS (DELETE FROM {1} WHERE id = :o::uuid AND "
      "not_before > now() RETURNING 1) SELECT (SELECT count(*) FROM i) + (SELECT count(*) FROM o)",
      names::qualified(schema, names::table::incoming),
      names::qualified(schema, names::table::outgoing)),
      soci::use(id, "id"), soci::use(id, "o"), soci::into(removed);
    return removed > 0;
  });
}

namespace {

/// The columns of a saga row as read, in this order.
std::string row_columns() {
  return fmt::format(
    "id, state::text, version, status, coalesce(reason, ''), json_build_object('compensations', "
    "compensations, 'timeouts', timeouts, 'steps', steps)::text, {}, {}, {}",
    micros_of("created"), micros_of("updated"), micros_of("keep_until"));
}

saga_row row_of(const soci::row& r) {
  saga_row row;
  row.id = r.get<std::string>(0);
  row.state = r.get<std::string>(1);
  row.version = r.get<long long>(2);
  row.status = saga_status_from(r.get<std::string>(3)).value_or(saga_status::running);
  row.reason = r.get<std::string>(4);
  auto l = from_json<saga_lists>(r.get<std::string>(5));
  row.compensations = std::move(l.compensations);
  row.timeouts = std::move(l.timeouts);
  row.steps = std::move(l.steps);
  row.created = r.get<long long>(6);
  row.updated = r.get<long long>(7);
  row.keep_until = r.get<long long>(8);
  return row;
}

} // namespace

/// Saga ids, as they travel to Postgres.
struct saga_ids {
  std::vector<std::string> ids;
};
DEPOT_MESSAGE(saga_ids, "depot.saga-ids", ids)

/// Saga rows to write, as they travel to Postgres: `loaded` is the version read (0: new).
struct saga_write {
  std::string id, state, status, reason, lists;
  std::int64_t version = 0, loaded = 0, keep = -1;
};
DEPOT_MESSAGE(saga_write, "depot.saga-write", id, state, status, reason, lists, version, loaded,
              keep)
struct saga_writes {
  std::vector<saga_write> rows;
};
DEPOT_MESSAGE(saga_writes, "depot.saga-writes", rows)

std::vector<saga_row> saga_store::select(const saga_definition& saga,
                                         const std::vector<std::string>& ids) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<saga_row> rows;
    auto list = to_json(saga_ids{ids});
    soci::rowset<soci::row> found =
      (sql.prepare << fmt::format("SELECT {} FROM {} WHERE id IN (SELECT "
                                  "json_array_elements_text(:ids::json->'ids'))",
                                  row_columns(),
                                  names::qualified(conn_.settings().schema, saga.table)),
       soci::use(list));
    for (const auto& r : found)
      rows.push_back(row_of(r));
    return rows;
  });
}

void saga_store::preload(const saga_definition& saga, const std::vector<std::string>& ids) {
  // Unlocked: the claim hands the envelopes of one saga (its key) to one transaction at a time,
  // and flush checks the version of every row it writes.
  std::vector<std::string> wanted;
  for (const auto& id : ids)
    if (!id.empty() && !cache_.contains({&saga, id}))
      wanted.push_back(id);
  if (wanted.empty())
    return;
  for (const auto& id : wanted)
    cache_[{&saga, id}] = {}; // absent unless found
  for (auto& row : select(saga, wanted)) {
    auto& entry = cache_[{&saga, row.id}];
    entry.loaded = row.version;
    entry.row = std::move(row);
  }
}

std::optional<saga_row> saga_store::load_saga(const saga_definition& saga, const std::string& id) {
  if (auto i = pending_.find({&saga, id}); i != pending_.end())
    return i->second;
  if (!cache_.contains({&saga, id}))
    preload(saga, {id});
  return cache_.at({&saga, id}).row;
}

std::optional<saga_row> saga_store::find(const saga_definition& saga, const std::string& id) {
  auto rows = select(saga, {id});
  if (rows.empty())
    return std::nullopt;
  return std::move(rows.front());
}

void saga_store::save_saga(const saga_definition& saga, saga_row& row) {
  ++row.version;
  pending_.insert_or_assign({&saga, row.id}, row);
}

void saga_store::accept() {
  for (auto& [key, row] : pending_) {
    auto& entry = cache_[key]; // present: every saved row was loaded first
    entry.row = std::move(row);
    entry.dirty = true;
  }
  pending_.clear();
}

void saga_store::discard() {
  pending_.clear();
}

void saga_store::clear() {
  pending_.clear();
  cache_.clear();
}

void saga_store::flush() {
  accept();
  std::map<const saga_definition*, std::pair<saga_writes, saga_writes>> by_saga; // new, old
  for (auto& [key, entry] : cache_) {
    if (!entry.dirty)
      continue;
    const auto& row = *entry.row;
    auto& writes = entry.loaded == 0 ? by_saga[key.first].first : by_saga[key.first].second;
    writes.rows.push_back(
      {row.id, row.state.empty() ? "{}" : row.state, to_string(row.status), row.reason,
       to_json(saga_lists{row.compensations, row.timeouts, row.steps}), row.version, entry.loaded,
       finished(row.status) ? conn_.settings().saga_retention : -1});
    entry.loaded = row.version;
    entry.dirty = false;
  }
  if (by_saga.empty())
    return;
  auto& sql = conn_.session();
  guarded(sql, [&] {
    const auto rows =
      "json_to_recordset(:rows::json->'rows') AS r(id text, state text, status "
      "text, reason text, lists text, version bigint, loaded bigint, keep bigint)";
    const auto keep = "now() + nullif(r.keep, -1) * interval '1 microsecond'";
    for (auto& [saga, writes] : by_saga) {
      auto table = names::qualified(conn_.settings().schema, saga->table);
      if (!writes.first.rows.empty()) {
        auto json = to_json(writes.first);
        sql << fmt::format(
          "INSERT INTO {} (id, state, version, status, reason, compensations, timeouts, steps, "
          "keep_until) SELECT r.id, r.state::jsonb, r.version, r.status, nullif(r.reason, ''), "
          "r.lists::jsonb->'compensations', r.lists::jsonb->'timeouts', r.lists::jsonb->'steps', "
          "{} FROM {}",
          table, keep, rows),
          soci::use(json);
      }
      if (!writes.second.rows.empty()) {
        auto json = to_json(writes.second);
        long long updated = 0;
        sql << fmt::format(
          "WITH u AS (UPDATE {} t SET state = r.state::jsonb, version = r.version, status = "
          "r.status, reason = nullif(r.reason, ''), compensations = "
          "r.lists::jsonb->'compensations', timeouts = r.lists::jsonb->'timeouts', steps = "
          "r.lists::jsonb->'steps', updated = now(), keep_until = {} FROM {} WHERE t.id = r.id "
          "AND t.version = r.loaded RETURNING 1) SELECT count(*) FROM u",
          table, keep, rows),
          soci::use(json), soci::into(updated);
        if (updated != static_cast<long long>(writes.second.rows.size()))
          throw db_error{
            failure_kind::transient, "40001",
            fmt::format("saga {}: {} of {} row(s) changed since they were loaded", saga->name,
                        writes.second.rows.size() - updated, writes.second.rows.size())};
      }
    }
  });
}

void saga_store::create_tables(const std::deque<saga_definition>& sagas) {
  auto& sql = conn_.session();
  guarded(sql, [&] {
    for (const auto& saga : sagas) {
      auto table = names::qualified(conn_.settings().schema, saga.table);
      sql << fmt::format(
        "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, state jsonb NOT NULL, version "
        "bigint NOT NULL, status text NOT NULL CHECK (status IN ('running', 'completed', "
        "'compensating', 'compensated', 'stuck')), reason text, compensations jsonb NOT NULL "
        "DEFAULT '[]', timeouts jsonb NOT NULL DEFAULT '[]', steps jsonb NOT NULL DEFAULT '[]', "
        "created timestamptz NOT NULL DEFAULT now(), updated timestamptz NOT NULL DEFAULT now(), "
        "keep_until timestamptz) WITH (fillfactor = 70)",
        table);
      // No index covers a column every step changes (updated, state, the lists): a step that
      // leaves the status alone is then a HOT update, written in place with room the fill
      // factor leaves.
      sql << fmt::format("CREATE INDEX IF NOT EXISTS {0}_status ON {1} (status)", saga.table,
                         table);
      sql << fmt::format(
        "CREATE INDEX IF NOT EXISTS {0}_kept ON {1} (keep_until) WHERE keep_until IS NOT NULL",
        saga.table, table);
      sql << fmt::format("COMMENT ON TABLE {} IS '{}'", table,
                         fmt::format("saga {}, state {}", saga.name, saga.state_type));
    }
  });
}

std::vector<std::string> saga_store::missing_tables(const std::deque<saga_definition>& sagas) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<std::string> missing;
    for (const auto& saga : sagas) {
      long long n = 0;
      sql << "SELECT count(*) FROM information_schema.tables WHERE table_schema = :s AND "
             "table_name = :t",
        soci::use(conn_.settings().schema), soci::use(saga.table), soci::into(n);
      if (n == 0)
        missing.push_back(saga.name);
    }
    return missing;
  });
}

std::vector<saga_summary> saga_store::list(const std::deque<saga_definition>& sagas,
                                           const saga_definition* type,
                                           std::optional<saga_status> status, int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    std::vector<saga_summary> all;
    std::string wanted = status ? to_string(*status) : "";
    for (const auto& saga : sagas) {
      if (type != nullptr && type != &saga)
        continue;
      soci::rowset<soci::row> rows =
        (sql.prepare << fmt::format("SELECT id, status, coalesce(reason, ''), {}, {}, "
                                    "jsonb_array_length(compensations) FROM {} WHERE :st = '' "
                                    "OR status = :st2 ORDER BY updated DESC LIMIT :n",
                                    micros_of("created"), micros_of("updated"),
                                    names::qualified(conn_.settings().schema, saga.table)),
         soci::use(wanted, "st"), soci::use(wanted, "st2"), soci::use(limit, "n"));
      for (const auto& r : rows) {
        saga_summary s;
        s.type = saga.name;
        s.id = r.get<std::string>(0);
        s.status = saga_status_from(r.get<std::string>(1)).value_or(saga_status::running);
        s.reason = r.get<std::string>(2);
        s.created = r.get<long long>(3);
        s.updated = r.get<long long>(4);
        s.pending_compensations = static_cast<std::size_t>(r.get<int>(5));
        all.push_back(std::move(s));
      }
    }
    std::sort(all.begin(), all.end(),
              [](const saga_summary& a, const saga_summary& b) { return a.updated > b.updated; });
    if (all.size() > static_cast<std::size_t>(limit))
      all.resize(static_cast<std::size_t>(limit));
    return all;
  });
}

std::size_t saga_store::forget_finished(const saga_definition& saga, int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    long long removed = 0;
    sql << fmt::format(
      "WITH d AS (DELETE FROM {0} WHERE id IN (SELECT id FROM {0} WHERE keep_until < now() "
      "LIMIT :n FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM d",
      names::qualified(conn_.settings().schema, saga.table)),
      soci::use(limit), soci::into(removed);
    return static_cast<std::size_t>(removed);
  });
}

} // namespace depot::persistence
