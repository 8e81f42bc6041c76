// The node binary's command line. Options are CAF config options (category "global": given as
// --name=value or --name value, or in the config file); DEPOT_<NAME> environment variables
// supply values the command line does not. Precedence: default < config file < environment <
// command line.
#include "depot/actors/cli.hpp"

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>

#include <caf/actor_system_config.hpp>
#include <caf/config_option_adder.hpp>
#include <caf/timespan.hpp>
#include <fmt/format.h>
#include <soci/soci.h>

#include "depot/actors/node.hpp"
#include "depot/transports/local.hpp"
#include "depot/persistence/unit_of_work.hpp"
#include "depot/runtime/log.hpp"

namespace depot {

using persistence::db_error;
using persistence::message_store;

namespace {

/// A usage error: exit code 2.
class usage_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

std::string env_name(const std::string& option) {
  std::string result = "DEPOT_";
  for (char c : option)
    result += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return result;
}

/// An error as one line: libpq's multi-line messages folded.
std::string one_line(std::string_view text) {
  std::string result;
  for (char c : text) {
    auto blank = c == '\n' || c == '\t' || c == ' ';
    if (blank && (result.empty() || result.back() == ' '))
      continue;
    result += blank ? ' ' : c;
  }
  while (!result.empty() && result.back() == ' ')
    result.pop_back();
  return result;
}

std::chrono::milliseconds to_ms(caf::timespan t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t);
}

std::string show_ms(std::chrono::milliseconds ms) {
  return fmt::format("{}ms", ms.count());
}

std::map<std::string, int> parse_queue_concurrency(const std::string& text) {
  std::map<std::string, int> result;
  std::size_t start = 0;
  while (start < text.size()) {
    auto comma = text.find(',', start);
    auto item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw usage_error{fmt::format("queue-concurrency item '{}' is not QUEUE=N", item)};
    result[item.substr(0, eq)] = std::stoi(item.substr(eq + 1));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return result;
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

/// CAF's config with depot's options bound to a node_settings.
class node_config : public caf::actor_system_config, public command_options {
public:
  explicit node_config(node_settings& s) : s_(s) {
    using namespace std::chrono;
    dedup_ = s.dedup_window;
    polling_ = s.polling_interval;
    heartbeat_ = s.heartbeat_interval;
    stale_ = s.stale_after;
    cleanup_ = s.cleanup_interval;
    retry_delay_ = s.failures.retry_delay;
    caf::config_option_adder{custom_options_, "global"}
      .add(s.db, "db", "libpq connection URI of the message store (required)")
      .add(s.schema, "schema", "Postgres schema of depot's tables")
      .add(s.service, "service", "service name: source of sent envelopes")
      .add(s.node_id, "node-id", "owner id of this node's claims; 0 picks a free one")
      .add(s.concurrency, "concurrency", "workers per queue on this node")
      .add(queue_concurrency_, "queue-concurrency", "per-queue workers: QUEUE=N,QUEUE=N")
      .add(s.batch_size, "batch-size", "envelopes claimed and handled per transaction")
      .add(dedup_, "dedup-window", "how long handled ids are kept for dedup")
      .add(polling_, "polling-interval", "fallback poll of each queue")
      .add(heartbeat_, "heartbeat-interval", "node heartbeat and durability agent period")
      .add(stale_, "stale-after", "a node silent this long is dead; its work is recovered")
      .add(cleanup_, "cleanup-interval", "removal of handled ids past the dedup window")
      .add(s.auto_provision, "auto-provision", "apply the schema when the node starts")
      .add(s.failures.max_attempts, "max-attempts", "attempts before a dead letter")
      .add(retry_delay_, "retry-delay", "delay of the first retry (x4 each further one)");
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

  /// Splits argv into positional words and options, adds DEPOT_* variables, parses with CAF.
  std::vector<std::string> parse_all(const std::vector<std::string>& argv) {
    std::vector<std::string> positional;
    caf::actor_system_config::string_list options;
    for (const auto& name : depot_options_)
      if (const char* v = std::getenv(env_name(name).c_str()))
        options.push_back(fmt::format("--{}={}", name, v));
    for (std::size_t i = 0; i < argv.size(); ++i) {
      const auto& a = argv[i];
      if (a.size() < 2 || a[0] != '-' || (a.size() == 1)) {
        positional.push_back(a);
        continue;
      }
      if (!a.starts_with("--") || a.find('=') != std::string::npos) {
        options.push_back(a);
        continue;
      }
      auto* opt = custom_options_.cli_long_name_lookup(caf::string_view{a.data() + 2,
                                                                         a.size() - 2});
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
    // CAF flags take no value: apply "--flag=true|false" (command line or DEPOT_*) ourselves.
    std::vector<std::pair<const caf::config_option*, bool>> flags;
    std::erase_if(options, [&](const std::string& o) {
      auto eq = o.find('=');
      if (!o.starts_with("--") || eq == std::string::npos)
        return false;
      auto* opt = custom_options_.cli_long_name_lookup(caf::string_view{o.data() + 2, eq - 2});
      if (opt == nullptr || !opt->is_flag())
        return false;
      auto value = o.substr(eq + 1);
      if (value != "true" && value != "false")
        throw usage_error{fmt::format("{} takes true or false", o.substr(0, eq))};
      flags.emplace_back(opt, value == "true");
      return true;
    });
    if (auto err = parse(std::move(options)))
      throw usage_error{render(err)};
    for (auto [opt, value] : flags)
      opt->store(caf::config_value{value});
    s_.dedup_window = to_ms(dedup_);
    s_.polling_interval = to_ms(polling_);
    s_.heartbeat_interval = to_ms(heartbeat_);
    s_.stale_after = to_ms(stale_);
    s_.cleanup_interval = to_ms(cleanup_);
    s_.failures.retry_delay = to_ms(retry_delay_);
    s_.queue_concurrency = parse_queue_concurrency(queue_concurrency_);
    if (s_.batch_size < 1 || s_.concurrency < 0 || s_.node_id < 0)
      throw usage_error{"batch-size must be at least 1; concurrency and node-id not negative"};
    return positional;
  }

  [[nodiscard]] std::string options_help() const { return custom_options_.help_text(true); }

  /// The effective value of every depot option, for `describe`.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> effective() const {
    return {
      {"db", persistence::redact_password(s_.db)},
      {"schema", s_.schema},
      {"service", s_.service},
      {"node-id", std::to_string(s_.node_id)},
      {"concurrency", std::to_string(s_.concurrency)},
      {"queue-concurrency", queue_concurrency_},
      {"batch-size", std::to_string(s_.batch_size)},
      {"dedup-window", show_ms(s_.dedup_window)},
      {"polling-interval", show_ms(s_.polling_interval)},
      {"heartbeat-interval", show_ms(s_.heartbeat_interval)},
      {"stale-after", show_ms(s_.stale_after)},
      {"cleanup-interval", show_ms(s_.cleanup_interval)},
      {"auto-provision", s_.auto_provision ? "true" : "false"},
      {"max-attempts", std::to_string(s_.failures.max_attempts)},
      {"retry-delay", show_ms(s_.failures.retry_delay)},
    };
  }

private:
  node_settings& s_;
  std::string queue_concurrency_;
  caf::timespan dedup_, polling_, heartbeat_, stale_, cleanup_, retry_delay_;
  std::vector<std::string> depot_options_;
};

struct cli::impl {
  std::string program;
  routing& app;
  std::vector<command> commands;
  std::vector<std::function<void(soci::session&)>> db_apply_hooks;

  std::unique_ptr<message_store> open_store(const node_settings& s) {
    return std::make_unique<message_store>(persistence::store_settings{
      s.db, s.schema,
      std::chrono::duration_cast<std::chrono::microseconds>(s.dedup_window).count()});
  }

  /// A store whose schema is provisioned, or an error saying how to provision it.
  std::unique_ptr<message_store> open_provisioned_store(const node_settings& s) {
    auto store = open_store(s);
    if (store->schema_version() == 0)
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

int run_node(command_env& env) {
  // Block the stop signals before any thread starts, so that only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  node n{env.app, env.settings};
  n.start();
  fmt::print("node {} running (schema {}); stop with SIGINT or SIGTERM\n", n.number(),
             env.settings.schema);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  n.stop();
  return exit_code::ok;
}

} // namespace

void cli::impl::add_builtins() {
  commands.push_back({{"run"}, "", "run the node until SIGINT or SIGTERM", {}, run_node});
  commands.push_back({{"db", "apply"}, "", "create or migrate the schema (idempotent)", {},
                      [this](command_env& env) {
                        auto store = open_store(env.settings);
                        auto applied = store->apply_schema();
                        if (!db_apply_hooks.empty()) {
                          persistence::unit_of_work uow{*store};
                          for (auto& hook : db_apply_hooks)
                            hook(store->session());
                          uow.commit();
                        }
                        fmt::print("schema {} at version {} (applied now: {})\n",
                                   env.settings.schema, store->schema_version(),
                                   applied.empty() ? "none" : fmt::format("{}", fmt::join(applied, ", ")));
                        return exit_code::ok;
                      }});
  commands.push_back({{"db", "status"}, "", "show the schema version; exit 1 when behind", {},
                      [this](command_env& env) {
                        auto store = open_store(env.settings);
                        auto v = store->schema_version();
                        auto latest = message_store::latest_schema_version();
                        fmt::print("schema {}: version {} of {} ({})\n", env.settings.schema, v,
                                   latest,
                                   v == 0          ? "not provisioned: run db apply"
                                   : v == latest   ? "up to date"
                                   : v < latest    ? "behind: run db apply"
                                                   : "newer than this binary");
                        return v == latest ? exit_code::ok : exit_code::failure;
                      }});
  commands.push_back({{"describe"}, "", "message types, queues, routes, configuration", {},
                      [this](command_env& env) { return describe(env); }});
  commands.push_back(
    {{"send"}, "<type> <json|->",
     "durably enqueue a message; '-' reads one JSON body per line from stdin",
     [](command_options&) {},
     [this](command_env& env) {
       if (env.args.size() != 2)
         throw usage_error{"send takes <type> and <json> (or - for JSON lines on stdin)"};
       const auto& type = env.args[0];
       auto store = open_provisioned_store(env.settings);
       std::size_t total = 0;
       auto flush = [&](std::vector<std::string>& bodies) {
         auto sent = send_durably(*store, app, env.settings.service, 0, type, bodies, {}, 0,
                                  dispatch::send);
         if (!sent.buffered.empty())
           throw usage_error{fmt::format("{} goes to a buffered queue: only a running node "
                                         "can take it",
                                         type)};
         total += bodies.size();
         if (bodies.size() == 1 && env.args[1] != "-")
           fmt::print("sent {} to queue {} as {}\n", type, sent.durable.at(0).queue,
                      sent.durable.at(0).id);
         bodies.clear();
       };
       std::vector<std::string> bodies;
       if (env.args[1] != "-") {
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
  commands.push_back({{"storage", "counts"}, "", "envelopes per queue and status", {},
                      [this](command_env& env) {
                        auto store = open_provisioned_store(env.settings);
                        fmt::print("{:<40} {:<10} {:>10}\n", "queue", "status", "count");
                        for (const auto& c : store->counts())
                          fmt::print("{:<40} {:<10} {:>10}\n", c.queue, c.status, c.count);
                        return exit_code::ok;
                      }});
  commands.push_back({{"health"}, "", "check the database and schema; exit 1 when unhealthy",
                      {}, [this](command_env& env) {
                        auto store = open_store(env.settings);
                        auto v = store->schema_version();
                        auto ok = v == message_store::latest_schema_version();
                        fmt::print("database reachable; schema {} version {}: {}\n",
                                   env.settings.schema, v, ok ? "healthy" : "needs db apply");
                        return ok ? exit_code::ok : exit_code::failure;
                      }});
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
    fmt::print("  {:<36} {:<8} workers {:<3} {}: {}\n", q.name, to_string(q.mode),
               env.settings.concurrency_of(q.name, q.concurrency),
               q.make_state ? "handler actor" : "handler functions", fmt::join(types, ", "));
  }
  fmt::print("routes:\n");
  for (const auto& t : app.message_types()) {
    std::vector<std::string> names;
    for (const auto* q : app.subscribers_of(t))
      names.push_back(q->name);
    fmt::print("  {:<36} -> {}\n", t,
               names.empty() ? std::string{"(none)"} : fmt::format("{}", fmt::join(names, ", ")));
  }
  fmt::print("configuration:\n");
  for (const auto& [k, v] : config->effective())
    fmt::print("  {:<20} {}\n", k, v);
  return exit_code::ok;
}

cli::cli(std::string program, routing& app) : impl_(std::make_unique<impl>(impl{program, app, {}, {}})) {
  impl_->add_builtins();
}

cli::~cli() = default;

void cli::add_command(command c) {
  impl_->commands.push_back(std::move(c));
}

void cli::on_db_apply(std::function<void(soci::session&)> f) {
  impl_->db_apply_hooks.push_back(std::move(f));
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
    command_env env{settings, d.app, positional};
    d.config = &config;
    if (settings.db.empty() && chosen->words != std::vector<std::string>{"describe"})
      throw usage_error{"no database configured: set DEPOT_DB or --db to a libpq connection URI"};
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
