// Private: how envelopes and their parts travel as SQL parameters and come back from rows:
// batches as one JSON array (expanded by json_to_recordset), ids as a uuid[] literal, headers as
// a JSON object, free text made valid for a Postgres text column.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "depot/runtime/envelope.hpp"

namespace depot::persistence {

/// A Postgres array literal of uuids; ids come from depot and never need quoting.
[[nodiscard]] std::string uuid_array(const std::vector<std::string>& ids);
/// A Postgres array literal of texts, each quoted and escaped.
[[nodiscard]] std::string text_array(const std::vector<std::string>& values);
/// A Postgres array literal of integers.
[[nodiscard]] std::string int_array(const std::vector<int>& values);
/// Headers as one JSON object, keys and values made valid text (see postgres_text).
[[nodiscard]] std::string headers_json(const std::map<std::string, std::string>& headers);
/// The string members of a JSON object; anything unparsable is no headers.
[[nodiscard]] std::map<std::string, std::string> parse_headers(const std::string& text);
/// The rows of an insert as one JSON array of objects, one per envelope.
[[nodiscard]] std::string rows_json(const std::vector<envelope>& envelopes);
/// The columns copy_rows() fills, in order.
inline constexpr const char* copy_columns =
  "(id, queue, message_type, body, headers, deliver_by, priority, attempts, tenant, message_key)";
/// The rows of an insert in COPY's text format (copy_columns), when every envelope is a plain
/// new one (ready now, numbered by the store, not deduplicated); nullopt otherwise.
[[nodiscard]] std::optional<std::string> copy_rows(const std::vector<envelope>& envelopes);
/// Text a Postgres text column takes: invalid UTF-8 becomes U+FFFD, a NUL is dropped.
[[nodiscard]] std::string postgres_text(std::string_view text);

} // namespace depot::persistence
