// The statements of Kafka listener offsets.
#include "depot/persistence/kafka_offsets.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "pg_native.hpp"
#include "statements.hpp"

namespace depot::persistence {

void kafka_offsets::save(const std::string& group, const std::vector<partition_offset>& offsets) {
  if (offsets.empty())
    return;
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w{out};
  w.StartArray();
  for (const auto& o : offsets) {
    w.StartObject();
    w.Key("topic");
    w.String(o.topic.data(), static_cast<rapidjson::SizeType>(o.topic.size()));
    w.Key("partition");
    w.Int(o.partition);
    w.Key("next");
    w.Int64(o.next);
    w.EndObject();
  }
  w.EndArray();
  std::string rows = out.GetString();
  auto& sql = conn_.session();
  guarded(sql, [&] {
    sql << conn_.sql().save_kafka_offsets, soci::use(group, "g"), soci::use(rows, "rows");
  });
}

std::vector<partition_offset> kafka_offsets::load(const std::string& group) {
  auto& sql = conn_.session();
  return guarded(sql, [&] {
    soci::rowset<soci::row> rows =
      (sql.prepare << conn_.sql().load_kafka_offsets, soci::use(group, "g"));
    std::vector<partition_offset> result;
    for (const auto& r : rows)
      result.push_back({r.get<std::string>(0), r.get<int>(1), r.get<long long>(2)});
    return result;
  });
}

} // namespace depot::persistence
