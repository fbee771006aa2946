"""What the experiment scripts share: launching saddle on K ranks, reading a comparison, the log-log slope fit."""
import json
import math
import os
import statistics
import subprocess
import sys


def run_saddle(command, ranks):
    """Runs a saddle command line on `ranks` ranks (mpirun beyond one), one thread each."""
    if ranks > 1:
        command = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none"] + (
            ["--allow-run-as-root"] if os.geteuid() == 0 else []) + command
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def slope(points):
    """Least-squares slope of log y against log x."""
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys)) /
            sum((x - mx) ** 2 for x in xs))


def read_compare(out, metric):
    """A `saddle compare` folder: its summary.json, and each row's curves of `metric` per seed,
    {row: {"seed": [[iteration, bytes_sent, value], ...]}} from compare.jsonl."""
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    curves = {}
    with open(os.path.join(out, "compare.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if metric in r:
                curves.setdefault(r["row"], {}).setdefault(str(r["seed"]), []).append(
                    [r["iter"], r["bytes_sent"], r[metric]])
    return summary, curves


def final_values(row, metric):
    """Each seed's final `metric` in a compare summary row (None where the seed diverged)."""
    return [None if s["diverged"] else s["final"].get(metric) for s in row["seeds"]]


FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
SKIPPED = 77  # the exit code the test suite reads as "skipped"


def require_fashion_mnist():
    """Exits with SKIPPED, saying why, when the Fashion-MNIST files the GAN runs train on are absent."""
    if not os.path.exists(os.path.join(FASHION_MNIST, "train-images-idx3-ubyte.gz")):
        print("skipped: Fashion-MNIST is not installed in %s (apt install dataset-fashion-mnist)"
              % FASHION_MNIST)
        sys.exit(SKIPPED)


def pyplot():
    """matplotlib's pyplot drawing to files, or None (saying so) where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("no figure: matplotlib is not installed (apt-get install python3-matplotlib)")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def band(runs, x=0, y=-1):
    """The seeds' curves (lists of points whose first field is the iteration) as one band: at
    each iteration any seed recorded, the median of the points' field x, and the median, min and
    max of their field y."""
    xs, med, lo, hi = [], [], [], []
    for i in sorted({p[0] for run in runs for p in run}):
        at = [p for run in runs for p in run if p[0] == i]
        values = [p[y] for p in at]
        xs.append(statistics.median(p[x] for p in at))
        med.append(statistics.median(values))
        lo.append(min(values))
        hi.append(max(values))
    return xs, med, lo, hi
