#!/usr/bin/env python3
"""Issue 9: WGAN-GP's step rules over several seeds, one figure from `saddle compare` folders.

Reads the comparisons given (each a `saddle compare --out` folder) and draws FID against
iterations for every row and seed in one figure: one colour per row, one line per seed, a cross
where a seed diverged. Prints each row's final FID per seed. The comparisons behind
docs/wgan_steps_seeds.png (2 ranks, 4-bit ALQ, 16 filters, 3000 iterations; commands in
experiments/README.md):

  python3 experiments/wgan_steps.py runs/wgan-steps-3000 runs/wgan-steps-3000-seeds \\
      runs/wgan-steps-3000-seeds34 runs/wgan-steps-3000-auto2 runs/wgan-steps-3000-auto2-s2 \\
      --label 'default=auto before (1/sqrt(t) floor)' --skip const-0.02 \\
      --out docs/wgan_steps_seeds.png
"""
import argparse
import json
import os
import sys

from common import pyplot, read_compare


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="saddle compare output folders")
    parser.add_argument("--out", required=True, help="the figure (PNG)")
    parser.add_argument("--label", action="append", default=[], metavar="ROW=LABEL",
                        help="draw and print row ROW as LABEL")
    parser.add_argument("--skip", action="append", default=[], metavar="ROW",
                        help="leave row ROW out")
    args = parser.parse_args()
    labels = {}
    for item in args.label:
        if "=" not in item:
            sys.exit("--label %s: expected ROW=LABEL" % item)
        row, label = item.split("=", 1)
        labels[row] = label
    rows = {}  # row -> seed -> (curve, diverged at)
    for folder in args.folders:
        if not os.path.exists(os.path.join(folder, "summary.json")):
            sys.exit("%s: not a saddle compare folder (no summary.json)" % folder)
        summary, curves = read_compare(folder, "fid")
        for row in summary["rows"]:
            if row["name"] in args.skip:
                continue
            for seed in row["seeds"]:
                s = str(seed["seed"])
                curve = curves.get(row["name"], {}).get(s, [])
                name = labels.get(row["name"], row["name"])
                diverged = seed.get("diverged_at") if seed["diverged"] else None
                rows.setdefault(name, {})[s] = (curve, diverged)
    for name, seeds in rows.items():
        finals = []
        for s, (curve, diverged) in sorted(seeds.items()):
            if diverged is not None:
                finals.append("seed %s diverged at %s" % (s, diverged))
            elif curve:
                finals.append("seed %s %.1f" % (s, curve[-1][2]))
        print("%-20s %s" % (name, ", ".join(finals)))
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, seeds) in enumerate(rows.items()):
        colour = colours[i % len(colours)]
        for j, (s, (curve, diverged)) in enumerate(sorted(seeds.items())):
            xs = [p[0] for p in curve]
            ys = [p[2] for p in curve]
            ax.plot(xs, ys, color=colour, alpha=0.8, label=name if j == 0 else None)
            if diverged is not None:
                ax.plot([diverged], [ys[-1] if ys else 600], "x", color=colour, markersize=9)
    ax.set_xlabel("iteration")
    ax.set_ylabel("FID (1000 images, lower is better)")
    ax.set_yscale("log")
    ax.set_title("WGAN-GP, 2 ranks, 4-bit ALQ, 16 filters: one line per seed, x = diverged")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
