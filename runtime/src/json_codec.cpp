// The JSON half of message.hpp: the writer, document and value classes its templates call,
// implemented with RapidJSON. RapidJSON stays in this file; nothing here knows message types.
#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>

#include "depot/runtime/message.hpp"

namespace depot::detail {
namespace {

// Full precision so that a double survives to_json and from_json unchanged; iterative, so that
// nesting costs heap, never stack; validating UTF-8, since Postgres text refuses anything else.
constexpr unsigned parse_flags = rapidjson::kParseFullPrecisionFlag |
                                 rapidjson::kParseIterativeFlag |
                                 rapidjson::kParseValidateEncodingFlag;

constexpr std::size_t no_index = static_cast<std::size_t>(-1);

const rapidjson::Value& node(const void* p) {
  return *static_cast<const rapidjson::Value*>(p);
}

rapidjson::SizeType checked_length(std::string_view text) {
  if (text.size() > std::numeric_limits<rapidjson::SizeType>::max())
    throw std::length_error("depot: JSON strings are limited to 4 GiB");
  return static_cast<rapidjson::SizeType>(text.size());
}

// Why a body was refused by the checks below while RapidJSON parsed it.
enum class refusal { none, too_deep, nul };

// Forwards the reader's events to a document, refusing nesting deeper than max_json_depth and
// strings (values and keys) that hold a NUL, which Postgres text cannot store.
struct checked_handler {
  rapidjson::Document& document;
  refusal& refused;
  std::size_t depth = 0;

  bool Null() { return document.Null(); }
  bool Bool(bool b) { return document.Bool(b); }
  bool Int(int i) { return document.Int(i); }
  bool Uint(unsigned i) { return document.Uint(i); }
  bool Int64(std::int64_t i) { return document.Int64(i); }
  bool Uint64(std::uint64_t i) { return document.Uint64(i); }
  bool Double(double d) { return document.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    return document.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    if (std::string_view{s, n}.find('\0') != std::string_view::npos)
      return refuse(refusal::nul);
    return document.String(s, n, copy);
  }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return String(s, n, copy); }
  bool StartObject() { return enter() && document.StartObject(); }
  bool EndObject(rapidjson::SizeType n) { return --depth, document.EndObject(n); }
  bool StartArray() { return enter() && document.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return --depth, document.EndArray(n); }

  bool enter() { return ++depth <= max_json_depth || refuse(refusal::too_deep); }
  bool refuse(refusal why) {
    refused = why;
    return false;
  }
};

// Parses `text` into `document`; throws decode_error with the reason when it is refused.
void parse(rapidjson::Document& document, std::string_view text) {
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    throw decode_error(fmt::format("body holds a NUL byte at offset {}", nul));
  auto refused = refusal::none;
  rapidjson::ParseResult result;
  auto generate = [&](rapidjson::Document& d) {
    checked_handler handler{d, refused};
    rapidjson::MemoryStream stream{text.data(), text.size()};
    rapidjson::Reader reader;
    result = reader.Parse<parse_flags>(stream, handler);
    return !result.IsError();
  };
  document.Populate(generate);
  switch (refused) {
    case refusal::too_deep:
      throw decode_error(fmt::format("JSON nested deeper than {} levels at offset {}",
                                     max_json_depth, result.Offset()));
    case refusal::nul:
      throw decode_error(fmt::format(
        "string with a NUL character (\\u0000) ending at offset {}: Postgres text cannot hold it",
        result.Offset()));
    case refusal::none: break;
  }
  if (result.IsError())
    throw decode_error(fmt::format("malformed JSON at offset {}: {}", result.Offset(),
                                   rapidjson::GetParseError_En(result.Code())));
}

} // namespace

struct json_writer::impl {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer{buffer};
};

json_writer::json_writer() : impl_(std::make_unique<impl>()) {}

json_writer::~json_writer() = default;

void json_writer::start_object() {
  impl_->writer.StartObject();
}

void json_writer::key(std::string_view name) {
  impl_->writer.Key(name.data(), checked_length(name), true);
}

void json_writer::end_object() {
  impl_->writer.EndObject();
}

void json_writer::start_array() {
  impl_->writer.StartArray();
}

void json_writer::end_array() {
  impl_->writer.EndArray();
}

void json_writer::null() {
  impl_->writer.Null();
}

void json_writer::boolean(bool x) {
  impl_->writer.Bool(x);
}

void json_writer::integer(std::int64_t x) {
  impl_->writer.Int64(x);
}

void json_writer::unsigned_integer(std::uint64_t x) {
  impl_->writer.Uint64(x);
}

void json_writer::number(double x) {
  if (!std::isfinite(x))
    throw std::domain_error("depot::to_json: NaN and infinity have no JSON representation");
  impl_->writer.Double(x);
}

void json_writer::string(std::string_view x) {
  if (x.find('\0') != std::string_view::npos)
    throw std::domain_error("depot::to_json: a string holds a NUL, which Postgres text cannot");
  impl_->writer.String(x.data(), checked_length(x), true);
}

std::string json_writer::take() {
  return std::string{impl_->buffer.GetString(), impl_->buffer.GetSize()};
}

json_value::json_value(const void* node, const json_value* parent, std::string_view key,
                       std::size_t index)
  : node_(node), parent_(parent), key_(key), index_(index) {}

std::string json_value::path() const {
  if (parent_ == nullptr)
    return {};
  auto prefix = parent_->path();
  if (index_ != no_index)
    return fmt::format("{}[{}]", prefix, index_);
  return prefix.empty() ? std::string{key_} : fmt::format("{}.{}", prefix, key_);
}

void json_value::fail(std::string_view expected) const {
  if (parent_ == nullptr)
    throw decode_error(fmt::format("body is not {}", expected));
  throw decode_error(fmt::format("field '{}': expected {}", path(), expected));
}

bool json_value::is_null() const {
  return node(node_).IsNull();
}

std::optional<json_value> json_value::find(std::string_view name) const {
  const auto& object = node(node_);
  auto it = object.FindMember(rapidjson::Value{rapidjson::StringRef(name.data(), name.size())});
  if (it == object.MemberEnd() || it->value.IsNull())
    return std::nullopt;
  return json_value{&it->value, this, name, no_index};
}

json_value json_value::member(std::string_view name) const {
  const auto& object = node(node_);
  auto it = object.FindMember(rapidjson::Value{rapidjson::StringRef(name.data(), name.size())});
  if (it == object.MemberEnd()) {
    auto prefix = path();
    throw decode_error(
      fmt::format("missing field '{}{}{}'", prefix, prefix.empty() ? "" : ".", name));
  }
  return json_value{&it->value, this, name, no_index};
}

std::string_view json_value::key() const {
  return key_;
}

void json_value::expect_object() const {
  if (!node(node_).IsObject())
    fail("a JSON object");
}

std::size_t json_value::member_count() const {
  expect_object();
  return node(node_).MemberCount();
}

json_value json_value::member_at(std::size_t i) const {
  const auto& member = *(node(node_).MemberBegin() + static_cast<rapidjson::SizeType>(i));
  std::string_view name{member.name.GetString(), member.name.GetStringLength()};
  return json_value{&member.value, this, name, no_index};
}

std::size_t json_value::array_size() const {
  if (!node(node_).IsArray())
    fail("an array");
  return node(node_).Size();
}

json_value json_value::element(std::size_t i) const {
  return json_value{&node(node_)[static_cast<rapidjson::SizeType>(i)], this, {}, i};
}

bool json_value::as_bool() const {
  if (!node(node_).IsBool())
    fail("true or false");
  return node(node_).GetBool();
}

std::int64_t json_value::as_integer(std::int64_t min, std::int64_t max) const {
  const auto& v = node(node_);
  if (v.IsInt64()) {
    auto x = v.GetInt64();
    if (x >= min && x <= max)
      return x;
    throw decode_error(fmt::format("field '{}': {} is out of range [{}, {}]", path(), x, min, max));
  }
  if (v.IsUint64())
    throw decode_error(
      fmt::format("field '{}': {} is out of range [{}, {}]", path(), v.GetUint64(), min, max));
  fail("an integer");
}

std::uint64_t json_value::as_unsigned(std::uint64_t max) const {
  const auto& v = node(node_);
  if (v.IsUint64()) {
    auto x = v.GetUint64();
    if (x <= max)
      return x;
    throw decode_error(fmt::format("field '{}': {} is out of range [0, {}]", path(), x, max));
  }
  if (v.IsInt64())
    throw decode_error(
      fmt::format("field '{}': {} is out of range [0, {}]", path(), v.GetInt64(), max));
  fail("an integer");
}

double json_value::as_number(double max_magnitude) const {
  const auto& v = node(node_);
  if (!v.IsNumber())
    fail("a number");
  auto x = v.GetDouble();
  if (std::fabs(x) > max_magnitude)
    throw decode_error(fmt::format("field '{}': {} is out of range [{}, {}]", path(), x,
                                   -max_magnitude, max_magnitude));
  return x;
}

std::string json_value::as_string() const {
  const auto& v = node(node_);
  if (!v.IsString())
    fail("a string");
  return std::string{v.GetString(), v.GetStringLength()};
}

struct json_document::impl {
  rapidjson::Document document;
};

json_document::json_document(std::string_view text) : impl_(std::make_unique<impl>()) {
  parse(impl_->document, text);
}

json_document::~json_document() = default;

json_value json_document::root() const {
  return json_value{&impl_->document, nullptr, {}, no_index};
}

} // namespace depot::detail

namespace depot {

void check_json_object(std::string_view text) {
  detail::json_document document{text};
  document.root().expect_object();
}

} // namespace depot
