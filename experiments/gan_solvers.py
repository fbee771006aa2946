#!/usr/bin/env python3
"""Issue 10, claim 5: the solvers on WGAN-GP at a fixed budget, each at the best rate of a sweep.

Every solver that saddle has (gda, alt-gda, eg, ogda, extra-adam, optimistic-adam, and qgenx's
dual-averaging variant) trains the same WGAN-GP (DCGAN-32 players, Fashion-MNIST) for the same
number of iterations, fp32 exchange on one rank. eg and ogda are qgenx's eg and optimistic
variants (one class: `--solver eg` and `--solver qgenx --variant eg` take bit-identical steps), so
they stand for those two. Two stages, one `saddle compare` per solver in each:

  1. the sweep: each solver at three base rates, one seed; the best rate is the one with the
     lowest FID of the last iterate at the end;
  2. the best rate of each solver over the remaining seeds.

The rates: gda, alt-gda, eg and ogda sweep --lr over 0.005, 0.01, 0.02 (the table's default 0.01;
eg and ogda take the table's step rule: the auto rule capped at --lr when the committed
results were measured, a constant --lr since wgan-gp's default became constant); the Adam
family sweeps the generator's rate over 1e-4, 4e-4, 1.6e-3 with the critic's ten times it (Gidel et al.'s 5e-5 / 5e-4 is for long runs:
at 300 iterations 2.5e-5 and 1e-4 reached FID 488 and 385, 4e-4 201); dual averaging takes Q-GenX's rule, which divides gamma_0 by the root of the summed
squared operators, so its sweep is 0.05, 0.5, 5.

Prints the sweep and the final table (FID median [min, max] over seeds, wall time), writes
OUT/results.json and, where matplotlib is installed, OUT/gan_solvers.png.

  python3 experiments/gan_solvers.py           # 16 filters, 300 iterations, FID on 1000 images, 3 seeds
  python3 experiments/gan_solvers.py --quick   # the test suite's size: 4 filters, 6 iterations, 2 seeds
"""
import json
import os
import statistics
import sys

from common import (band, ensure_classifier, final_values, gan_arguments, pyplot, read_compare,
                    run_saddle)

PLAIN_RATES = [0.005, 0.01, 0.02]
ADAM_RATES = [1e-4, 4e-4, 1.6e-3]
DA_RATES = [0.05, 0.5, 5.0]
SOLVERS = {
    "gda": "--solver gda",
    "alt-gda": "--solver alt-gda",
    "eg": "--solver eg",
    "ogda": "--solver ogda",
    "extra-adam": "--solver extra-adam",
    "optimistic-adam": "--solver optimistic-adam",
    "qgenx-da": "--solver qgenx --variant dual-averaging",
}


def rates_of(solver):
    return ADAM_RATES if "adam" in solver else DA_RATES if solver == "qgenx-da" else PLAIN_RATES


def rate_flags(solver, rate):
    if "adam" in solver:
        return "--lr %g --player-lr critic=%g" % (rate, 10 * rate)
    return "--lr %g" % rate


def row_name(solver, rate):
    return "%s_%g" % (solver, rate)


def compare(args, out, rows, first_seed, seeds):
    if not (args.reuse and os.path.exists(os.path.join(out, "summary.json")) and
            sorted(r["name"] for r in read_compare(out, "fid")[0]["rows"]) ==
            sorted(name for name, _ in rows)):
        command = [args.saddle, "compare", "--game", "wgan-gp", "--quantizer", "none",
                   "--iters", str(args.iters), "--seed", str(first_seed), "--seeds", str(seeds),
                   "--out", out, "--overwrite", "--log-level", "error", "--with", args.with_flags]
        for name, flags in rows:
            command += ["--row", "%s: %s" % (name, flags)]
        run_saddle(command, 1)
    summary, curves = read_compare(out, "fid")
    # [iteration, FID] per seed.
    return summary, {row: {seed: [[i, v] for i, _, v in points] for seed, points in seeds.items()}
                     for row, seeds in curves.items()}


def main():
    args = gan_arguments(__doc__, "gan_solvers")
    args.iters, args.seeds = (6, 2) if args.quick else (300, 3)
    ensure_classifier(args)
    args.with_flags = "%s --classifier %s" % (args.size, args.classifier)

    # Stage 1: the sweep, one seed, one comparison per solver (--reuse keeps those already run).
    by_name, sweep_curves, best = {}, {}, {}
    print("sweep (seed 0): FID at %d iterations for each base rate" % args.iters)
    for solver, flags in SOLVERS.items():
        rows = [(row_name(solver, rate), "%s %s" % (flags, rate_flags(solver, rate)))
                for rate in rates_of(solver)]
        summary, curves = compare(args, os.path.join(args.out, "sweep", solver), rows, 0, 1)
        by_name.update({r["name"]: r for r in summary["rows"]})
        sweep_curves.update(curves)
        fids = {rate: final_values(by_name[row_name(solver, rate)], "fid")[0]
                for rate in rates_of(solver)}
        finished = {rate: fid for rate, fid in fids.items() if fid is not None}
        best[solver] = min(finished, key=finished.get) if finished else None
        print("  %-17s %s   best %s" % (solver, "  ".join(
            "%g: %s" % (rate, "diverged" if fid is None else "%.1f" % fid)
            for rate, fid in fids.items()), "-" if best[solver] is None else "%g" % best[solver]))

    # Stage 2: the best rate of each solver over the other seeds.
    final_rows = [(row_name(s, rate), "%s %s" % (SOLVERS[s], rate_flags(s, rate)))
                  for s, rate in best.items() if rate is not None]
    rest, rest_curves = compare(args, os.path.join(args.out, "best"), final_rows, 1,
                                args.seeds - 1)
    rest_by_name = {r["name"]: r for r in rest["rows"]}
    results = []
    for solver, rate in best.items():
        if rate is None:
            results.append({"solver": solver, "rate": None, "fids": [], "diverged": args.seeds,
                            "seconds": None, "curves": {}})
            continue
        name = row_name(solver, rate)
        first, others = by_name[name], rest_by_name[name]
        fids = final_values(first, "fid") + final_values(others, "fid")
        seconds = [s["seconds"] for s in first["seeds"] + others["seeds"] if not s["diverged"]]
        curves = dict(sweep_curves.get(name, {}))
        curves.update(rest_curves.get(name, {}))
        results.append({"solver": solver, "rate": rate, "fids": fids,
                        "diverged": sum(f is None for f in fids),
                        "seconds": statistics.median(seconds) if seconds else None,
                        "curves": {str(k): v for k, v in curves.items()}})

    print("\nWGAN-GP, %d iterations, fp32 on 1 rank, each solver at its best rate, %d seeds: "
          "FID median [min, max], wall seconds (median)" % (args.iters, args.seeds))
    print("%-17s %8s %26s %9s %9s" % ("solver", "rate", "FID", "seconds", "diverged"))
    for r in sorted(results, key=lambda r: statistics.median([f for f in r["fids"] if f is not None])
                    if any(f is not None for f in r["fids"]) else float("inf")):
        finished = [f for f in r["fids"] if f is not None]
        fid = ("%.1f [%.1f, %.1f]" % (statistics.median(finished), min(finished), max(finished))
               if finished else "-")
        print("%-17s %8s %26s %9s %6d/%d" % (
            r["solver"], "-" if r["rate"] is None else "%g" % r["rate"], fid,
            "-" if r["seconds"] is None else "%.1f" % r["seconds"], r["diverged"], args.seeds))
    settings = {"iters": args.iters, "seeds": args.seeds, "size": args.size, "quick": args.quick,
                "rates": {solver: rates_of(solver) for solver in SOLVERS}}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"settings": settings, "results": results}, f, indent=1)
    if all(r["rate"] is None for r in results):
        print("every solver diverged at every rate")
        return 1
    plt = pyplot()
    if plt is None:
        return 0
    plot(results, settings, plt, os.path.join(args.out, "gan_solvers.png"))
    return 0


def plot(results, settings, plt, path):
    """FID against iterations (median over seeds, range as a band) and final FID against time."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        if r["rate"] is None or not r["curves"]:
            continue
        iters, med, lo, hi = band(list(r["curves"].values()))
        line, = axes[0].plot(iters, med, "o-", label="%s (%g)" % (r["solver"], r["rate"]))
        axes[0].fill_between(iters, lo, hi, color=line.get_color(), alpha=0.15)
        finished = [f for f in r["fids"] if f is not None]
        axes[1].errorbar([r["seconds"]], [statistics.median(finished)],
                         yerr=[[statistics.median(finished) - min(finished)],
                               [max(finished) - statistics.median(finished)]],
                         fmt="o", color=line.get_color(), capsize=3)
        axes[1].annotate(r["solver"], (r["seconds"], statistics.median(finished)), fontsize=8,
                         xytext=(4, 2), textcoords="offset points")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("FID (lower is better)")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("wall seconds per run (median)")
    axes[1].set_ylabel("FID at the end, median [range]")
    fig.suptitle("WGAN-GP, %d iterations, each solver at its best rate of a 3-point sweep, "
                 "%d seeds" % (settings["iters"], settings["seeds"]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print("figure: %s" % path)


if __name__ == "__main__":
    sys.exit(main())
