// ConfigBinder: one table of options shared by the command line (CLI11) and --config FILE.json,
// whose keys are the long flag names. The file is applied first, flags override it; unknown keys
// and values of the wrong JSON type are errors naming the file and the key.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <set>
#include <string>
#include <vector>

namespace saddle::cli {

class ConfigBinder {
 public:
  explicit ConfigBinder(CLI::App& app) : app_(app) {}

  // Binds --name to target, for the command line and for the config file.
  template <typename T>
  CLI::Option* add(const std::string& name, T& target, const std::string& help);
  CLI::Option* add_flag(const std::string& name, bool& target, const std::string& help);

  // Reads the config file named by --config in argv (if any) into the bound targets.
  void apply_config_from_argv(int argc, char** argv);
  // Whether --name was given on the command line or in the config file.
  bool given(const std::string& name) const;
  // Every option's resolved value, keyed by long flag name.
  nlohmann::ordered_json resolved() const;

 private:
  struct Entry {
    std::string name;
    CLI::Option* option;
    std::function<void(const nlohmann::json&, const std::string&)> from_json;
    std::function<nlohmann::json()> to_json;
  };
  void apply_file(const std::string& path);

  CLI::App& app_;
  std::vector<Entry> entries_;
  std::set<std::string> from_file_;
  std::string config_path_;
};

}  // namespace saddle::cli
