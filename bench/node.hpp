// The settings every node of the benchmark starts from.
#pragma once

#include <string>

#include <depot/depot.hpp>

#include "bench.hpp"

namespace bench {

/// A node of service "bench" on `schema` (its search_path set), with the batch size and the
/// workers per queue of `o`.
inline depot::node_settings node_settings_of(const options& o, const std::string& schema) {
  depot::node_settings s;
  s.db = with_search_path(o.db, schema);
  s.schema = schema;
  s.service = "bench";
  s.batch_size = o.batch_size;
  s.concurrency = o.concurrency;
  return s;
}

} // namespace bench
