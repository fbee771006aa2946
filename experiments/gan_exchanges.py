#!/usr/bin/env python3
"""Issue 10, claim 4: WGAN-GP's FID against iterations and bytes for each exchange, on 2 ranks.

One `mpirun -np 2 saddle compare --game wgan-gp`: qgenx with the game's default step and six
exchanges on the wire (fp32, bf16, 8-, 4- and 3-bit ALQ, and 4-bit QSGD beside 4-bit ALQ at
equal bits), several seeds. Prints the table (FID of the last iterate at the end, median [min,
max] over seeds, bytes sent by both ranks), writes OUT/results.json and, where matplotlib is
installed, OUT/gan_exchanges.png (FID against iterations and against bytes, a band over seeds).

  python3 experiments/gan_exchanges.py           # 16 filters, 300 iterations, FID on 1000 images, 2 seeds (10 minutes)
  python3 experiments/gan_exchanges.py --quick   # the test suite's size: 4 filters, 6 iterations
"""
import json
import os
import statistics
import sys

from common import (band, ensure_classifier, final_values, gan_arguments, pyplot, read_compare,
                    run_saddle)

ROWS = {
    "fp32": "--solver qgenx --quantizer none",
    "bf16": "--solver qgenx --quantizer bf16",
    "alq8": "--solver qgenx --quantizer alq --bits 8",
    "alq4": "--solver qgenx --quantizer alq --bits 4",
    "qsgd4": "--solver qgenx --quantizer qsgd --bits 4",
    "alq3": "--solver qgenx --quantizer alq --bits 3",
}


def main():
    args = gan_arguments(__doc__, "gan_exchanges")
    iters, seeds = (6, 2) if args.quick else (300, 2)
    if not (args.reuse and os.path.exists(os.path.join(args.out, "summary.json"))):
        ensure_classifier(args)
        command = [args.saddle, "compare", "--game", "wgan-gp", "--seeds", str(seeds), "--iters",
                   str(iters), "--out", args.out, "--overwrite", "--log-level", "error",
                   "--with", "%s --classifier %s" % (args.size, args.classifier)]
        for name, flags in ROWS.items():
            command += ["--row", "%s: %s" % (name, flags)]
        run_saddle(command, 2)

    summary, curves = read_compare(args.out, "fid")
    results = []
    print("WGAN-GP, qgenx on %d ranks, %d iterations, %d seeds: FID at the end, median [min, max]"
          % (summary["ranks"], iters, seeds))
    print("%-6s %26s %14s %9s" % ("row", "FID", "bytes (all)", "diverged"))
    for row in summary["rows"]:
        fids = final_values(row, "fid")
        finished = [f for f in fids if f is not None]
        results.append({"row": row["name"], "flags": " ".join(row["flags"]), "fids": fids,
                        "diverged": row["diverged"], "bytes_sent": row["bytes_sent"]["median"],
                        "seconds": row["seconds"]["median"],
                        "curves": curves.get(row["name"], {})})
        print("%-6s %26s %14s %6d/%d" % (
            row["name"], "%.1f [%.1f, %.1f]" % (statistics.median(finished), min(finished),
                                                max(finished)) if finished else "-",
            "-" if row["bytes_sent"]["median"] is None else "%.0f" % row["bytes_sent"]["median"],
            row["diverged"], seeds))
    settings = {"iters": iters, "seeds": seeds, "size": args.size, "ranks": summary["ranks"],
                "quick": args.quick}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"settings": settings, "results": results}, f, indent=1)
    if all(r["diverged"] == seeds for r in results):
        print("every exchange diverged on every seed")
        return 1
    plt = pyplot()
    if plt is None:
        return 0
    plot(results, settings, plt, os.path.join(args.out, "gan_exchanges.png"))
    return 0


def plot(results, settings, plt, path):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        runs = [run for run in r["curves"].values() if run]
        if not runs:
            continue
        for ax, x in zip(axes, (0, 1)):
            # Nothing is sent before the first iteration: no place on a log axis of bytes.
            xs, med, lo, hi = band([[p for p in run if x == 0 or p[0] > 0] for run in runs], x)
            line, = ax.plot(xs, med, "o-", label=r["row"])
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("bytes sent by all ranks")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_ylabel("FID (lower is better)")
        ax.legend(fontsize=8)
    fig.suptitle("WGAN-GP, qgenx on %d ranks, %d seeds: median and range" % (
        settings["ranks"], settings["seeds"]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print("figure: %s" % path)


if __name__ == "__main__":
    sys.exit(main())
