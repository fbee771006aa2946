#include "saddle/games/registry.h"

#include "saddle/error.h"
#include "saddle/games/bilinear.h"
#include "saddle/games/mog.h"
#include "saddle/games/quadratic.h"
#include "saddle/games/wgan_gp.h"

namespace saddle {

const std::vector<std::string>& game_names() {
  static const std::vector<std::string> kNames = {"bilinear", "mog8", "mog25", "quadratic",
                                                  "wgan-gp"};
  return kNames;
}

const std::vector<std::string>& analytic_game_names() {
  static const std::vector<std::string> kNames = {"bilinear", "quadratic"};
  return kNames;
}

std::unique_ptr<Game> make_game(const std::string& name, const GameOptions& options) {
  if (name == "bilinear") return std::make_unique<BilinearGame>(options);
  if (name == "mog8" || name == "mog25") return std::make_unique<MogGame>(name, options);
  if (name == "quadratic") return std::make_unique<QuadraticGame>(options);
  if (name == "wgan-gp") return std::make_unique<WganGpGame>(options);
  std::string known;
  for (const auto& n : game_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown game '" + name + "' (expected one of: " + known + ")");
}

}  // namespace saddle
