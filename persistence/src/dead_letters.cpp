// The dead-letter statements.
#include "depot/persistence/dead_letters.hpp"

#include <cctype>
#include <set>

#include "depot/persistence/inbox.hpp"
#include "pg_native.hpp"
#include "row_codec.hpp"
#include "statements.hpp"

namespace depot::persistence {

namespace {

/// "2026-12-01 ..." is a time; anything else an interval before now ("1 hour", "30min").
bool is_timestamp(std::string_view s) {
  return s.size() >= 10 && std::isdigit(static_cast<unsigned char>(s[0])) &&
         std::isdigit(static_cast<unsigned char>(s[3])) && s[4] == '-';
}

/// The parameters of the statements' filter, as they are bound.
struct bound_filter {
  std::string ids, queue, type, exception, since_time, since_ago;

  explicit bound_filter(const dead_letter_filter& f)
    : queue(f.queue), type(f.message_type), exception(f.exception_type) {
    std::vector<std::string> valid;
    for (const auto& id : f.ids)
      if (is_uuid(id))
        valid.push_back(id);
    // Ids were asked for and none can exist: match the nil uuid, which no envelope has.
    if (valid.empty() && !f.ids.empty())
      valid.emplace_back("00000000-0000-0000-0000-000000000000");
    ids = uuid_array(valid);
    (is_timestamp(f.since) ? since_time : since_ago) = f.since;
  }

  void bind(soci::statement& st) {
    st.exchange(soci::use(ids, "ids"));
    st.exchange(soci::use(queue, "q"));
    st.exchange(soci::use(type, "t"));
    st.exchange(soci::use(exception, "x"));
    st.exchange(soci::use(since_time, "ts"));
    st.exchange(soci::use(since_ago, "ago"));
  }
};

void prepare(soci::statement& st, const std::string& text) {
  st.alloc();
  st.prepare(text);
  st.define_and_bind();
}

} // namespace

void dead_letters::add(const envelope& e, std::string_view exception_type,
                       std::string_view exception_message, bool replayable) {
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto headers = headers_json(e.headers);
    auto type = postgres_text(exception_type);
    auto message = postgres_text(exception_message);
    auto attempts = e.attempts + 1;
    auto source = e.header_value(header::source);
    int r = replayable ? 1 : 0;
    sql << conn_.sql().insert_dead_letter, soci::use(e.id, "id"), soci::use(e.queue, "q"),
      soci::use(e.message_type, "t"), soci::use(e.body, "b"), soci::use(headers, "h"),
      soci::use(type, "et"), soci::use(message, "em"), soci::use(attempts, "a"),
      soci::use(source, "s"), soci::use(e.key, "k"), soci::use(e.tenant, "tn"),
      soci::use(e.priority, "p"), soci::use(r, "r");
  });
}

std::vector<dead_letter> dead_letters::list(const dead_letter_filter& filter, int limit) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    bound_filter bound{filter};
    soci::row r;
    soci::statement st{sql};
    bound.bind(st);
    st.exchange(soci::use(limit, "n"));
    st.exchange(soci::into(r));
    prepare(st, conn_.sql().list_dead_letters);
    std::vector<dead_letter> result;
    for (bool more = st.execute(true); more; more = st.fetch()) {
      auto& d = result.emplace_back();
      d.id = r.get<std::string>(0);
      d.queue = r.get<std::string>(1);
      d.message_type = r.get<std::string>(2);
      d.body = r.get<std::string>(3);
      d.headers = r.get<std::string>(4);
      d.exception_type = r.get<std::string>(5);
      d.exception_message = r.get<std::string>(6);
      d.attempts = r.get<int>(7);
      d.source = r.get<std::string>(8);
      d.failed_at = r.get<long long>(9);
      d.message_key = r.get<std::string>(10);
      d.tenant = r.get<std::string>(11);
      d.priority = r.get<int>(12);
    }
    return result;
  });
}

std::optional<dead_letter> dead_letters::find(const std::string& id) {
  dead_letter_filter only;
  only.ids.push_back(id);
  auto found = list(only, 1);
  if (found.empty())
    return std::nullopt;
  return std::move(found.front());
}

std::vector<std::string> dead_letters::replay(const dead_letter_filter& filter) {
  auto& sql = conn_.session();
  std::vector<std::string> ids;
  std::set<std::string> queues;
  guarded(sql, [&] {
    bound_filter bound{filter};
    std::string id, queue;
    soci::statement st{sql};
    bound.bind(st);
    st.exchange(soci::into(id));
    st.exchange(soci::into(queue));
    prepare(st, conn_.sql().replay_dead_letters);
    for (bool more = st.execute(true); more; more = st.fetch()) {
      ids.push_back(id);
      queues.insert(queue);
    }
  });
  inbox{conn_}.notify_ready(queues, 0);
  return ids;
}

std::size_t dead_letters::purge(const dead_letter_filter& filter) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    bound_filter bound{filter};
    long long gone = 0;
    soci::statement st{sql};
    bound.bind(st);
    st.exchange(soci::into(gone));
    prepare(st, conn_.sql().purge_dead_letters);
    st.execute(true);
    return static_cast<std::size_t>(gone);
  });
}

} // namespace depot::persistence
