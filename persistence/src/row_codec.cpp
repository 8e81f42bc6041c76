// Envelopes as SQL parameters and back; see row_codec.hpp.
#include "row_codec.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace depot::persistence {

std::string uuid_array(const std::vector<std::string>& ids) {
  return fmt::format("{{{}}}", fmt::join(ids, ","));
}

std::string text_array(const std::vector<std::string>& values) {
  std::string result = "{";
  for (const auto& v : values) {
    if (result.size() > 1)
      result += ',';
    result += '"';
    for (char c : v) {
      if (c == '"' || c == '\\')
        result += '\\';
      result += c;
    }
    result += '"';
  }
  return result + "}";
}

std::string int_array(const std::vector<int>& values) {
  return fmt::format("{{{}}}", fmt::join(values, ","));
}

std::string headers_json(const std::map<std::string, std::string>& headers) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w{out};
  // Headers may come from outside (a Kafka record): made valid text, so that jsonb takes them.
  // Plain ASCII, what depot's own headers are, is taken as it is, without a copy.
  std::string scratch;
  auto valid = [&scratch](const std::string& t) -> const std::string& {
    if (std::all_of(t.begin(), t.end(), [](char c) { return c > 0; })) // signed: below 0x80
      return t;
    return scratch = postgres_text(t);
  };
  w.StartObject();
  for (const auto& [k, v] : headers) {
    const auto& key = valid(k);
    w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size())); // written at once
    const auto& value = valid(v);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  }
  w.EndObject();
  return out.GetString();
}

std::string postgres_text(std::string_view text) {
  std::string result, terminated{text}; // the validator may read one byte past a cut sequence
  result.reserve(text.size());
  rapidjson::StringStream in{terminated.c_str()};
  const auto* end = terminated.c_str() + terminated.size();
  while (in.src_ < end) {
    const auto* start = in.src_;
    rapidjson::StringBuffer one;
    if (*start != '\0' && rapidjson::UTF8<>::Validate(in, one) && in.src_ <= end) {
      result.append(one.GetString(), one.GetSize());
    } else {
      if (*start != '\0')
        result += "\xEF\xBF\xBD";
      in.src_ = start + 1;
    }
  }
  return result;
}

std::map<std::string, std::string> parse_headers(const std::string& text) {
  std::map<std::string, std::string> result;
  rapidjson::Document doc;
  // Iterative: whatever a producer stored as headers, nesting costs heap, never stack.
  if (doc.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size()).HasParseError() ||
      !doc.IsObject())
    return result;
  for (const auto& m : doc.GetObject())
    if (m.value.IsString())
      result.emplace(m.name.GetString(), m.value.GetString());
  return result;
}

std::string rows_json(const std::vector<envelope>& envelopes) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w{out};
  auto str = [&w](const char* key, const std::string& value) {
    w.Key(key);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartArray();
  for (const auto& e : envelopes) {
    w.StartObject();
    str("id", e.id);
    str("queue", e.queue);
    str("message_type", e.message_type);
    str("body", e.body);
    str("headers", headers_json(e.headers));
    str("status", to_string(e.status));
    w.Key("execution_time");
    w.Int64(e.execution_time);
    w.Key("deliver_by");
    w.Int64(e.deliver_by);
    w.Key("priority");
    w.Int(e.priority);
    w.Key("attempts");
    w.Int(e.attempts);
    str("tenant", e.tenant);
    w.Key("seq");
    if (e.seq != 0)
      w.Int64(e.seq);
    else
      w.Null(); // the store numbers it
    str("message_key", e.key);
    w.Key("dedup");
    w.Bool(e.deduplicated);
    w.EndObject();
  }
  w.EndArray();
  return out.GetString();
}

namespace {

/// COPY text format: backslash, tab, newline and carriage return escaped; a Postgres text cannot
/// hold NUL, which the send path refuses before it gets here.
void append_field(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
}

void append_text_or_null(std::string& out, std::string_view text) {
  if (text.empty())
    out += "\\N";
  else
    append_field(out, text);
}

} // namespace

std::optional<std::string> copy_rows(const std::vector<envelope>& envelopes) {
  std::string out;
  for (const auto& e : envelopes) {
    if (e.status != envelope_status::incoming || e.execution_time != 0 || e.seq != 0 ||
        e.deduplicated || e.deliver_by < 0)
      return std::nullopt;
    append_field(out, e.id);
    out += '\t';
    append_field(out, e.queue);
    out += '\t';
    append_field(out, e.message_type);
    out += '\t';
    append_field(out, e.body);
    out += '\t';
    append_field(out, headers_json(e.headers));
    out += '\t';
    if (e.deliver_by == 0)
      out += "\\N";
    else
      out += iso8601(e.deliver_by);
    out += fmt::format("\t{}\t{}\t", e.priority, e.attempts);
    append_text_or_null(out, e.tenant);
    out += '\t';
    append_text_or_null(out, e.key);
    out += '\n';
  }
  return out;
}

} // namespace depot::persistence
