// Positions of Kafka listeners that keep their offsets in Postgres (offset_store::postgres):
// the next offset of each partition, saved in the transaction that stored the records before
// it and read when partitions are assigned. A view over one connection. Blocks on Postgres.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "depot/persistence/connection.hpp"

namespace depot::persistence {

/// The next offset to consume of one partition.
struct partition_offset {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t next = 0;
};

class kafka_offsets {
public:
  explicit kafka_offsets(connection& conn) : conn_(conn) {}

  /// Inside the caller's transaction: records where consumer group `group` goes on.
  void save(const std::string& group, const std::vector<partition_offset>& offsets);
  /// Every partition position recorded for `group`.
  [[nodiscard]] std::vector<partition_offset> load(const std::string& group);

private:
  connection& conn_;
};

} // namespace depot::persistence
