#!/usr/bin/env python3
"""Issue 10, claim 2: speed-up with K ranks on a stochastic bilinear game, fp32 beside 4-bit ALQ.

Every rank draws its own samples of an absolute (additive) noise of scale sigma, so the averaged
operator that the exchange hands the solver has noise sigma / sqrt(K): the theory (Q-GenX,
Theorem on absolute noise) predicts that the iterations needed to bring the averaged iterate to a
target fall like 1/K, while the bytes that all ranks send together stay about the same (K
messages per exchange, 1/K as many exchanges).

For each K, one `mpirun -np K saddle compare` with two rows (qgenx with fp32 and with 4-bit ALQ
on the wire) over several seeds; then, per row and seed, the first record at which
distance_sq_avg (the uniform average of the half-step iterates) is at most the target, and the
bytes sent by then. Prints the table (median over seeds), writes OUT/results.json and, where
matplotlib is installed, OUT/speedup.png.

  python3 experiments/speedup.py            # K = 1, 2, 4, 8; 3 seeds (about 3 minutes on 2 cores)
  python3 experiments/speedup.py --quick    # K = 1, 2; 2 seeds, a smaller game: the test suite's size
"""
import argparse
import json
import os
import statistics
import sys

from common import pyplot, run_saddle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = {
    "fp32": "--solver qgenx --quantizer none",
    "alq4": "--solver qgenx --quantizer alq --bits 4",
}


def compare(saddle, out, ranks, args):
    if not (args.reuse and os.path.exists(os.path.join(out, "compare.jsonl"))):
        run_compare(saddle, out, ranks, args)
    records = {}
    with open(os.path.join(out, "compare.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            records.setdefault((r["row"], r["seed"]), []).append(r)
    return records


def run_compare(saddle, out, ranks, args):
    command = [saddle, "compare", "--game", "bilinear", "--dim", str(args.dim), "--noise",
               "absolute", "--noise-scale", repr(args.sigma), "--seeds", str(args.seeds),
               "--iters", str(args.iters), "--out", out, "--overwrite", "--log-level", "error",
               "--with", "--averaging uniform --log-every %d" % args.log_every]
    for name, flags in ROWS.items():
        command += ["--row", "%s: %s" % (name, flags)]
    run_saddle(command, ranks)


def to_target(records, target):
    """First (iteration, bytes) at which distance_sq_avg <= target x the start's distance_sq."""
    start = records[0]["distance_sq"]
    for r in records:
        value = r.get("distance_sq_avg")
        if value is not None and value <= target * start:
            return r["iter"], r["bytes_sent"]
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's size")
    parser.add_argument("--saddle", default=os.path.join(ROOT, "build", "cli", "saddle"))
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "speedup"))
    parser.add_argument("--sigma", type=float, default=0.3, help="noise scale per rank")
    parser.add_argument("--target", type=float,
                        help="distance_sq_avg target, relative to the start's distance_sq "
                        "(default 1e-2 quick, 3e-4 full: deep enough for the noise to limit)")
    parser.add_argument("--reuse", action="store_true",
                        help="read the runs already in OUT instead of running them again")
    args = parser.parse_args()
    if args.target is None:
        args.target = 1e-2 if args.quick else 3e-4
    if args.quick:
        args.ranks, args.seeds, args.dim, args.iters, args.log_every = [1, 2], 2, 8, 1500, 10
    else:
        args.ranks, args.seeds, args.dim, args.iters, args.log_every = [1, 2, 4, 8], 3, 64, 4000, 20
    os.makedirs(args.out, exist_ok=True)

    results = []
    for k in args.ranks:
        records = compare(args.saddle, os.path.join(args.out, "K%d" % k), k, args)
        for row in ROWS:
            hits = [to_target(records[(row, seed)], args.target) for seed in range(args.seeds)]
            reached = [h for h in hits if h is not None]
            results.append({
                "ranks": k, "row": row, "reached": len(reached), "seeds": args.seeds,
                "iterations": statistics.median([h[0] for h in reached]) if reached else None,
                "bytes": statistics.median([h[1] for h in reached]) if reached else None,
                "per_seed": [None if h is None else {"iteration": h[0], "bytes": h[1]}
                             for h in hits]})

    base = {r["row"]: r["iterations"] for r in results if r["ranks"] == args.ranks[0]}
    print("bilinear dim %d, absolute noise %g per rank, target distance_sq_avg <= %g of the "
          "start within %d iterations, median over %d seeds" % (args.dim, args.sigma, args.target, args.iters,
                                                args.seeds))
    print("%-6s %-5s %8s %12s %14s %9s" % ("row", "K", "reached", "iterations", "bytes (all)",
                                          "speed-up"))
    for r in sorted(results, key=lambda r: (r["row"], r["ranks"])):
        its = r["iterations"]
        speed = base[r["row"]] / its if its and base[r["row"]] else None
        print("%-6s %-5d %5d/%-2d %12s %14s %9s" % (
            r["row"], r["ranks"], r["reached"], r["seeds"], "-" if its is None else "%d" % its,
            "-" if r["bytes"] is None else "%d" % r["bytes"],
            "-" if speed is None else "%.2fx" % speed))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"settings": {k: v for k, v in vars(args).items()
                                if k not in ("saddle", "reuse", "out")},
                   "results": results}, f, indent=1)
    missed = [r for r in results if r["reached"] == 0]
    if missed:
        print("not reached by any seed: " + ", ".join("%s K=%d" % (r["row"], r["ranks"])
                                                      for r in missed))
        return 1
    plt = pyplot()
    if plt is None:
        return 0
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for row in ROWS:
        rs = [r for r in results if r["row"] == row and r["iterations"]]
        axes[0].plot([r["ranks"] for r in rs], [r["iterations"] for r in rs], "o-", label=row)
        axes[1].plot([r["ranks"] for r in rs], [r["bytes"] for r in rs], "o-", label=row)
    ks = args.ranks
    if base.get("fp32"):
        axes[0].plot(ks, [base["fp32"] / k for k in ks], "k:", label="1/K")
    for ax, what in zip(axes, ["iterations to target", "bytes sent by all ranks to target"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("ranks K")
        ax.set_ylabel(what)
        ax.legend()
    fig.suptitle("bilinear, absolute noise %g per rank: distance_sq_avg <= %g of the start "
                 "(median of %d seeds)"
                 % (args.sigma, args.target, args.seeds))
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "speedup.png"), dpi=100)
    print("figure: %s" % os.path.join(args.out, "speedup.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
