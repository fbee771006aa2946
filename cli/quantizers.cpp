// `saddle quantizers`: how much variance each quantizer adds, measured on real operators. A game
// is trained with a solver (one process, fp32) and its operator F(z) is sampled at chosen
// iterations; each quantizer at each bit width then encodes and decodes every sample --draws
// times (fresh random streams), and the normalized variance E||Q(v) - v||^2 / ||v||^2 is reported
// beside what the quantizer's levels predict on that operator's magnitudes (level_set.h) and,
// for the uniform levels of QSGD, its worst-case bound min(d/s^2, sqrt(d)/s) (Alistarh et al.
// 2017, bucket size d, s levels). The adaptive quantizers (ALQ, AMQ) fit their levels to each
// sample first; their 3-bit levels are printed beside the ones the ALQ paper reports.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "saddle/error.h"
#include "saddle/quant/codec.h"
#include "saddle/run/files.h"
#include "saddle/run/plot.h"
#include "saddle/solver.h"

namespace saddle::cli {

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? std::nan("") : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

QuantizersCommand::QuantizersCommand(CLI::App& app)
    : app_(app.add_subcommand(
          "quantizers",
          "The variance each quantizer adds to operators sampled while a game trains")) {
  app_->add_option("--game", game_, "Game whose operators are sampled")->capture_default_str();
  app_->add_option("--solver", solver_, "Solver that trains it (default: qgenx on the analytic "
                                        "games, extra-adam on the GANs)");
  app_->add_option("--iters", iters_, "Iterations of training")->capture_default_str();
  app_->add_option("--samples", samples_, "Operators sampled, evenly over the iterations (>= 1)")
      ->capture_default_str();
  app_->add_option("--quantizers", quantizers_, "Comma-separated quantizers")
      ->capture_default_str();
  app_->add_option("--bits", bits_, "Comma-separated bit widths (2..8)")->capture_default_str();
  app_->add_option("--bucket-size", bucket_size_, "Coordinates per bucket")->capture_default_str();
  app_->add_option("--draws", draws_, "Encodings per operator and configuration")
      ->capture_default_str();
  app_->add_option("--dim", dim_, "Analytic games: dimension of each player")
      ->capture_default_str();
  app_->add_option("--filters", filters_, "GAN games: width of the players (0: the game's)")
      ->capture_default_str();
  app_->add_option("--data-dir", data_dir_, "wgan-gp: the Fashion-MNIST folder");
  app_->add_option("--seed", seed_, "Seed of the game and of the random streams")
      ->capture_default_str();
  app_->add_option("--out", out_, "Directory: quantizers.jsonl, summary.json, variance.png");
  app_->add_flag("--overwrite", overwrite_, "Replace what --out already holds");
  app_->add_option("--log-level", log_level_, "error | warn | info | debug")->capture_default_str();
}

int QuantizersCommand::run(Communicator& comm) {
  Logger logger(rank_log_level(parse_log_level(log_level_), comm.rank()), comm.rank(), comm.size());
  SADDLE_CHECK(comm.size() == 1, "saddle quantizers runs on one process (not under mpirun)");
  const GameSpec& spec = game_spec(game_);
  SADDLE_CHECK(iters_ >= 0, "invalid --iters ", iters_, " (must be >= 0)");
  SADDLE_CHECK(samples_ >= 1 && samples_ <= 100, "invalid --samples ", samples_,
               " (must be 1..100)");
  SADDLE_CHECK(draws_ >= 1 && draws_ <= 10000, "invalid --draws ", draws_, " (must be 1..10000)");
  SADDLE_CHECK(filters_ >= 0, "invalid --filters ", filters_, " (must be >= 0)");
  const std::vector<std::string> names = split_list(quantizers_);
  SADDLE_CHECK(!names.empty(), "--quantizers names no quantizer");
  std::vector<int> widths;
  for (const std::string& b : split_list(bits_)) {
    int v = 0;
    SADDLE_CHECK(std::istringstream(b) >> v && v >= 2 && v <= 8, "invalid --bits entry '", b,
                 "' (2..8)");
    widths.push_back(v);
  }
  SADDLE_CHECK(!widths.empty(), "--bits names no width");
  for (const std::string& q : names) {
    const QuantizerSpec& qs = quantizer_spec(q);  // an unknown name is an error naming it
    SADDLE_CHECK(qs.family != LevelFamily::kCast, "--quantizers: ", q,
                 " is a cast, not a quantizer with levels (its variance is rounding only)");
  }
  // Every configuration is built once up front, so a bad bucket size fails before training.
  for (const std::string& q : names) {
    Codec(CodecOptions().quantizer(q).bits(widths.front()).bucket_size(bucket_size_));
  }
  if (!out_.empty()) {
    SADDLE_CHECK(overwrite_ || !path_exists(out_ + "/quantizers.jsonl"), "--out ", out_,
                 " already holds a measurement: replace it with --overwrite, or choose another "
                 "--out");
    prepare_output_dir(out_);
  }

  // Train and sample.
  std::string solver = solver_;
  if (solver.empty()) solver = spec.analytic ? "qgenx" : "extra-adam";
  solver_spec(solver);
  GameOptions game_options = spec.game_options(solver);
  game_options.seed = seed_;
  game_options.dim = dim_;
  if (filters_ > 0) game_options.filters = filters_;
  if (!data_dir_.empty()) game_options.data_dir = data_dir_;
  auto game = make_game(game_, game_options);
  auto trainer = make_solver(solver, game->params(), game->players(), spec.solver_options(solver));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed_);
  Oracle oracle = [&]() { return game->operator_at(gen); };
  std::vector<int64_t> at;
  for (int64_t k = 0; k < samples_; ++k) {
    at.push_back(samples_ == 1 ? iters_ : iters_ * k / (samples_ - 1));
  }
  std::vector<std::pair<int64_t, torch::Tensor>> operators;
  size_t next = 0;
  for (int64_t t = 0; t <= iters_ && next < at.size(); ++t) {
    while (next < at.size() && at[next] == t) {
      torch::NoGradGuard no_grad;
      operators.emplace_back(t, game->operator_at(gen).detach().to(torch::kCPU).contiguous());
      ++next;
    }
    if (t < iters_) trainer->step(oracle);
    SADDLE_CHECK(torch::isfinite(game->params()).all().item<bool>(), "training diverged at "
                 "iteration ", t + 1, " (choose another --solver or fewer --iters)");
  }
  logger.info("{} trained by {}: {} operators of dimension {} sampled at iterations {}", game_,
              solver, operators.size(), game->dim(), fmt::format("{}", at.front()) + ".." +
              std::to_string(at.back()));

  // Measure.
  std::string jsonl;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  std::vector<PlotSeries> series;
  std::string table = fmt::format(
      "{} (dim {}) trained by {}, {} operator(s), {} draws each, bucket {}: E||Q(v) - v||^2 / "
      "||v||^2, median over the operators\n\n{:<10} {:>4} {:>12} {:>12} {:>12} {:>9}\n",
      game_, game->dim(), solver, operators.size(), draws_, bucket_size_, "quantizer", "bits",
      "measured", "predicted", "QSGD bound", "bits/coord");
  nlohmann::ordered_json alq_levels = nlohmann::ordered_json::object();
  for (const std::string& q : names) {
    PlotSeries measured_line, bound_line;
    measured_line.label = q;
    bound_line.label = q + " bound";
    for (int bits : widths) {
      const QuantizerSpec& qs = quantizer_spec(q);
      if (qs.forced_bits != 0 && qs.forced_bits != bits) continue;  // terngrad: 2 bits only
      std::vector<double> measured, predicted;
      double wire_bits = 0;
      std::vector<float> levels;
      for (const auto& [t, v] : operators) {
        Codec codec(CodecOptions().quantizer(q).bits(bits).bucket_size(bucket_size_));
        const torch::Tensor stats = codec.statistics(v);
        if (codec.adaptive()) codec.adapt(stats);
        const double norm_sq = v.to(torch::kFloat64).square().sum().item<double>();
        double sum = 0;
        torch::Tensor out = torch::zeros_like(v);
        for (int64_t d = 0; d < draws_; ++d) {
          const torch::Tensor message =
              codec.encode(v, seed_ * 1000003ULL + static_cast<uint64_t>(t), d);
          out.zero_();
          codec.decode_accumulate(message, out, 1.0f);
          sum += (out.to(torch::kFloat64) - v.to(torch::kFloat64)).square().sum().item<double>();
          wire_bits = 8.0 * static_cast<double>(message.numel()) / static_cast<double>(v.numel());
        }
        const double m = norm_sq > 0 ? sum / static_cast<double>(draws_) / norm_sq : 0.0;
        const double p = norm_sq > 0 ? codec.predicted_variance(stats) / norm_sq : 0.0;
        measured.push_back(m);
        predicted.push_back(p);
        levels = codec.levels();
        jsonl += nlohmann::ordered_json({{"quantizer", q},
                                         {"bits", bits},
                                         {"iteration", t},
                                         {"measured", m},
                                         {"predicted", p},
                                         {"bits_per_coordinate", wire_bits},
                                         {"levels", levels}})
                     .dump() +
                 "\n";
      }
      // QSGD's bound for s uniform levels above 0 in buckets of d (L2 norm only).
      const double s = static_cast<double>(levels.size()) - 1;
      const double d = static_cast<double>(std::min<int64_t>(bucket_size_, game->dim()));
      const bool uniform = qs.family == LevelFamily::kUniform && !qs.forced_linf &&
                           q != "qsgd-inf";
      const double bound = uniform ? std::min(d / (s * s), std::sqrt(d) / s) : std::nan("");
      const double med = median_of(measured), pred = median_of(predicted);
      table += fmt::format("{:<10} {:>4} {:>12.4g} {:>12.4g} {:>12} {:>9.2f}\n", q, bits, med,
                           pred, std::isfinite(bound) ? fmt::format("{:.4g}", bound) : "-",
                           wire_bits);
      measured_line.x.push_back(bits);
      measured_line.y.push_back(med);
      if (std::isfinite(bound)) {
        bound_line.x.push_back(bits);
        bound_line.y.push_back(bound);
      }
      nlohmann::ordered_json row{{"quantizer", q},         {"bits", bits},
                                 {"measured_median", med}, {"predicted_median", pred},
                                 {"bits_per_coordinate", wire_bits}};
      if (std::isfinite(bound)) row["qsgd_bound"] = bound;
      if (qs.fit != LevelFit::kFixed && bits == 3) alq_levels[q] = levels;
      rows.push_back(row);
    }
    if (!measured_line.x.empty()) series.push_back(measured_line);
    if (!bound_line.x.empty()) series.push_back(bound_line);
  }
  for (const auto& [q, levels] : alq_levels.items()) {
    std::string text;
    for (const auto& l : levels) text += fmt::format(" {:.3g}", l.get<double>());
    table += fmt::format("\n{} 3-bit levels (last operator):{}", q, text);
  }
  if (!alq_levels.empty()) {
    table +=
        "\nthe ALQ paper's 3-bit levels on ResNet gradients: about 0.005, 0.018, 0.13, 1 (ours "
        "are fit to this game's operators and include 0)\n";
  }
  if (!out_.empty()) {
    write_file_atomic(out_ + "/quantizers.jsonl", jsonl);
    nlohmann::ordered_json summary{{"game", game_},   {"solver", solver},
                                   {"dim", game->dim()}, {"operators", operators.size()},
                                   {"draws", draws_}, {"bucket_size", bucket_size_},
                                   {"rows", rows},    {"levels_3bit", alq_levels}};
    write_file_atomic(out_ + "/summary.json", summary.dump(1) + "\n");
    PlotOptions options;
    options.title = fmt::format("quantization variance on {} operators (bucket {})", game_,
                                bucket_size_);
    options.x_label = "bits per coordinate (sign included)";
    options.y_label = "E||Q(v) - v||^2 / ||v||^2";
    options.log_y = true;
    write_line_plot(out_ + "/variance.png", series, options);
    table += fmt::format("\nwritten: {0}/quantizers.jsonl, {0}/summary.json, {0}/variance.png\n",
                         out_);
  }
  std::fwrite(table.data(), 1, table.size(), stdout);
  return 0;
}

}  // namespace saddle::cli
