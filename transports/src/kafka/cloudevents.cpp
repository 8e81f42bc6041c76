// The CloudEvents Kafka protocol binding, both modes.
#include "depot/transports/cloudevents.hpp"

#include <array>
#include <cstring>

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "depot/runtime/message.hpp"

namespace depot::cloudevents {

namespace {

constexpr std::string_view spec_version = "1.0";
constexpr std::string_view json_content_type = "application/json";
constexpr std::string_view binary_prefix = "ce_";
/// The original id of an event whose id is not a UUID.
constexpr const char* original_id_header = "cloudevents-id";
constexpr const char* subject_header = "subject";

/// Headers whose extension names differ (CloudEvents names are lower-case letters and digits).
constexpr std::array<std::pair<std::string_view, std::string_view>, 2> renamed{{
  {header::correlation_id, "correlationid"},
  {header::causation_id, "causationid"},
}};

/// Attributes of the spec itself: never extensions.
constexpr std::array<std::string_view, 10> reserved{
  "specversion",     "id",         "source", "type",       "time", "subject",
  "datacontenttype", "dataschema", "data",   "data_base64"};

bool is_extension_name(std::string_view name) {
  if (name.empty() || name.size() > 20)
    return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
      return false;
  for (auto r : reserved)
    if (name == r)
      return false;
  return name != "partitionkey";
}

/// The extension a header travels as, or "" when it stays home.
std::string_view extension_of(std::string_view header_name) {
  for (auto [h, ext] : renamed)
    if (header_name == h)
      return ext;
  return is_extension_name(header_name) ? header_name : std::string_view{};
}

/// The header an extension comes back as.
std::string header_of(std::string_view extension) {
  for (auto [h, ext] : renamed)
    if (extension == ext)
      return std::string{h};
  return std::string{extension};
}

std::uint64_t fnv1a(std::string_view bytes, std::uint64_t basis) {
  for (unsigned char c : bytes)
    basis = (basis ^ c) * 1099511628211ull;
  return basis;
}

} // namespace

std::string name_based_id(std::string_view space, std::string_view id) {
  std::string name{space};
  name += '\n';
  name += id;
  auto hi = fnv1a(name, 14695981039346656037ull);
  auto lo = fnv1a(name, 0x6c62272e07bb0142ull);
  hi = (hi & ~0xf000ull) | 0x8000ull;                        // version 8
  lo = (lo & 0x3fffffffffffffffull) | 0x8000000000000000ull; // RFC 4122 variant
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                     hi & 0xffff, lo >> 48, lo & 0xffffffffffffull);
}

namespace {

bool is_json_content_type(std::string_view ct) {
  std::string media{ct.substr(0, ct.find(';'))}; // media types are case-insensitive
  for (auto& c : media)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!media.empty() && media.back() == ' ')
    media.pop_back();
  return media == json_content_type || media == "text/json" ||
         (media.size() > 5 && media.substr(media.size() - 5) == "+json");
}

/// The attributes of an event, whichever mode carried it.
struct attributes {
  std::string specversion, id, source, type, datacontenttype;
  std::map<std::string, std::string> extensions; ///< subject included
};

envelope to_envelope(attributes a, std::string data, const char* attribute_prefix) {
  auto required = [&](const std::string& value, std::string_view name) {
    if (value.empty())
      throw decode_error{
        fmt::format("CloudEvent lacks required attribute '{}{}'", attribute_prefix, name)};
  };
  required(a.specversion, "specversion");
  required(a.id, "id");
  required(a.source, "source");
  required(a.type, "type");
  if (a.specversion != spec_version)
    throw decode_error{fmt::format("CloudEvent attribute '{}specversion' is '{}', not '{}'",
                                   attribute_prefix, a.specversion, spec_version)};
  if (!a.datacontenttype.empty() && !is_json_content_type(a.datacontenttype))
    throw decode_error{
      fmt::format("CloudEvent data of content type '{}' is not JSON", a.datacontenttype)};
  envelope e;
  if (is_uuid(a.id)) {
    e.id = a.id;
    for (auto& c : e.id)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  } else {
    e.id = name_based_id(a.source, a.id);
    e.headers[original_id_header] = a.id;
  }
  e.message_type = std::move(a.type);
  e.body = std::move(data);
  e.headers[header::source] = std::move(a.source);
  for (auto& [name, value] : a.extensions)
    if (is_extension_name(name) || name == subject_header || name == "correlationid" ||
        name == "causationid")
      e.headers[header_of(name)] = std::move(value); // never a header of depot's own (reply-to)
  e.deduplicated = true;                             // a broker delivers at least once
  return e;
}

/// `v` as JSON text.
std::string json_text_of(const rapidjson::Value& v) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w{out};
  v.Accept(w);
  return {out.GetString(), out.GetSize()};
}

/// A string's value, anything else as JSON text (an extension may be a number or a bool).
std::string string_of(const rapidjson::Value& v) {
  return v.IsString() ? std::string{v.GetString(), v.GetStringLength()} : json_text_of(v);
}

envelope from_structured(const record& r) {
  (void)detail::json_document{r.value}; // malformed, NUL or too deep: a decode_error here
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseFullPrecisionFlag>(r.value.data(), r.value.size());
  if (!doc.IsObject())
    throw decode_error{"structured CloudEvent is not a JSON object"};
  attributes a;
  std::string data = "{}"; // an event without data is a message with every field defaulted
  for (const auto& m : doc.GetObject()) {
    std::string_view name{m.name.GetString(), m.name.GetStringLength()};
    auto text = [&](std::string& to) {
      if (!m.value.IsString())
        throw decode_error{fmt::format("CloudEvent attribute '{}' is not a string", name)};
      to = string_of(m.value);
    };
    if (name == "specversion")
      text(a.specversion);
    else if (name == "id")
      text(a.id);
    else if (name == "source")
      text(a.source);
    else if (name == "type")
      text(a.type);
    else if (name == "datacontenttype")
      text(a.datacontenttype);
    else if (name == "data") {
      data = json_text_of(m.value);
    } else if (name == "data_base64") {
      if (!m.value.IsString())
        throw decode_error{"CloudEvent attribute 'data_base64' is not a string"};
      auto bytes = base64_decode(string_of(m.value));
      if (!bytes)
        throw decode_error{"CloudEvent attribute 'data_base64' is not base64"};
      data = std::move(*bytes);
    } else if (name != "time" && name != "dataschema" && !m.value.IsNull()) {
      a.extensions[std::string{name}] = string_of(m.value);
    }
  }
  return to_envelope(std::move(a), std::move(data), "");
}

envelope from_binary(const record& r) {
  attributes a;
  for (const auto& [name, value] : r.headers) {
    if (name == "content-type" || name == "Content-Type") {
      a.datacontenttype = value;
      continue;
    }
    if (name.size() <= binary_prefix.size() || name.compare(0, binary_prefix.size(), binary_prefix))
      continue;
    auto attr = std::string_view{name}.substr(binary_prefix.size());
    if (attr == "specversion")
      a.specversion = value;
    else if (attr == "id")
      a.id = value;
    else if (attr == "source")
      a.source = value;
    else if (attr == "type")
      a.type = value;
    else if (attr != "time" && attr != "dataschema" && attr != "datacontenttype")
      a.extensions[std::string{attr}] = value;
  }
  return to_envelope(std::move(a), r.value, "ce_");
}

} // namespace

record to_record(const envelope& e, std::string topic, std::string_view source,
                 cloudevents_mode mode) {
  record r;
  r.topic = std::move(topic);
  r.key = e.key.empty() ? e.id : e.key;
  auto time = iso8601(e.received_at != 0 ? e.received_at : now_micros());
  std::vector<std::pair<std::string, std::string>> extensions;
  if (!e.key.empty())
    extensions.emplace_back("partitionkey", e.key);
  std::string subject;
  for (const auto& [name, value] : e.headers) {
    if (name == subject_header) {
      subject = value;
      continue;
    }
    auto ext = extension_of(name);
    if (!ext.empty())
      extensions.emplace_back(std::string{ext}, value);
  }
  if (mode == cloudevents_mode::binary) {
    r.value = e.body;
    auto& h = r.headers;
    h.emplace_back("ce_specversion", spec_version);
    h.emplace_back("ce_id", e.id);
    h.emplace_back("ce_source", source);
    h.emplace_back("ce_type", e.message_type);
    h.emplace_back("ce_time", time);
    if (!subject.empty())
      h.emplace_back("ce_subject", subject);
    for (auto& [name, value] : extensions)
      h.emplace_back(fmt::format("ce_{}", name), std::move(value));
    h.emplace_back("content-type", json_content_type);
    return r;
  }
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w{out};
  auto member = [&w](std::string_view name, std::string_view value) {
    w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  member("specversion", spec_version);
  member("id", e.id);
  member("source", source);
  member("type", e.message_type);
  member("time", time);
  member("datacontenttype", json_content_type);
  if (!subject.empty())
    member("subject", subject);
  for (const auto& [name, value] : extensions)
    member(name, value);
  w.Key("data");
  w.RawValue(e.body.data(), e.body.size(), rapidjson::kObjectType); // a stored body is JSON
  w.EndObject();
  r.value.assign(out.GetString(), out.GetSize());
  r.headers.emplace_back("content-type", structured_content_type);
  return r;
}

envelope from_record(const record& r) {
  for (const auto& [name, value] : r.headers)
    if ((name == "content-type" || name == "Content-Type") &&
        value.compare(0, structured_content_type.size(), structured_content_type) == 0)
      return from_structured(r);
  return from_binary(r);
}

namespace {

constexpr std::string_view alphabet =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

} // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    auto n = static_cast<unsigned char>(bytes[i]) << 16 |
             static_cast<unsigned char>(bytes[i + 1]) << 8 |
             static_cast<unsigned char>(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0})
      out += alphabet[(n >> shift) & 63];
  }
  if (auto rest = bytes.size() - i; rest > 0) {
    unsigned n = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2)
      n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += rest == 2 ? alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0)
    return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    unsigned n = 0;
    int pad = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      char c = text[i + j];
      unsigned v = 0;
      if (c == '=' && i + 4 == text.size() && j >= 2) {
        ++pad;
      } else if (pad > 0) {
        return std::nullopt; // data after padding
      } else if (auto at = alphabet.find(c); at != std::string_view::npos) {
        v = static_cast<unsigned>(at);
      } else {
        return std::nullopt;
      }
      n = n << 6 | v;
    }
    out += static_cast<char>(n >> 16);
    if (pad < 2)
      out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1)
      out += static_cast<char>(n & 0xff);
  }
  return out;
}

} // namespace depot::cloudevents
