"""What the experiment scripts share: launching saddle on K ranks, reading a comparison, the log-log slope fit."""
import argparse
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


# The WGAN-GP experiments' two sizes: the test suite's, and the one committed (it fits 2 cores).
GAN_QUICK = "--filters 4 --latent 8 --batch 8 --eval-every 3 --fid-samples 64"
GAN_FULL = "--filters 16 --eval-every 100 --fid-samples 1000"


def gan_arguments(doc, name):
    """The WGAN-GP experiments' command line: --quick, --saddle, --out (runs/NAME), --classifier,
    --reuse. Adds args.size (the game flags of the chosen size) and args.classifier (the file
    given, else runs/fmnist_classifier.pt, or a one-epoch one in OUT with --quick)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's size")
    parser.add_argument("--saddle", default=os.path.join(root, "build", "cli", "saddle"))
    parser.add_argument("--out", default=os.path.join(root, "runs", name))
    parser.add_argument("--classifier",
                        help="FID classifier file (default: runs/fmnist_classifier.pt, or a "
                        "one-epoch one in OUT with --quick; trained when missing)")
    parser.add_argument("--reuse", action="store_true",
                        help="read the comparisons already in OUT instead of running them again")
    args = parser.parse_args()
    args.size = GAN_QUICK if args.quick else GAN_FULL
    if not args.classifier:
        args.classifier = (os.path.join(args.out, "classifier.pt") if args.quick
                           else os.path.join(root, "runs", "fmnist_classifier.pt"))
    require_fashion_mnist()
    os.makedirs(args.out, exist_ok=True)
    return args


def ensure_classifier(args):
    """Trains the FID classifier into args.classifier when it is missing (1 epoch with --quick)."""
    if os.path.exists(args.classifier):
        return
    epochs = "1" if args.quick else "3"
    print("training the FID classifier (%s epoch(s)) into %s" % (epochs, args.classifier))
    subprocess.run([args.saddle, "classifier", "--epochs", epochs, "--out", args.classifier,
                    "--log-level", "warn"], check=True)
