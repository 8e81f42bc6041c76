// The dead-letter statements.
#include "depot/persistence/dead_letters.hpp"

#include "pg_native.hpp"
#include "row_codec.hpp"
#include "statements.hpp"

namespace depot::persistence {

void dead_letters::add(const envelope& e, std::string_view exception_type,
                       std::string_view exception_message) {
  auto& sql = conn_.session();
  guarded(sql, [&] {
    auto headers = headers_json(e.headers);
    auto type = postgres_text(exception_type);
    auto message = postgres_text(exception_message);
    auto attempts = e.attempts + 1;
    auto source = e.header_value(header::source);
    sql << conn_.sql().insert_dead_letter, soci::use(e.id, "id"), soci::use(e.queue, "q"),
      soci::use(e.message_type, "t"), soci::use(e.body, "b"), soci::use(headers, "h"),
      soci::use(type, "et"), soci::use(message, "em"), soci::use(attempts, "a"),
      soci::use(source, "s");
  });
}

} // namespace depot::persistence
