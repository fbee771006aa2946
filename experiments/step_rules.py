#!/usr/bin/env python3
"""Issue 9's step-rule targets on the bilinear game, from every starting step gamma_0.

For each setting (ranks x exchange x dim x noise) and each gamma_0 in {1e-3, ..., 100} and seed,
runs `saddle solve --game bilinear --solver qgenx` with its default step rule (auto) and records
the first iteration at which distance_sq falls to the target, the largest distance_sq on the way
(relative to the start) and the final distance_sq. Prints one table row per setting (the worst
case over gamma_0 and seeds), writes every run's numbers to OUT/results.json and draws
OUT/step_rules.png (distance_sq against iterations, one line per gamma_0, first seed). Then,
under absolute noise, fits the log-log slope of the averaged iterate's distance against T.

  python3 experiments/step_rules.py                 # the full grid (about 10 minutes on 2 cores)
  python3 experiments/step_rules.py --quick         # one seed, three gamma_0, 1 rank: a smoke test
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

from common import pyplot, run_saddle, slope

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LRS = [1e-3, 1e-2, 1e-1, 1, 10, 100]
# (name, ranks, exchange flags, noise flags, iterations, target distance_sq)
SETTINGS = [
    ("1 rank, fp32", 1, [], [], 5000, 1e-8),
    ("4 ranks, 4-bit ALQ", 4, ["--quantizer", "alq", "--bits", "4"], [], 5000, 1e-8),
    ("1 rank, fp32, relative noise 0.2", 1, [], ["--noise", "relative", "--noise-scale", "0.2"],
     20000, 1e-6),
    ("4 ranks, 4-bit ALQ, relative noise 0.2", 4, ["--quantizer", "alq", "--bits", "4"],
     ["--noise", "relative", "--noise-scale", "0.2"], 20000, 1e-6),
]


def run_one(saddle, out, ranks, dim, lr, seed, exchange, noise, iters):
    command = [saddle, "solve", "--game", "bilinear", "--solver", "qgenx", "--dim", str(dim),
               "--condition", "5", "--lr", repr(lr), "--seed", str(seed), "--iters", str(iters),
               "--log-every", str(max(1, iters // 5000)), "--no-progress", "--log-level", "warn",
               "--out", out, "--overwrite"] + exchange + noise
    run_saddle(command, ranks)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]



def absolute_noise(saddle, out, dims, seeds, iters):
    """Absolute (additive) noise: the averaged iterate's distance to the equilibrium against T,
    fitted on a log-log scale over T >= iters / 20 (theory: slope -1/2 for the distance)."""
    rows = []
    for dim in dims:
        for seed in seeds:
            command = [saddle, "solve", "--game", "bilinear", "--solver", "qgenx", "--dim",
                       str(dim), "--noise", "absolute", "--noise-scale", "0.1", "--averaging",
                       "uniform", "--seed", str(seed), "--iters", str(iters), "--log-every",
                       str(iters // 200), "--no-progress", "--log-level", "warn", "--out", out,
                       "--overwrite"]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
            with open(os.path.join(out, "metrics.jsonl")) as f:
                records = [json.loads(line) for line in f]
            tail = [(r["iter"], math.sqrt(r["distance_sq_avg"])) for r in records
                    if r["iter"] >= iters // 20]
            last = [(r["iter"], math.sqrt(r["distance_sq"])) for r in records
                    if r["iter"] >= iters // 20]
            rows.append({"dim": dim, "seed": seed, "slope_average": slope(tail),
                         "slope_last": slope(last), "final_distance_average": tail[-1][1],
                         "final_distance_last": last[-1][1]})
            print(f"absolute noise 0.1, dim {dim}, seed {seed}: averaged iterate's distance "
                  f"slope {rows[-1]['slope_average']:.3f} (last iterate "
                  f"{rows[-1]['slope_last']:.3f}), at T={iters}: "
                  f"{tail[-1][1]:.3g} (last iterate {last[-1][1]:.3g})", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saddle", default=os.path.join(ROOT, "build", "cli", "saddle"))
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "step_rules"))
    parser.add_argument("--dims", default="10,128")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=["all", "grid", "absolute"], default="all",
                        help="the grid of gamma_0, the absolute-noise slope, or both")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw OUT/step_rules.png from OUT/results.json")
    args = parser.parse_args()
    if args.replot:
        with open(os.path.join(args.out, "results.json")) as f:
            results = json.load(f)
        names = []
        for r in results:
            if r["setting"] not in names:
                names.append(r["setting"])
        plot(results, [s for s in SETTINGS if s[0] in names], sorted({r["dim"] for r in results}),
             args.out)
        return
    if not os.path.exists(args.saddle):
        sys.exit(f"step_rules.py: no saddle binary at {args.saddle} (build first or pass --saddle)")
    dims = [int(d) for d in args.dims.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs, settings = LRS, SETTINGS
    if args.quick:
        dims, seeds, lrs, settings = [10], [0], [1e-3, 1, 100], SETTINGS[:1]
    os.makedirs(args.out, exist_ok=True)
    scratch = os.path.join(args.out, "scratch")

    results = []
    if args.part == "absolute":
        settings = []
    if settings:
        print(f"{'setting':<42} {'dim':>4} {'worst hit':>10} {'max ratio':>10} {'worst final':>12}")
    for name, ranks, exchange, noise, iters, target in settings:
        for dim in dims:
            rows = []
            for lr in lrs:
                for seed in seeds:
                    records = run_one(args.saddle, scratch, ranks, dim, lr, seed, exchange, noise,
                                      iters)
                    d = [(r["iter"], r["distance_sq"]) for r in records]
                    hit = next((it for it, v in d if v <= target), None)
                    rows.append({"setting": name, "dim": dim, "lr": lr, "seed": seed,
                                 "iterations": iters, "target": target, "hit": hit,
                                 "max_ratio": max(v for _, v in d) / d[0][1], "final": d[-1][1],
                                 "curve": d[::max(1, len(d) // 500)] if seed == seeds[0] else None})
            results += rows
            hits = [r["hit"] for r in rows]
            worst = "never" if None in hits else str(max(hits))
            print(f"{name:<42} {dim:>4} {worst:>10} {max(r['max_ratio'] for r in rows):>10.3g} "
                  f"{max(r['final'] for r in rows):>12.3g}  (target {target:g} "
                  f"within {iters})", flush=True)
    if args.part != "grid":
        absolute = absolute_noise(args.saddle, scratch, dims, seeds,
                                  2000 if args.quick else 20000)
        slopes = sorted(r["slope_average"] for r in absolute)
        print(f"absolute noise: median slope of the averaged iterate's distance "
              f"{slopes[len(slopes) // 2]:.3f} (theory: -0.5 or steeper)")
        with open(os.path.join(args.out, "absolute_noise.json"), "w") as f:
            json.dump(absolute, f)
    shutil.rmtree(scratch, ignore_errors=True)
    if not settings:
        return
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f)
    plot(results, settings, dims, args.out)


def plot(results, settings, dims, out):
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(len(settings), len(dims), figsize=(4.6 * len(dims),
                                                                 3.0 * len(settings)),
                             squeeze=False)
    panels = [(s[0], dim) for s in settings for dim in dims]
    for ax, (name, dim) in zip(axes.flat, panels):
        for r in results:
            if r["setting"] == name and r["dim"] == dim and r["curve"]:
                it, v = zip(*r["curve"])
                ax.semilogy(it, [max(x, 1e-16) for x in v], label=f"γ0={r['lr']:g}")
        ax.axhline(next(s[5] for s in settings if s[0] == name), color="k", ls=":", lw=0.8)
        ax.set_title(f"{name}\ndim {dim}", fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel("distance_sq", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "step_rules.png"), dpi=110)
    print(f"wrote {out}/step_rules.png")


if __name__ == "__main__":
    main()
