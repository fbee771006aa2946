#include "config_binder.h"

#include <cstdint>
#include <set>
#include <sstream>
#include <type_traits>

#include "saddle/error.h"
#include "saddle/run/files.h"

namespace saddle::cli {

namespace {

std::string where(const std::string& file, const std::string& key) {
  return "config " + file + ": key '" + key + "'";
}

template <typename T>
T json_value(const nlohmann::json& value, const std::string& file, const std::string& key);

template <>
int64_t json_value<int64_t>(const nlohmann::json& v, const std::string& f, const std::string& k) {
  SADDLE_CHECK(v.is_number_integer(), where(f, k), " must be an integer, got ", v.dump());
  return v.get<int64_t>();
}
template <>
int json_value<int>(const nlohmann::json& v, const std::string& f, const std::string& k) {
  SADDLE_CHECK(v.is_number_integer(), where(f, k), " must be an integer, got ", v.dump());
  return v.get<int>();
}
template <>
uint64_t json_value<uint64_t>(const nlohmann::json& v, const std::string& f, const std::string& k) {
  SADDLE_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
               where(f, k), " must be a non-negative integer, got ", v.dump());
  return v.get<uint64_t>();
}
template <>
double json_value<double>(const nlohmann::json& v, const std::string& f, const std::string& k) {
  SADDLE_CHECK(v.is_number(), where(f, k), " must be a number, got ", v.dump());
  return v.get<double>();
}
template <>
std::string json_value<std::string>(const nlohmann::json& v, const std::string& f,
                                    const std::string& k) {
  SADDLE_CHECK(v.is_string(), where(f, k), " must be a string, got ", v.dump());
  return v.get<std::string>();
}
template <>
bool json_value<bool>(const nlohmann::json& v, const std::string& f, const std::string& k) {
  SADDLE_CHECK(v.is_boolean(), where(f, k), " must be true or false, got ", v.dump());
  return v.get<bool>();
}
// Lists take a JSON array of strings or, for NAME=VALUE lists, an object {"NAME": VALUE}.
template <>
std::vector<std::string> json_value<std::vector<std::string>>(const nlohmann::json& v,
                                                              const std::string& f,
                                                              const std::string& k) {
  std::vector<std::string> out;
  if (v.is_object()) {
    for (const auto& [name, value] : v.items()) {
      SADDLE_CHECK(value.is_number(), where(f, k), " must map names to numbers, got ", v.dump());
      std::ostringstream os;
      os.precision(17);
      os << name << "=" << value.get<double>();
      out.push_back(os.str());
    }
    return out;
  }
  SADDLE_CHECK(v.is_array(), where(f, k), " must be a list, got ", v.dump());
  for (const auto& item : v) {
    SADDLE_CHECK(item.is_string(), where(f, k), " must be a list of strings, got ", v.dump());
    out.push_back(item.get<std::string>());
  }
  return out;
}

}  // namespace

template <typename T>
CLI::Option* ConfigBinder::add(const std::string& name, T& target, const std::string& help) {
  CLI::Option* option = app_.add_option("--" + name, target, help)->capture_default_str();
  // A flag given again overrides the earlier one (scripts append overrides to a base command);
  // list options (--player-lr, --level-schedule) collect every value instead.
  option->multi_option_policy(std::is_same_v<T, std::vector<std::string>>
                                  ? CLI::MultiOptionPolicy::TakeAll
                                  : CLI::MultiOptionPolicy::TakeLast);
  entries_.push_back(Entry{name, option,
                           [&target, name](const nlohmann::json& v, const std::string& file) {
                             target = json_value<T>(v, file, name);
                           },
                           [&target]() { return nlohmann::json(target); }});
  return option;
}

CLI::Option* ConfigBinder::add_flag(const std::string& name, bool& target,
                                    const std::string& help) {
  CLI::Option* option = app_.add_flag("--" + name, target, help);
  entries_.push_back(Entry{name, option,
                           [&target, name](const nlohmann::json& v, const std::string& file) {
                             target = json_value<bool>(v, file, name);
                           },
                           [&target]() { return nlohmann::json(target); }});
  return option;
}

template CLI::Option* ConfigBinder::add<int64_t>(const std::string&, int64_t&, const std::string&);
template CLI::Option* ConfigBinder::add<int>(const std::string&, int&, const std::string&);
template CLI::Option* ConfigBinder::add<uint64_t>(const std::string&, uint64_t&,
                                                  const std::string&);
template CLI::Option* ConfigBinder::add<double>(const std::string&, double&, const std::string&);
template CLI::Option* ConfigBinder::add<std::string>(const std::string&, std::string&,
                                                     const std::string&);
template CLI::Option* ConfigBinder::add<std::vector<std::string>>(const std::string&,
                                                                  std::vector<std::string>&,
                                                                  const std::string&);

void ConfigBinder::apply_config_from_argv(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config") {
      SADDLE_CHECK(i + 1 < argc, "--config needs a file name");
      apply_file(argv[i + 1]);
      return;
    }
    if (arg.rfind("--config=", 0) == 0) {
      apply_file(arg.substr(9));
      return;
    }
  }
}

void ConfigBinder::apply_file(const std::string& path) {
  config_path_ = path;
  SADDLE_CHECK(!path.empty(), "invalid --config: empty path");
  SADDLE_CHECK(path_exists(path), "config ", path, ": no such file");
  SADDLE_CHECK(!is_directory(path), "config ", path, ": is a directory (expected a JSON file)");
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    throw Error(std::string("config ") + path + ": " + e.what());
  }
  const size_t nul = text.find('\0');
  SADDLE_CHECK(nul == std::string::npos, "config ", path, ": holds a NUL byte at offset ", nul,
               " (not a JSON text file)");
  // nlohmann keeps the last of repeated keys; a config that sets an option twice is an error.
  std::vector<std::set<std::string>> seen;
  std::string repeated;
  const nlohmann::json::parser_callback_t check_keys =
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        using Event = nlohmann::json::parse_event_t;
        if (event == Event::object_start) seen.emplace_back();
        if (event == Event::object_end && !seen.empty()) seen.pop_back();
        if (event == Event::key && !seen.empty() && repeated.empty()) {
          const std::string key = parsed.get<std::string>();
          if (!seen.back().insert(key).second) repeated = key;
        }
        return true;
      };
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text, check_keys);
  } catch (const nlohmann::json::exception& e) {
    throw Error("config " + path + ": invalid JSON: " + e.what());
  }
  SADDLE_CHECK(repeated.empty(), "config ", path, ": key '", repeated,
               "' appears more than once (each option may be set once)");
  SADDLE_CHECK(doc.is_object(), "config ", path, ": must be a JSON object of option names");
  for (const auto& [key, value] : doc.items()) {
    bool found = false;
    for (auto& entry : entries_) {
      if (entry.name != key) continue;
      entry.from_json(value, path);
      from_file_.insert(key);
      found = true;
    }
    SADDLE_CHECK(found, "config ", path, ": unknown key '", key, "' (keys are the long flags of '",
                 app_.get_name(), "', see --help)");
  }
}

bool ConfigBinder::given(const std::string& name) const {
  if (from_file_.count(name) > 0) return true;
  for (const auto& entry : entries_) {
    if (entry.name == name) return entry.option->count() > 0;
  }
  return false;
}

nlohmann::ordered_json ConfigBinder::resolved() const {
  nlohmann::ordered_json out;
  for (const auto& entry : entries_) out[entry.name] = entry.to_json();
  return out;
}

}  // namespace saddle::cli
