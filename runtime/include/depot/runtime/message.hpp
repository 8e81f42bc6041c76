// Messages: DEPOT_MESSAGE gives a struct its registered type name, its JSON form and its CAF 0.17
// serialisation from one declaration. The JSON templates here only walk fields; all parsing and
// printing happens in json_codec.cpp, so RapidJSON must never appear in this header.
#pragma once

#include <caf/meta/type_name.hpp>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "depot/runtime/error.hpp"

namespace depot::detail {

template <class T>
inline constexpr bool is_vector = false;
template <class T, class A>
inline constexpr bool is_vector<std::vector<T, A>> = true;

template <class T>
inline constexpr bool is_optional = false;
template <class T>
inline constexpr bool is_optional<std::optional<T>> = true;

template <class T>
inline constexpr bool is_string_map = false;
template <class T, class C, class A>
inline constexpr bool is_string_map<std::map<std::string, T, C, A>> = true;

template <class T>
constexpr auto descriptor_of() {
  return depot_describe(static_cast<const T*>(nullptr));
}

template <class T>
concept described = requires(const T* p) {
  depot_describe(p);
  requires std::is_same_v<typename decltype(depot_describe(p))::type, T>;
};

/// True for the field types the JSON codec knows; checked where DEPOT_MESSAGE names a field.
template <class T>
constexpr bool json_field() {
  if constexpr (is_vector<T> || is_optional<T>)
    return json_field<typename T::value_type>();
  else if constexpr (is_string_map<T>)
    return json_field<typename T::mapped_type>();
  else
    return std::is_same_v<T, std::string> || std::is_integral_v<T> || std::is_same_v<T, double> ||
           std::is_same_v<T, float> || described<T>;
}

template <class T, class M>
struct field {
  static_assert(json_field<M>(),
                "DEPOT_MESSAGE: unsupported field type. Fields may be std::string, bool, integers, "
                "float, double, std::vector<X>, std::optional<X>, std::map<std::string, X> or "
                "types declared with DEPOT_MESSAGE.");
  std::string_view name;
  M T::*member;
};

template <class T, class M, class C>
constexpr field<T, M> make_field(std::string_view name, M C::*member) {
  return {name, member};
}

template <class T, class... Ms>
struct descriptor {
  using type = T;
  std::string_view name;
  std::tuple<field<T, Ms>...> fields;
};

template <class T, class... Ms>
constexpr descriptor<T, Ms...> describe(std::string_view name, field<T, Ms>... fields) {
  return {name, {fields...}};
}

/// A key field as text.
inline std::string key_text(const std::string& v) {
  return v;
}
template <class I>
requires std::is_integral_v<I> std::string key_text(I v) {
  return std::to_string(v);
}

} // namespace depot::detail

namespace depot {

/// True for types declared with DEPOT_MESSAGE.
template <class T>
concept message = detail::described<T>;

/// Thrown by from_json when a body cannot become the requested message; what() is the reason,
/// e.g. "missing field 'amount'" or "field 'amount': expected an integer". Code
/// errc::decode_error.
class decode_error : public error {
public:
  explicit decode_error(const std::string& what) : error(errc::decode_error, what) {}
};

/// Thrown when a message breaks a rule of its type, or a handler finds that it cannot be carried
/// out as asked (a debit that would overflow a balance). Like decode_error it is never retried:
/// the envelope goes to dead letters with what() as the reason. A message type states its rules
/// in a member `void validate() const` that throws it, or `void validate(field_errors&) const`
/// that lists every error; from_json calls it after decoding, so a send refuses such a body
/// and a stored one is dead-lettered. Code errc::validation_error.
class validation_error : public error {
public:
  explicit validation_error(const std::string& what) : error(errc::validation_error, what) {}
};

/// Every rule a message breaks, field by field. A message type may state its rules as
/// `void validate(depot::field_errors&) const` (or register a validator with
/// routing::validate<T>); every error is reported, not only the first.
class field_errors {
public:
  /// Records that `field` breaks a rule: `problem` says which ("must be at least 1, not 0").
  void add(std::string field, std::string problem) {
    errors_.emplace_back(std::move(field), std::move(problem));
  }
  [[nodiscard]] bool empty() const { return errors_.empty(); }
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& list() const {
    return errors_;
  }
  /// Throws validation_error "<type> is invalid: field: problem; field: problem" when there
  /// are any.
  void throw_if_any(std::string_view type) const {
    if (errors_.empty())
      return;
    std::string what{type};
    what += " is invalid: ";
    for (std::size_t i = 0; i < errors_.size(); ++i) {
      if (i > 0)
        what += "; ";
      what += errors_[i].first + ": " + errors_[i].second;
    }
    throw validation_error{what};
  }

private:
  std::vector<std::pair<std::string, std::string>> errors_;
};

/// The registered type name of `T`, e.g. "bank.debit-account".
template <message T>
[[nodiscard]] constexpr std::string_view type_name_of() {
  return detail::descriptor_of<T>().name;
}

/// True for message types with a key declared by DEPOT_MESSAGE_KEY.
template <class T>
concept keyed_message = message<T> && requires(const T& m) {
  { depot_message_key(m) } -> std::convertible_to<std::string>;
};

/// The key of `m` (see DEPOT_MESSAGE_KEY), or "" when its type declares none.
template <message T>
[[nodiscard]] std::string key_of(const T& m) {
  if constexpr (keyed_message<T>)
    return depot_message_key(m);
  else
    return {};
}

/// The deepest nesting of objects and arrays a body may have; deeper is a decode_error.
inline constexpr std::size_t max_json_depth = 100;

/// Throws decode_error with the reason unless `text` is a JSON object that depot can store: for
/// bodies whose type this node does not know.
void check_json_object(std::string_view text);

} // namespace depot

namespace depot::detail {

/// Prints compact JSON; implemented with RapidJSON in json_codec.cpp.
class json_writer {
public:
  json_writer();
  ~json_writer();
  json_writer(const json_writer&) = delete;
  json_writer& operator=(const json_writer&) = delete;

  void start_object();
  void key(std::string_view name);
  void end_object();
  void start_array();
  void end_array();
  void null();
  void boolean(bool x);
  void integer(std::int64_t x);
  void unsigned_integer(std::uint64_t x);
  /// Throws std::domain_error for NaN and infinity, which JSON cannot express.
  void number(double x);
  /// Throws std::domain_error for a string holding a NUL.
  void string(std::string_view x);
  [[nodiscard]] std::string take();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A read-only view of one value inside a json_document. Knows its path from the root so that
/// every decode_error names the field ("lines[2].sku"); children point at their parent, which
/// must outlive them.
class json_value {
public:
  [[nodiscard]] bool is_null() const;
  /// The member `name` of this object; throws "missing field '…'" when absent.
  [[nodiscard]] json_value member(std::string_view name) const;
  /// The member `name` of this object, or nothing when absent or null.
  [[nodiscard]] std::optional<json_value> find(std::string_view name) const;
  /// The key of this value when it is a member of an object.
  [[nodiscard]] std::string_view key() const;

  void expect_object() const;
  [[nodiscard]] std::size_t member_count() const;
  [[nodiscard]] json_value member_at(std::size_t i) const;
  [[nodiscard]] std::size_t array_size() const;
  [[nodiscard]] json_value element(std::size_t i) const;

  [[nodiscard]] bool as_bool() const;
  [[nodiscard]] std::int64_t as_integer(std::int64_t min, std::int64_t max) const;
  [[nodiscard]] std::uint64_t as_unsigned(std::uint64_t max) const;
  [[nodiscard]] double as_number(double max_magnitude) const;
  [[nodiscard]] std::string as_string() const;

private:
  friend class json_document;
  json_value(const void* node, const json_value* parent, std::string_view key, std::size_t index);
  [[nodiscard]] std::string path() const;
  [[noreturn]] void fail(std::string_view expected) const;

  const void* node_;
  const json_value* parent_;
  std::string_view key_;
  std::size_t index_;
};

/// A parsed JSON text; throws decode_error when it is malformed, holds a NUL (a byte, or a
/// \u0000 in a string: Postgres text cannot store it), or nests deeper than max_json_depth.
class json_document {
public:
  explicit json_document(std::string_view text);
  ~json_document();
  json_document(const json_document&) = delete;
  json_document& operator=(const json_document&) = delete;

  [[nodiscard]] json_value root() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

template <class T>
void write_value(json_writer& w, const T& x);

template <message T>
void write_message(json_writer& w, const T& x) {
  constexpr auto descriptor = descriptor_of<T>();
  w.start_object();
  std::apply([&](const auto&... f) { ((w.key(f.name), write_value(w, x.*(f.member))), ...); },
             descriptor.fields);
  w.end_object();
}

template <class T>
void write_value(json_writer& w, const T& x) {
  if constexpr (std::is_same_v<T, std::string>) {
    w.string(x);
  } else if constexpr (std::is_same_v<T, bool>) {
    w.boolean(x);
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    w.integer(x);
  } else if constexpr (std::is_integral_v<T>) {
    w.unsigned_integer(x);
  } else if constexpr (std::is_floating_point_v<T>) {
    w.number(x);
  } else if constexpr (is_vector<T>) {
    w.start_array();
    for (const auto& element : x)
      write_value<typename T::value_type>(w, element);
    w.end_array();
  } else if constexpr (is_optional<T>) {
    if (x)
      write_value(w, *x);
    else
      w.null();
  } else if constexpr (is_string_map<T>) {
    w.start_object();
    for (const auto& [key, value] : x) {
      w.key(key);
      write_value(w, value);
    }
    w.end_object();
  } else {
    write_message(w, x);
  }
}

template <class T>
void read_value(const json_value& v, T& x);

template <message T>
void read_message(const json_value& v, T& x) {
  constexpr auto descriptor = descriptor_of<T>();
  v.expect_object();
  std::apply(
    [&](const auto&... f) {
      auto read_field = [&](std::string_view name, auto& out) {
        if constexpr (is_optional<std::remove_reference_t<decltype(out)>>) {
          if (auto child = v.find(name))
            read_value(*child, out);
          else
            out.reset();
        } else {
          read_value(v.member(name), out);
        }
      };
      (read_field(f.name, x.*(f.member)), ...);
    },
    descriptor.fields);
  if constexpr (requires(const T& m) { m.validate(); }) {
    x.validate();
  } else if constexpr (requires(const T& m, field_errors& errors) { m.validate(errors); }) {
    field_errors errors;
    x.validate(errors);
    errors.throw_if_any(descriptor.name);
  }
}

template <class T>
void read_value(const json_value& v, T& x) {
  if constexpr (std::is_same_v<T, std::string>) {
    x = v.as_string();
  } else if constexpr (std::is_same_v<T, bool>) {
    x = v.as_bool();
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    x = static_cast<T>(v.as_integer(std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
  } else if constexpr (std::is_integral_v<T>) {
    x = static_cast<T>(v.as_unsigned(std::numeric_limits<T>::max()));
  } else if constexpr (std::is_floating_point_v<T>) {
    x = static_cast<T>(v.as_number(std::numeric_limits<T>::max()));
  } else if constexpr (is_vector<T>) {
    auto size = v.array_size();
    x.clear();
    x.reserve(size);
    for (std::size_t i = 0; i < size; ++i) {
      typename T::value_type element{};
      read_value(v.element(i), element);
      x.push_back(std::move(element));
    }
  } else if constexpr (is_optional<T>) {
    if (v.is_null())
      x.reset();
    else
      read_value(v, x.emplace());
  } else if constexpr (is_string_map<T>) {
    x.clear();
    auto size = v.member_count();
    for (std::size_t i = 0; i < size; ++i) {
      auto child = v.member_at(i);
      read_value(child, x[std::string{child.key()}]);
    }
  } else {
    read_message(v, x);
  }
}

} // namespace depot::detail

namespace depot {

/// The compact JSON object of `x`, keyed by field name: {"account_id":"acct-7","amount":25}.
/// Nested messages become nested objects, vectors arrays, maps objects; an empty std::optional
/// is written as null. Throws std::domain_error for a NaN or infinite float or double, and for
/// a string holding a NUL (Postgres text cannot store it, so no body may carry one).
template <message T>
[[nodiscard]] std::string to_json(const T& x) {
  detail::json_writer w;
  detail::write_message(w, x);
  return w.take();
}

/// The message `T` in `json`. Unknown members are ignored; a std::optional field may be absent
/// or null. Throws decode_error when the text is malformed, not an object, lacks a field, holds
/// a value of the wrong type, or an integer outside the field type's range; throws
/// validation_error when T (or a message nested in it) has a validate() that rejects it.
template <message T>
[[nodiscard]] T from_json(std::string_view json) {
  detail::json_document document{json};
  T x{};
  detail::read_message(document.root(), x);
  return x;
}

} // namespace depot

namespace caf {

/// CAF 0.17 knows caf::optional but not std::optional: write a presence flag, then the value.
/// Found by argument-dependent lookup through CAF's serializer types.
template <class Inspector, class T>
std::enable_if_t<Inspector::reads_state, typename Inspector::result_type> inspect(
  Inspector& f, std::optional<T>& x) {
  return x ? f(true, *x) : f(false);
}

template <class Inspector, class T>
std::enable_if_t<Inspector::writes_state, typename Inspector::result_type> inspect(
  Inspector& f, std::optional<T>& x) {
  bool engaged = false;
  if (auto err = f(engaged))
    return err;
  if (!engaged) {
    x.reset();
    return {};
  }
  return f(x.emplace());
}

} // namespace caf

#define DEPOT_DETAIL_CAT_(a, b) a##b
#define DEPOT_DETAIL_CAT(a, b) DEPOT_DETAIL_CAT_(a, b)
#define DEPOT_DETAIL_COUNT_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, \
                            _17, _18, _19, _20, n, ...)                                            \
  n
#define DEPOT_DETAIL_COUNT(...)                                                                    \
  DEPOT_DETAIL_COUNT_(__VA_ARGS__, TOO_MANY, TOO_MANY, TOO_MANY, TOO_MANY, 16, 15, 14, 13, 12, 11, \
                      10, 9, 8, 7, 6, 5, 4, 3, 2, 1, )

// DEPOT_DETAIL_MAP(f, c, a, b, …) expands to f(c, a), f(c, b), … for up to 16 arguments.
#define DEPOT_DETAIL_MAP(f, c, ...) \
  DEPOT_DETAIL_CAT(DEPOT_DETAIL_MAP_, DEPOT_DETAIL_COUNT(__VA_ARGS__))(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_TOO_MANY(f, c, ...) DEPOT_MESSAGE_takes_at_most_16_fields
#define DEPOT_DETAIL_MAP_1(f, c, x) f(c, x)
#define DEPOT_DETAIL_MAP_2(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_1(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_3(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_2(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_4(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_3(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_5(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_4(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_6(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_5(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_7(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_6(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_8(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_7(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_9(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_8(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_10(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_9(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_11(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_10(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_12(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_11(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_13(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_12(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_14(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_13(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_15(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_14(f, c, __VA_ARGS__)
#define DEPOT_DETAIL_MAP_16(f, c, x, ...) f(c, x), DEPOT_DETAIL_MAP_15(f, c, __VA_ARGS__)

#define DEPOT_DETAIL_FIELD(type, member) ::depot::detail::make_field<type>(#member, &type::member)
#define DEPOT_DETAIL_MEMBER(object, member) object.member

/// Declares the struct `type` a message named `name` (a string literal such as
/// "bank.debit-account") whose fields, listed in order, make up its JSON object and its CAF
/// serialisation. Use it at namespace scope, in the struct's own namespace, after the struct;
/// it defines depot_describe() for depot's templates and inspect() for CAF 0.17. Register the
/// type with CAF as usual (`cfg.add_message_type<T>(...)`). At most 16 fields.
#define DEPOT_MESSAGE(type, name, ...)                                               \
  constexpr auto depot_describe(const type*) {                                       \
    return ::depot::detail::describe<type>(                                          \
      name __VA_OPT__(, DEPOT_DETAIL_MAP(DEPOT_DETAIL_FIELD, type, __VA_ARGS__)));   \
  }                                                                                  \
  template <class Inspector>                                                         \
  typename Inspector::result_type inspect(Inspector& f, [[maybe_unused]] type& x) {  \
    return f(::caf::meta::type_name(name)                                            \
               __VA_OPT__(, DEPOT_DETAIL_MAP(DEPOT_DETAIL_MEMBER, x, __VA_ARGS__))); \
  }

/// Declares field `member` of message `type` its key: envelopes of one queue with the same key
/// are handled one at a time and in the order they were sent, on every node, while different
/// keys run in parallel (transports use it as their partition key). Use it after DEPOT_MESSAGE.
/// The field is a string or an integer.
#define DEPOT_MESSAGE_KEY(type, member)                 \
  inline std::string depot_message_key(const type& m) { \
    return ::depot::detail::key_text(m.member);         \
  }
