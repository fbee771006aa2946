// saddle: solve min-max games and monotone VIs, on one process or many (mpirun).
// main() only picks the communicator, parses the command line and turns every error into one
// line on stderr and a non-zero exit; under mpirun an error on one rank ends every rank.
#include <c10/util/Exception.h>
#include <unistd.h>

#include <csignal>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "saddle/comm/communicator.h"
#include "saddle/comm/mpi.h"
#include "saddle/error.h"
#include "saddle/run/runner.h"

namespace {

// mpirun and srun export these; the library itself never reads the environment.
bool launched_by_mpi_launcher() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

std::string one_line(std::string message) {
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!message.empty() && message.back() == ' ') message.pop_back();
  return message;
}

void report(const std::string& message, const saddle::Communicator* comm) {
  std::string line = "saddle: error: " + one_line(message);
  if (comm != nullptr && comm->size() > 1) {
    line = "saddle: error on rank " + std::to_string(comm->rank()) + ": " + one_line(message);
  }
  line += "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

// Ctrl-C or a scheduler's SIGTERM: the run stops after an iteration that every rank agrees on,
// checkpoints, and says how to continue. A second signal stops at once.
volatile std::sig_atomic_t stop_signal = 0;
volatile std::sig_atomic_t rank_zero = 1;

extern "C" void on_stop_signal(int sig) {
  if (stop_signal != 0) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  stop_signal = sig;
  if (rank_zero) {
    static const char kNote[] =
        "\nsaddle: stopping after this iteration to write a checkpoint (signal again to stop at "
        "once)\n";
    const ssize_t ignored = ::write(STDERR_FILENO, kNote, sizeof kNote - 1);
    (void)ignored;
  }
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

}  // namespace

namespace saddle::cli {
bool stop_requested() { return stop_signal != 0; }
}  // namespace saddle::cli

int main(int argc, char** argv) {
  // Declared before the communicator so that it outlives it (MPI_Finalize comes last).
  std::unique_ptr<saddle::MpiRuntime> mpi;
  std::unique_ptr<saddle::Communicator> comm;
  // Ends the job: a lone process returns the code; under mpirun every rank is aborted so that
  // none is left waiting in a collective.
  auto fail = [&](const std::string& message, int code) {
    report(message, comm.get());
    if (comm && comm->size() > 1) comm->abort(code);
    return code;
  };

  CLI::App app{
      "saddle: solve min-max games and monotone variational inequalities with "
      "(distributed, quantized) extra-gradient methods"};
  app.require_subcommand(1);
  // An option given twice takes its last value (scripts append overrides to a base command).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.set_help_all_flag("--help-all", "Show the help of every subcommand");
  saddle::cli::SolveCommand solve(app);
  saddle::cli::DemoCommand demo(app);
  saddle::cli::CompareCommand compare(app);
  saddle::cli::ClassifierCommand classifier(app);
  saddle::cli::GamesCommand games(app);
  saddle::cli::QuantizersCommand quantizers(app);
  try {
    if (launched_by_mpi_launcher()) {
      mpi = std::make_unique<saddle::MpiRuntime>(argc, argv);
      comm = mpi->world();
    } else {
      comm = saddle::make_single_process_communicator();
    }
    rank_zero = comm->rank() == 0;
    install_stop_handlers();
    if (argc > 1 && std::string(argv[1]) == "solve")
      solve.binder().apply_config_from_argv(argc, argv);
    app.parse(argc, argv);
    if (solve.app()->parsed()) return solve.run(*comm);
    if (demo.app()->parsed()) return demo.run(*comm);
    if (compare.app()->parsed()) return compare.run(*comm);
    if (classifier.app()->parsed()) return classifier.run(*comm);
    if (games.app()->parsed()) return games.run(*comm);
    if (quantizers.app()->parsed()) return quantizers.run(*comm);
    return 0;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(std::string(e.what()) + " (see saddle --help)", 2);
  } catch (const saddle::AgreedError& e) {
    // Every rank raised it together: one line (rank 0's), and every rank exits on its own.
    const bool interrupted = dynamic_cast<const saddle::Interrupted*>(&e) != nullptr;
    if (!comm || comm->rank() == 0) {
      if (interrupted) {
        const std::string line = std::string("saddle: ") + e.what() + "\n";
        std::fwrite(line.data(), 1, line.size(), stderr);
      } else {
        report(e.what(), nullptr);
      }
    }
    if (interrupted && stop_signal != 0) return 128 + stop_signal;
    return e.exit_code();
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace(), 1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  }
}
