// `saddle games`: what `saddle solve --game G --solver S` trains with when no flag says otherwise,
// read from the game table (saddle/games/registry.h), and which solvers do not suit a game.
#include <fmt/format.h>

#include <cstdio>

#include "commands.h"
#include "saddle/solver.h"

namespace saddle::cli {

GamesCommand::GamesCommand(CLI::App& app)
    : app_(app.add_subcommand("games", "List the games and the defaults each solver trains with")) {
  app_->add_option("--game", game_, "Only this game");
}

int GamesCommand::run(Communicator& comm) {
  if (!game_.empty()) game_spec(game_);  // an unknown name is an error naming it
  std::string text;
  for (const auto& spec : game_specs()) {
    if (!game_.empty() && spec.name != game_) continue;
    text += fmt::format("{}: {}\n", spec.name, spec.description);
    for (const auto& solver : solver_names()) {
      const std::string poor = spec.poor_pairing(solver);
      if (!poor.empty()) {
        text += fmt::format("  {:<16} poor: {}\n", solver, poor);
        continue;
      }
      RunDefaults defaults = spec.defaults_for(solver);
      if (!defaults.step_size)
        defaults.step_size = step_size_name(solver_spec(solver).default_step);
      text += fmt::format("  {:<16} {}\n", solver, defaults.describe());
    }
    text += "\n";
  }
  text +=
      "Options not listed take saddle solve's own defaults (saddle solve --help); a flag or "
      "--config key overrides any of them.\n";
  if (comm.rank() == 0) std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace saddle::cli
