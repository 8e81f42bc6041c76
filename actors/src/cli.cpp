// The node binary's command line. Options are CAF config options (category "global": given as
// --name=value or --name value, or in the config file); DEPOT_<NAME> environment variables
// supply values the command line does not. Precedence: default < config file < environment <
// command line.
#include "depot/actors/cli.hpp"

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include <caf/actor_system_config.hpp>
#include <caf/config_option_adder.hpp>
#include <caf/timespan.hpp>
#include <fmt/format.h>
#include <soci/soci.h>

#include "cluster_commands.hpp"
#include "dead_letter_commands.hpp"
#include "depot/actors/node.hpp"
#include "depot/persistence/embedded_postgres.hpp"
#include "depot/persistence/node_registry.hpp"
#include "depot/persistence/outbox.hpp"
#include "depot/persistence/schema.hpp"
#include "depot/persistence/store_admin.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "depot/runtime/log.hpp"
#include "depot/transports/kafka.hpp"
#include "depot/transports/local.hpp"
#include "saga_commands.hpp"

namespace depot {

using persistence::connection;
using persistence::db_error;

namespace {

std::string env_name(const std::string& option) {
  std::string result = "DEPOT_";
  for (char c : option)
    result += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return result;
}

/// A string option's value for CAF, which unquotes a value that starts with '"': quoted here,
/// every value reaches depot verbatim (a schema '"x"' stays '"x"', and is refused).
std::string quote_for_caf(std::string_view value) {
  std::string result = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\')
      result += '\\';
    result += c;
  }
  return result + '"';
}

/// The headers of `send --headers name=value,name=value`.
std::map<std::string, std::string> header_list(std::string_view text) {
  std::map<std::string, std::string> headers;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    auto equals = item.find('=');
    if (equals == std::string_view::npos || equals == 0)
      throw usage_error{fmt::format("--headers: '{}' is not name=value", item)};
    headers.insert_or_assign(std::string{item.substr(0, equals)},
                             std::string{item.substr(equals + 1)});
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
  }
  return headers;
}

} // namespace

/// The names of the commands' options that take a value.
struct value_options : command_options {
  std::set<std::string> names;
  void add(std::string&, const std::string& name, const std::string&) override {
    names.insert(name);
  }
  void add(std::int64_t&, const std::string& name, const std::string&) override {
    names.insert(name);
  }
  void add(bool&, const std::string&, const std::string&) override {}
};

/// CAF's config with depot's option table bound to a node_settings. Each option binds a value
/// of CAF's own type (text, 64-bit integer, timespan, flag), copied into the settings and
/// checked against the table's bounds after parsing.
class node_config : public caf::actor_system_config, public command_options {
public:
  explicit node_config(node_settings& s) : s_(s) {
    caf::config_option_adder add{custom_options_, "global"};
    for (const auto& o : node_options()) {
      auto& v = values_[std::string{o.name}];
      auto name = std::string{o.name};
      auto help = std::string{o.help};
      std::visit(
        [&](const auto& f) {
          using field = std::decay_t<decltype(f)>;
          if constexpr (std::is_same_v<field, option_field::integer>)
            add.add(v.integer = f.ref(s), name, help);
          else if constexpr (std::is_same_v<field, option_field::duration>)
            add.add(v.duration = f.ref(s), name, help);
          else if constexpr (std::is_same_v<field, option_field::flag>)
            add.add(f.ref(s), name, help);
          else
            add.add(v.text = show(o, s), name, help);
        },
        o.field);
    }
    for (const auto& opt : custom_options_)
      depot_options_.emplace_back(opt.long_name().data(), opt.long_name().size());
  }

  /// Whether depot's option `name` takes a value (is known and not a flag).
  [[nodiscard]] bool takes_value(const std::string& name) const {
    auto* opt = custom_options_.cli_long_name_lookup(caf::string_view{name.data(), name.size()});
    return opt != nullptr && !opt->is_flag();
  }

  // command_options: a command's own options share the same machinery.
  void add(std::string& ref, const std::string& name, const std::string& help) override {
    caf::config_option_adder{custom_options_, "global"}.add(ref, name, help);
  }
  void add(std::int64_t& ref, const std::string& name, const std::string& help) override {
    caf::config_option_adder{custom_options_, "global"}.add(ref, name, help);
  }
  void add(bool& ref, const std::string& name, const std::string& help) override {
    caf::config_option_adder{custom_options_, "global"}.add(ref, name, help);
  }

  /// Splits argv into positional words and options, adds DEPOT_* variables, parses with CAF,
  /// then copies and checks every depot option. Throws usage_error naming a bad option.
  std::vector<std::string> parse_all(const std::vector<std::string>& argv) {
    std::vector<std::string> positional;
    caf::actor_system_config::string_list options;
    for (const auto& name : depot_options_)
      if (const char* v = std::getenv(env_name(name).c_str()))
        options.push_back(fmt::format("--{}={}", name, v));
    for (std::size_t i = 0; i < argv.size(); ++i) {
      const auto& a = argv[i];
      if (a.size() < 2 || a[0] != '-') {
        positional.push_back(a);
        continue;
      }
      if (!a.starts_with("--") || a.find('=') != std::string::npos) {
        options.push_back(a);
        continue;
      }
      auto* opt =
        custom_options_.cli_long_name_lookup(caf::string_view{a.data() + 2, a.size() - 2});
      if (opt == nullptr)
        throw usage_error{fmt::format("unknown option {}", a)};
      if (opt->is_flag()) {
        options.push_back(a);
      } else {
        if (i + 1 >= argv.size())
          throw usage_error{fmt::format("option {} needs a value", a)};
        options.push_back(fmt::format("{}={}", a, argv[++i]));
      }
    }
    // CAF flags take no value: apply "--flag=true|false" (command line or DEPOT_*) ourselves;
    // string values go to CAF quoted, so that it takes them verbatim.
    std::vector<std::pair<const caf::config_option*, bool>> flags;
    std::erase_if(options, [&](std::string& o) {
      auto eq = o.find('=');
      if (!o.starts_with("--") || eq == std::string::npos)
        return false;
      auto* opt = custom_options_.cli_long_name_lookup(caf::string_view{o.data() + 2, eq - 2});
      if (opt == nullptr)
        return false;
      auto value = o.substr(eq + 1);
      if (opt->type_name() == "string") {
        o = o.substr(0, eq + 1) + quote_for_caf(value);
        return false;
      }
      if (!opt->is_flag())
        return false;
      if (value != "true" && value != "false")
        throw usage_error{fmt::format("{} takes true or false", o.substr(0, eq))};
      flags.emplace_back(opt, value == "true");
      return true;
    });
    if (auto err = parse(std::move(options)))
      throw usage_error{render(err)};
    for (auto [opt, value] : flags)
      opt->store(caf::config_value{value});
    try {
      store_values();
      check(s_);
    } catch (const invalid_setting& e) {
      throw usage_error{e.what()};
    }
    return positional;
  }

  [[nodiscard]] std::string options_help() const { return custom_options_.help_text(true); }

  /// The effective value of every depot option, for `describe`.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> effective() const {
    std::vector<std::pair<std::string, std::string>> result;
    for (const auto& o : node_options()) {
      if (o.name == "max-concurrent-batches" && s_.max_concurrent_batches == 0)
        result.emplace_back(o.name, fmt::format("0 ({} on this machine)", s_.concurrent_batches()));
      else if (o.name != "db")
        result.emplace_back(o.name, show(o, s_));
      else if (s_.db.empty())
        result.emplace_back(o.name,
                            fmt::format("(embedded PostgreSQL in {})",
                                        persistence::embedded_postgres::default_dir().string()));
      else
        result.emplace_back(o.name, persistence::redact_password(s_.db));
    }
    return result;
  }

private:
  /// CAF's value of one option, in CAF's type; flags bind the settings' bool directly.
  struct value {
    std::string text;
    std::int64_t integer = 0;
    caf::timespan duration{0};
  };

  // Copies CAF's values into the settings; integers and durations outside the field's type
  // are refused here, the table's bounds by check().
  void store_values() {
    for (const auto& o : node_options()) {
      const auto& v = values_.at(std::string{o.name});
      std::visit(
        [&](const auto& f) {
          using field = std::decay_t<decltype(f)>;
          if constexpr (std::is_same_v<field, option_field::text>) {
            f.ref(s_) = v.text;
          } else if constexpr (std::is_same_v<field, option_field::integer>) {
            if (v.integer < f.min || v.integer > f.max)
              throw out_of_range(o, std::to_string(v.integer));
            f.ref(s_) = static_cast<int>(v.integer);
          } else if constexpr (std::is_same_v<field, option_field::duration>) {
            f.ref(s_) = std::chrono::duration_cast<std::chrono::milliseconds>(v.duration);
          } else if constexpr (std::is_same_v<field, option_field::queue_counts>) {
            f.ref(s_) = parse_queue_counts(o, v.text);
          }
        },
        o.field);
    }
  }

  node_settings& s_;
  std::map<std::string, value> values_; // node-based: CAF holds references into it
  std::vector<std::string> depot_options_;
};

std::unique_ptr<soci::session> command_env::open_session() const {
  return persistence::open_session(settings.db);
}

struct cli::impl {
  std::string program;
  routing& app;
  std::vector<command> commands;
  std::vector<std::function<void(soci::session&)>> db_apply_hooks;
  std::vector<std::function<void(routing&, const node_settings&)>> settings_hooks;

  std::unique_ptr<connection> open_store(const node_settings& s) {
    return std::make_unique<connection>(persistence::store_settings_of(s));
  }

  /// A store whose schema is provisioned, or an error saying how to provision it.
  std::unique_ptr<connection> open_provisioned_store(const node_settings& s) {
    auto store = open_store(s);
    if (persistence::schema_version(*store) == 0)
      throw std::runtime_error{
        fmt::format("schema {} is not provisioned: run `{} db apply`", s.schema, program)};
    return store;
  }

  const node_config* config = nullptr; // of the command being run

  void add_builtins();
  int describe(command_env& env) const;
  std::string usage_of(const command& c) const {
    auto words = fmt::format("{}", fmt::join(c.words, " "));
    return c.arguments.empty() ? words : words + " " + c.arguments;
  }
};

namespace {

/// SIGINT and SIGTERM, blocked in this thread and every thread started after: call it before
/// any thread starts, so that only the caller's sigwait or sigtimedwait sees them.
sigset_t block_stop_signals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

int run_node(command_env& env) {
  auto stop_signals = block_stop_signals();
  node n{env.app, env.settings, env.config};
  n.start();
  fmt::print("node {} running (schema {}); stop with SIGINT or SIGTERM\n", n.number(),
             env.settings.schema);
  std::fflush(stdout);
  // Until a stop signal, a drain request, or until the node has failed (an actor past its
  // max-restarts).
  const timespec tick{0, 200'000'000};
  while (sigtimedwait(&stop_signals, nullptr, &tick) < 0 && !n.drain_requested()) {
    if (auto h = n.health(); h.status == node_health::state::failed) {
      n.stop();
      throw std::runtime_error{"node failed: " + h.reason};
    }
  }
  n.stop();
  auto stats = n.stats();
  fmt::print(
    "node {} stopped: handled {}, expired {}, retried {}, dead-lettered {}, discarded {}, "
    "deferred {}\n",
    n.number(), stats.handled, stats.expired, stats.retried, stats.dead_lettered, stats.discarded,
    stats.deferred);
  return exit_code::ok;
}

} // namespace

void cli::impl::add_builtins() {
  commands.push_back({{"run"}, "", "run the node until SIGINT or SIGTERM", {}, run_node});
  commands.push_back({{"db", "apply"},
                      "",
                      "create or migrate the schema (idempotent)",
                      {},
                      [this](command_env& env) {
                        auto store = open_store(env.settings);
                        auto applied = persistence::apply_schema(*store, 0, app.sagas());
                        if (!db_apply_hooks.empty()) {
                          persistence::unit_of_work uow{*store};
                          for (auto& hook : db_apply_hooks)
                            hook(store->session());
                          uow.commit();
                        }
                        fmt::print(
                          "schema {} at version {} (applied now: {})\n", env.settings.schema,
                          persistence::schema_version(*store),
                          applied.empty() ? "none" : fmt::format("{}", fmt::join(applied, ", ")));
                        return exit_code::ok;
                      }});
  commands.push_back({{"db", "status"},
                      "",
                      "show the schema version; exit 1 when behind",
                      {},
                      [this](command_env& env) {
                        auto store = open_store(env.settings);
                        auto v = persistence::schema_version(*store);
                        auto latest = persistence::latest_schema_version();
                        fmt::print("schema {}: version {} of {} ({})\n", env.settings.schema, v,
                                   latest,
                                   v == 0        ? "not provisioned: run db apply"
                                   : v == latest ? "up to date"
                                   : v < latest  ? "behind: run db apply"
                                                 : "newer than this binary");
                        return v == latest ? exit_code::ok : exit_code::failure;
                      }});
  commands.push_back({{"describe"},
                      "",
                      "message types, queues, routes, configuration",
                      {},
                      [this](command_env& env) { return describe(env); }});
  auto headers = std::make_shared<std::string>();
  commands.push_back(
    {{"send"},
     "<type> <json|->",
     "durably enqueue a message; '-' reads one JSON body per line from stdin. A body that is "
     "not a valid <type> is kept as a dead letter, and the command exits 1",
     [headers](command_options& o) {
       o.add(*headers, "headers",
             "headers of every message sent, as name=value,name=value (e.g. principal=teller)");
     },
     [this, headers](command_env& env) {
       if (env.args.size() != 2)
         throw usage_error{"send takes <type> and <json> (or - for JSON lines on stdin)"};
       const auto& type = env.args[0];
       const bool one = env.args[1] != "-";
       send_options options{.headers = header_list(*headers)};
       auto store = open_provisioned_store(env.settings);
       std::size_t total = 0;
       auto flush = [&](std::vector<std::string>& bodies) {
         auto sent = send_durably(*store, app, env.settings.service, 0, type, bodies, options, 0,
                                  dispatch::send);
         if (!sent.memory.empty())
           throw usage_error{
             fmt::format("{} goes to a buffered queue: only a running node "
                         "can take it",
                         type)};
         total += bodies.size();
         if (one) {
           if (!sent.inbox.empty())
             fmt::print("sent {} to queue {} as {}\n", type, sent.inbox.at(0).queue,
                        sent.inbox.at(0).id);
           else
             fmt::print("sent {} to {} as {}\n", type, sent.outbox.at(0).queue,
                        sent.outbox.at(0).id);
         }
         bodies.clear();
       };
       std::vector<std::string> bodies;
       if (one) {
         bodies.push_back(env.args[1]);
         flush(bodies);
         return exit_code::ok;
       }
       constexpr std::size_t batch = 1000;
       for (std::string line; std::getline(std::cin, line);) {
         if (line.empty())
           continue;
         bodies.push_back(std::move(line));
         if (bodies.size() == batch)
           flush(bodies);
       }
       if (!bodies.empty())
         flush(bodies);
       fmt::print("sent {} {}\n", total, type);
       return exit_code::ok;
     }});
  commands.push_back(
    {{"storage", "counts"},
     "",
     "envelopes per queue and status, paused queues, open circuit breakers",
     {},
     [this](command_env& env) {
       auto store = open_provisioned_store(env.settings);
       fmt::print("{:<40} {:<10} {:>10}\n", "queue", "status", "count");
       persistence::store_admin admin{*store};
       for (const auto& c : admin.counts())
         fmt::print("{:<40} {:<10} {:>10}\n", c.queue, c.status, c.count);
       for (const auto& b : persistence::outbox{*store}.backlog())
         fmt::print("{:<40} {:<10} {:>10}\n", b.destination, "outbox", b.count);
       auto paused = admin.paused_queues();
       if (!paused.empty())
         fmt::print("paused queues:\n");
       for (const auto& p : paused)
         fmt::print("  {:<38} paused until {} ({})\n", p.queue, iso8601(p.until), p.reason);
       auto breakers = admin.open_breakers();
       if (!breakers.empty())
         fmt::print("circuit breakers:\n");
       for (const auto& b : breakers)
         fmt::print(
           "  {:<38} node {}: {}{} ({})\n",
           b.message_type.empty() ? b.queue : fmt::format("{} / {}", b.queue, b.message_type),
           b.node, b.state, b.open_until == 0 ? "" : " until " + iso8601(b.open_until), b.reason);
       return exit_code::ok;
     }});
  commands.push_back(
    {{"health"},
     "",
     "check the database, the schema and every registered node; exit 1 when "
     "unhealthy",
     {},
     [this](command_env& env) {
       auto store = open_store(env.settings);
       auto v = persistence::schema_version(*store);
       auto ok = v == persistence::latest_schema_version();
       fmt::print("database reachable; schema {} version {}: {}\n", env.settings.schema, v,
                  ok ? "healthy" : "needs db apply");
       if (!ok)
         return exit_code::failure;
       auto stale =
         std::chrono::duration_cast<std::chrono::microseconds>(env.settings.stale_after).count();
       for (const auto& n : persistence::node_registry{*store}.statuses()) {
         if (n.silent_for > stale) {
           ok = false;
           fmt::print("node {}: silent for {} s\n", n.number, n.silent_for / 1'000'000);
         } else {
           ok = ok && n.health.health == "healthy";
           fmt::print("node {}: {}{}{}\n", n.number, n.health.health,
                      n.health.reason.empty() ? "" : ": ", n.health.reason);
         }
       }
       if (app.uses_kafka()) {
         std::vector<std::pair<std::string, micros>> backlog;
         for (const auto& b : persistence::outbox{*store}.backlog())
           backlog.emplace_back(b.destination, b.oldest);
         auto kafka = check_kafka(
           app, env.settings, backlog, std::chrono::seconds{5},
           std::max<std::chrono::milliseconds>(env.settings.stale_after, std::chrono::minutes{1}));
         for (const auto& line : kafka.lines)
           fmt::print("{}\n", line);
         ok = ok && kafka.healthy;
       }
       return ok ? exit_code::ok : exit_code::failure;
     }});
  commands.push_back({{"kafka", "mock"},
                      "",
                      "run an embedded Kafka cluster (librdkafka's mock) until SIGINT or SIGTERM; "
                      "prints its bootstrap brokers",
                      {},
                      [](command_env&) {
                        auto stop_signals = block_stop_signals();
                        embedded_kafka cluster;
                        fmt::print("kafka mock cluster at {}\n", cluster.bootstrap());
                        std::fflush(stdout);
                        int signal = 0;
                        sigwait(&stop_signals, &signal);
                        return exit_code::ok;
                      }});
  auto open = [this](const node_settings& s) { return open_provisioned_store(s); };
  for (auto* group : {dead_letter_commands, saga_commands, cluster_commands})
    for (auto& c : group(open))
      commands.push_back(std::move(c));
}

int cli::impl::describe(command_env& env) const {
  fmt::print("message types:\n");
  for (const auto& t : app.message_types())
    fmt::print("  {}\n", t);
  fmt::print("queues:\n");
  for (const auto& q : app.queues()) {
    std::vector<std::string> types;
    for (const auto& [t, h] : q.handlers)
      types.push_back(t);
    std::sort(types.begin(), types.end());
    const bool served = env.settings.serves(q.name); // see --queues
    fmt::print("  {:<36} {:<8} workers {:<3} {}: {}{}\n", q.name, to_string(q.mode),
               served ? env.settings.concurrency_of(q.name, q.concurrency) : 0,
               q.make_state ? "handler actor" : "handler functions", fmt::join(types, ", "),
               served ? "" : " (not served by this node)");
  }
  fmt::print("routes:\n");
  for (const auto& t : app.message_types()) {
    std::vector<std::string> names;
    for (const auto& to : app.targets_of(t, dispatch::publish))
      names.push_back(to.local() ? to.name : to.uri());
    fmt::print("  {:<36} -> {}\n", t,
               names.empty() ? std::string{"(none)"} : fmt::format("{}", fmt::join(names, ", ")));
  }
  fmt::print("kafka ({}):\n", env.settings.kafka.empty() ? std::string{"not configured"}
                                                         : "brokers " + env.settings.kafka);
  for (const auto& [type, to] : app.routes()) {
    if (to.transport != kafka_transport)
      continue;
    auto topic = std::find_if(app.kafka_topics().begin(), app.kafka_topics().end(),
                              [&](const kafka_topic_settings& t) { return t.name == to.name; });
    fmt::print("  publishes {:<36} to topic {} ({} CloudEvents, source {})\n", type, to.name,
               to_string(topic->mode), env.settings.source_uri());
  }
  for (const auto& l : app.kafka_listeners())
    fmt::print(
      "  listens to {} in group {} (new group starts at {}, offsets kept in {}, pauses "
      "above {} ready envelopes{})\n",
      fmt::join(l.topics, ","), l.group.empty() ? env.settings.service : l.group,
      l.start == offset_reset::earliest ? "earliest" : "latest", to_string(l.offsets),
      l.max_backlog > 0 ? l.max_backlog : env.settings.kafka_max_backlog,
      l.leader_only ? ", on the cluster's leader only" : "");
  fmt::print("sagas:\n");
  for (const auto& s : app.sagas()) {
    std::vector<std::string> steps{s.handled.begin(), s.handled.end()};
    fmt::print(
      "  {:<36} state {} in table {}.{}, kept {} after it finishes; starts with {}; "
      "handles {}{}\n",
      s.name, s.state_type, env.settings.schema, s.table,
      show_duration(env.settings.saga_retention), fmt::join(s.starts, ", "), fmt::join(steps, ", "),
      s.deadline.count() > 0
        ? fmt::format(
            "; deadline {}",
            show_duration(std::chrono::duration_cast<std::chrono::milliseconds>(s.deadline)))
        : "");
  }
  fmt::print("circuit breakers:\n");
  auto print_breaker = [](const std::string& whose, const breaker_settings& b,
                          const std::string& while_open) {
    fmt::print(
      "  {:<36} opens when {:.0f}% of at least {} handlings within {}ms fail; pauses "
      "{}ms, then probes; {}\n",
      whose, b.failure_ratio * 100, b.minimum_handlings, b.window.count(), b.pause.count(),
      while_open);
  };
  for (const auto& q : app.queues()) {
    if (q.breaker) {
      std::vector<std::string> fallbacks;
      for (const auto& [t, f] : q.fallbacks)
        fallbacks.push_back(t);
      std::sort(fallbacks.begin(), fallbacks.end());
      print_breaker(q.name, *q.breaker,
                    fallbacks.empty()
                      ? std::string{"claims nothing while open"}
                      : fmt::format("fallbacks while open: {}", fmt::join(fallbacks, ", ")));
    }
    std::map<std::string, breaker_settings> by_type{q.handler_breakers.begin(),
                                                    q.handler_breakers.end()};
    for (const auto& [type, b] : by_type)
      print_breaker(fmt::format("{} / {}", q.name, type), b,
                    q.fallbacks.contains(type) ? "runs its fallback while open"
                                               : "defers its envelopes while open");
  }
  fmt::print("error policies (handler, then queue, then application, then the default):\n");
  for (const auto& line : app.describe_error_policies())
    fmt::print("  {}\n", line);
  fmt::print("  default: {} (permanent errors: dead-letter at once)\n",
             default_error_policy(env.settings.failures).describe());
  fmt::print("middleware (outermost first, with its position):\n");
  for (const auto& line : app.describe_middleware())
    fmt::print("  {}\n", line);
  fmt::print("configuration:\n");
  for (const auto& [k, v] : config->effective())
    fmt::print("  {:<20} {}\n", k, v);
  return exit_code::ok;
}

cli::cli(std::string program, routing& app)
  : impl_(std::make_unique<impl>(impl{program, app, {}, {}, {}})) {
  impl_->add_builtins();
}

cli::~cli() = default;

void cli::add_command(command c) {
  impl_->commands.push_back(std::move(c));
}

void cli::on_db_apply(std::function<void(soci::session&)> f) {
  impl_->db_apply_hooks.push_back(std::move(f));
}

void cli::on_settings(std::function<void(routing&, const node_settings&)> f) {
  impl_->settings_hooks.push_back(std::move(f));
}

int cli::run(int argc, char** argv) {
  auto& d = *impl_;
  std::vector<std::string> args{argv + 1, argv + argc};
  bool help = false;
  std::erase_if(args, [&help](const std::string& a) {
    if (a == "--help" || a == "-h")
      return help = true;
    return false;
  });
  node_settings settings;
  node_config config{settings};
  // The command: the longest list of words that starts the positional arguments. The value of
  // "--name value" is not a word: depot's options and every command's own are known here.
  value_options command_values;
  for (const auto& c : d.commands)
    if (c.options)
      c.options(command_values);
  std::vector<std::string> words;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (!a.starts_with("-")) {
      words.push_back(a);
    } else if (a.starts_with("--") && a.find('=') == std::string::npos) {
      auto name = a.substr(2);
      if (config.takes_value(name) || command_values.names.contains(name))
        ++i;
    }
  }
  auto matches = [&words](const command& c) {
    return words.size() >= c.words.size() &&
           std::equal(c.words.begin(), c.words.end(), words.begin());
  };
  const command* chosen = nullptr;
  for (const auto& c : d.commands)
    if (matches(c) && (chosen == nullptr || c.words.size() > chosen->words.size()))
      chosen = &c;
  if (chosen != nullptr && chosen->options)
    chosen->options(config);
  auto print_help = [&] {
    if (chosen != nullptr) {
      fmt::print("usage: {} {} [options]\n  {}\n\n", d.program, d.usage_of(*chosen),
                 chosen->summary);
    } else {
      fmt::print("usage: {} <command> [options]\n\ncommands:\n", d.program);
      for (const auto& c : d.commands)
        fmt::print("  {:<28} {}\n", d.usage_of(c), c.summary);
      fmt::print("\n");
    }
    fmt::print("options (also DEPOT_<NAME> variables, or --config-file=FILE):\n{}",
               config.options_help());
  };
  if (help) {
    print_help();
    return exit_code::ok;
  }
  try {
    if (chosen == nullptr)
      throw usage_error{args.empty() ? "no command given (see --help)"
                                     : "unknown command (see --help)"};
    auto positional = config.parse_all(args);
    if (config.cli_helptext_printed) // --long-help or --dump-config: CAF printed it
      return exit_code::ok;
    positional.erase(positional.begin(),
                     positional.begin() + static_cast<std::ptrdiff_t>(chosen->words.size()));
    for (auto& hook : d.settings_hooks)
      hook(d.app, settings);
    command_env env{settings, d.app, positional, config};
    d.config = &config;
    // No database given: a private server under .depot/, stopped when the command ends.
    std::optional<persistence::embedded_postgres> embedded;
    auto needs_db = chosen->words != std::vector<std::string>{"describe"} &&
                    chosen->words != std::vector<std::string>{"kafka", "mock"};
    if (settings.db.empty() && needs_db) {
      embedded.emplace(persistence::embedded_postgres::default_dir());
      settings.db = embedded->uri();
    }
    return chosen->run(env);
  } catch (const usage_error& e) {
    fmt::print(stderr, "{}: {}\n", d.program, one_line(e.what()));
    return exit_code::usage;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", d.program, one_line(e.what()));
    return exit_code::failure;
  }
}

} // namespace depot
