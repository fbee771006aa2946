#!/usr/bin/env python3
"""Issue 11: the exchange on an emulated cluster, and traffic against the number of ranks.

Cluster runs: scripts/cluster.sh makes H network namespaces ("hosts", one rank each) joined
through a bridge, each host's link limited by tc to a rate, and runs `saddle solve` under mpirun
over TCP on those links, so every byte of the exchange crosses a rate-limited link. For each
(game, hosts, rate, exchange, collective) it reads rank 0's summary.json: seconds per iteration,
split by the ledger's phases (compute, encode, communicate, decode), and the bytes each rank
received per exchange. The H100 projection replaces the compute phase by the iteration time
measured on one H100 (issue 8: WGAN-GP 64 filters, 21.6 ms) and keeps the measured exchange.

Traffic runs (no namespaces): K = 2..16 ranks on this machine (oversubscribed), the separable
game, 4-bit ALQ, both collectives: bytes received per rank and exchange against K.

  sudo python3 experiments/cluster.py               # everything (about 25 minutes on 2 cores)
  sudo python3 experiments/cluster.py --quick       # the test suite's size: 2 hosts, a small game,
                                                    # and --overlap 4 giving the unsplit run's iterates
  python3 experiments/cluster.py --traffic-only     # only the traffic against K (no root needed)
  sudo python3 experiments/cluster.py --threshold   # only auto's threshold: 8 hosts, both collectives
  sudo python3 experiments/cluster.py --overlap     # only the overlapped all-gather: WGAN-GP, 4 hosts

Writes OUT/results.json and, where matplotlib is installed, OUT/cluster.png and OUT/traffic.png.
Exits 77 (skipped) in --quick mode where namespaces cannot be made (not root, no iproute2).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from common import SKIPPED, pyplot, require_fashion_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "scripts", "cluster.sh")
H100_WGAN_ITERATION_S = 0.0216  # issue 8: WGAN-GP, 64 filters, one H100, fp32

EXCHANGES = {
    "fp32": "--quantizer none",
    "bf16": "--quantizer bf16",
    "alq8": "--quantizer alq --bits 8",
    "alq4": "--quantizer alq --bits 4",
}


def solve_args(game, iters, exchange, collective, out, overlap="off"):
    args = ["solve", "--solver", "qgenx", "--iters", str(iters), "--out", out, "--overwrite",
            "--no-progress", "--log-level", "error", "--collective", collective,
            "--checkpoint-every", "0", "--overlap", overlap] + EXCHANGES[exchange].split()
    if game == "wgan-gp":
        return args + ["--game", "wgan-gp", "--filters", "64", "--eval-every", "0"]
    return args + ["--game", "separable"] + (["--dim", str(game)] if isinstance(game, int) else [])


# OpenMPI's TCP transport sends a message above its eager limit (64 KiB) only after a handshake
# with the receiver; with the exchange cut into pieces those handshakes stalled the link. Raising
# the limit above a piece's size (environment variables OpenMPI reads, passed on to the ranks)
# sends every piece at once.
EAGER_2MB = {"OMPI_MCA_btl_tcp_eager_limit": "2097152", "OMPI_MCA_btl_tcp_max_send_size": "2097152"}


def cluster_run(saddle, out, game, hosts, rate, exchange, collective, iters, reuse=False,
                overlap="off", eager=False):
    run_dir = os.path.join(out, "runs", "%s_h%d_%s_%s_%s%s%s" % (
        game, hosts, rate, exchange, collective, "" if overlap == "off" else "_overlap-" + overlap,
        "_eager2m" if eager else ""))
    command = ["bash", CLUSTER, "--hosts", str(hosts), "--rate", rate, "--", saddle] + solve_args(
        game, iters, exchange, collective, run_dir, overlap)
    if not (reuse and os.path.exists(os.path.join(run_dir, "summary.json"))):
        env = dict(os.environ, **EAGER_2MB) if eager else None
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env)
        if done.returncode != 0:
            sys.exit("cluster run failed (%s): %s" % (" ".join(command), done.stderr.strip()[-2000:]))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    n = summary["iterations"]
    phases = {k: v / n for k, v in summary["seconds"].items()}
    phases.setdefault("wait", 0.0)  # runs before the ledger booked waiting apart
    # The exchange's own cost: encoding, moving the bytes, decoding; waiting for the other ranks
    # to arrive (four ranks time-share two cores here) is booked apart.
    exchange_s = phases["encode"] + phases["communicate"] + phases["decode"]
    row = {"game": "wgan-gp" if game == "wgan-gp" else "separable", "hosts": hosts, "rate": rate,
           "exchange": exchange, "collective": summary["collective"], "iterations": n,
           "seconds_per_iteration": summary["wall_seconds"] / n, "phases": phases,
           # The iteration's own time: the run's, less its records (metrics, the last iteration's
           # evaluation and sample images; booked apart since 2026-11-28).
           "iteration_seconds": summary["wall_seconds"] / n - phases.get("records", 0.0),
           "exchange_seconds_per_iteration": exchange_s,
           "bytes_received_per_rank_exchange": summary["bytes_received_per_rank_exchange"],
           "bits_per_coordinate": summary["bits_per_coordinate"],
           "overlap_pieces": summary.get("overlap_pieces", 1),
           "distance_sq": summary.get("distance_sq"),
           "ranks_agree": summary["ranks_agree"]}
    if game == "wgan-gp":
        row["h100_projection_seconds"] = H100_WGAN_ITERATION_S + phases["communicate"]
    return row


def traffic_run(saddle, out, ranks, collective, dim):
    run_dir = os.path.join(out, "traffic", "k%d_%s" % (ranks, collective))
    command = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none"] + (
        ["--allow-run-as-root"] if os.geteuid() == 0 else []) + [saddle] + solve_args(
        dim, 3, "alq4", collective, run_dir)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["ranks_agree"], run_dir
    return {"ranks": ranks, "collective": collective, "dim": 2 * dim,
            "bytes_received_per_rank_exchange": summary["bytes_received_per_rank_exchange"]}


def ratio(rows, pick, numerator, denominator, field):
    a = [r for r in rows if pick(r) and r["exchange"] == numerator]
    b = [r for r in rows if pick(r) and r["exchange"] == denominator]
    return a[0][field] / b[0][field] if a and b else None


def require_cluster(skip):
    """Exits, saying why, where namespaces cannot be made: as skipped (77) with `skip`."""
    check = subprocess.run(["bash", CLUSTER, "--check"], capture_output=True, text=True)
    if check.returncode != 0:
        print((check.stderr or check.stdout).strip())
        if skip:
            sys.exit(SKIPPED)
        sys.exit("cannot emulate a cluster here (run as root)")


def threshold(args):
    """--collective auto takes two-phase from 8 ranks (kTwoPhaseFromRanks): the two collectives
    on 8 emulated hosts, the separable game (10^6 coordinates), 4-bit ALQ, at 100 Mbit/s and
    1 Gbit/s. Writes OUT/threshold.json."""
    require_cluster(skip=False)
    rows = []
    for rate in ("100mbit", "1gbit"):
        for collective in ("allgather", "two-phase"):
            print("separable, 8 hosts, %s, alq4, %s" % (rate, collective), flush=True)
            row = cluster_run(args.saddle, args.out, "separable", 8, rate, "alq4", collective, 10,
                              args.reuse)
            if not row["ranks_agree"]:
                sys.exit("ranks disagree in %s" % row)
            rows.append(row)
    print("\n%7s %9s | %9s %9s %9s | %9s" % ("rate", "collect", "s/iter", "exchange", "wait", "recv/rank"))
    for r in rows:
        print("%7s %9s | %9.3f %9.3f %9.3f | %8.2fM" % (
            r["rate"], r["collective"], r["seconds_per_iteration"], r["exchange_seconds_per_iteration"],
            r["phases"]["wait"], r["bytes_received_per_rank_exchange"] / 1e6))
    path = os.path.join(args.out, "threshold.json")
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
    print("wrote", path)


def overlap(args):
    """The overlapped all-gather (--overlap auto: pieces of whole buckets in a pipeline) against
    the unsplit one (--overlap off), each with OpenMPI's default TCP eager limit and with 2 MiB:
    WGAN-GP, 4 hosts, 100 Mbit/s and 1 Gbit/s, fp32 and 4-bit ALQ. Writes OUT/overlap.json."""
    require_cluster(skip=False)
    require_fashion_mnist()
    rows = []
    for rate in ("100mbit", "1gbit"):
        for exchange in ("fp32", "alq4"):
            for eager in (False, True):
                for mode in ("off", "auto"):
                    print("wgan-gp, 4 hosts, %s, %s, overlap %s%s" % (
                        rate, exchange, mode, ", eager limit 2 MiB" if eager else ""), flush=True)
                    row = cluster_run(args.saddle, args.out, "wgan-gp", 4, rate, exchange,
                                      "allgather", 6, args.reuse, overlap=mode, eager=eager)
                    if not row["ranks_agree"]:
                        sys.exit("ranks disagree in %s" % row)
                    row["overlap"] = mode
                    row["eager_limit"] = "2MiB" if eager else "default"
                    rows.append(row)
    print("\n%7s %5s %7s %7s %6s | %8s %8s %8s %8s %8s %8s" % (
        "rate", "exch", "eager", "overlap", "pieces", "s/iter", "compute", "exchange", "encode",
        "comm", "decode"))
    for r in rows:
        p = r["phases"]
        print("%7s %5s %7s %7s %6d | %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f" % (
            r["rate"], r["exchange"], r["eager_limit"], r["overlap"], r["overlap_pieces"],
            r["seconds_per_iteration"], p["compute"], r["exchange_seconds_per_iteration"], p["encode"],
            p["communicate"], p["decode"]))
    verdicts = {}
    for rate in ("100mbit", "1gbit"):
        for eager in ("default", "2MiB"):
            for mode in ("off", "auto"):
                pick = lambda r: r["rate"] == rate and r["overlap"] == mode and r["eager_limit"] == eager
                key = "wgan_%s_eager-%s_overlap-%s" % (rate, eager, mode)
                verdicts[key + "_exchange_speedup"] = ratio(
                    rows, pick, "fp32", "alq4", "exchange_seconds_per_iteration")
                verdicts[key + "_iteration_speedup"] = ratio(
                    rows, pick, "fp32", "alq4", "seconds_per_iteration")
    for k, v in verdicts.items():
        if v is not None:
            print("%s: %.2fx" % (k, v))
    path = os.path.join(args.out, "overlap.json")
    with open(path, "w") as f:
        json.dump({"runs": rows, "verdicts": verdicts}, f, indent=1)
    print("wrote", path)


def targets(args):
    """The issue's two targets, measured the way they are stated, `--repeat` times alternating
    fp32 and 4-bit ALQ so that both see the same machine: 4 hosts, WGAN-GP (64 filters), the
    overlapped all-gather (--overlap auto), 6 iterations a run; at 1 Gbit/s the exchange phase
    (encode + communicate + decode), at 100 Mbit/s the whole iteration (the run's time less its
    records, and, for comparison, the run's time with them). Writes OUT/targets.json with every
    run, the medians and the ratios of the medians."""
    require_cluster(skip=False)
    require_fashion_mnist()
    rows = []
    for rep in range(args.repeat):
        for rate in ("1gbit", "100mbit"):
            for exchange in ("fp32", "alq4"):
                print("targets, run %d: wgan-gp, 4 hosts, %s, %s, overlap auto" % (rep + 1, rate, exchange),
                      flush=True)
                row = cluster_run(args.saddle, os.path.join(args.out, "rep%d" % rep), "wgan-gp", 4, rate,
                                  exchange, "allgather", 6, args.reuse, overlap="auto")
                if not row["ranks_agree"]:
                    sys.exit("ranks disagree in %s" % row)
                row["repeat"] = rep
                rows.append(row)
    median = statistics.median

    def of(rate, exchange, field):
        return [r[field] for r in rows if r["rate"] == rate and r["exchange"] == exchange]

    print("\n%7s %5s | %8s %8s %8s %8s %8s %8s %8s %8s" % (
        "rate", "exch", "s/iter", "records", "compute", "wait", "exchange", "encode", "comm", "decode"))
    for r in rows:
        p = r["phases"]
        print("%7s %5s | %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f" % (
            r["rate"], r["exchange"], r["iteration_seconds"], p.get("records", 0.0), p["compute"],
            p["wait"], r["exchange_seconds_per_iteration"], p["encode"], p["communicate"], p["decode"]))
    verdicts = {}
    for rate, field, target in (("1gbit", "exchange_seconds_per_iteration", 5.0),
                                ("100mbit", "iteration_seconds", 2.5),
                                ("100mbit", "seconds_per_iteration", None)):
        fp32, alq4 = of(rate, "fp32", field), of(rate, "alq4", field)
        per_run = [a / b for a, b in zip(fp32, alq4)]
        verdicts["%s_%s" % (rate, field)] = {
            "fp32_median": median(fp32), "alq4_median": median(alq4),
            "speedup_of_medians": median(fp32) / median(alq4), "speedup_per_run": per_run,
            "target": target,
            "met": None if target is None else median(fp32) / median(alq4) >= target}
        print("%s, %s: fp32 %.3f s, 4-bit ALQ %.3f s (medians of %d): %.2fx (per run: %s%s)" % (
            rate, field, median(fp32), median(alq4), len(fp32), median(fp32) / median(alq4),
            ", ".join("%.2f" % x for x in per_run), "" if target is None else "; target %.1fx" % target))
    path = os.path.join(args.out, "targets.json")
    with open(path, "w") as f:
        json.dump({"runs": rows, "verdicts": verdicts}, f, indent=1)
    print("wrote", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the test suite's size")
    parser.add_argument("--traffic-only", action="store_true", help="only the traffic against K")
    parser.add_argument("--saddle", default=os.path.join(ROOT, "build", "cli", "saddle"))
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "cluster"))
    parser.add_argument("--reuse", action="store_true", help="reuse the runs already in OUT/runs")
    parser.add_argument("--threshold", action="store_true",
                        help="only --collective auto's threshold: 8 hosts, both collectives")
    parser.add_argument("--overlap", action="store_true",
                        help="only the overlapped all-gather against the unsplit one (WGAN-GP, 4 hosts)")
    parser.add_argument("--targets", action="store_true",
                        help="only the issue's two targets (WGAN-GP, 4 hosts, overlap auto), --repeat times")
    parser.add_argument("--repeat", type=int, default=3, help="--targets: runs of each configuration")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1, got %d" % args.repeat)
    os.makedirs(args.out, exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    if args.threshold:
        return threshold(args)
    if args.overlap:
        return overlap(args)
    if args.targets:
        return targets(args)

    cluster_rows = []
    if not args.traffic_only:
        require_cluster(skip=args.quick)
        if args.quick:
            for exchange in ("fp32", "alq4"):
                for collective in ("allgather", "two-phase"):
                    cluster_rows.append(cluster_run(args.saddle, args.out, 20000, 2, "1gbit",
                                                    exchange, collective, 4))
            # The overlapped all-gather over TCP between the hosts: the unsplit run's iterates.
            split = cluster_run(args.saddle, args.out, 20000, 2, "1gbit", "alq4", "allgather", 4,
                                overlap="4")
            whole = [r for r in cluster_rows if r["exchange"] == "alq4" and r["collective"] == "allgather"]
            if split["overlap_pieces"] != 4 or split["distance_sq"] != whole[0]["distance_sq"]:
                sys.exit("--overlap 4 changed the run: distance_sq %r against %r unsplit (%d pieces)" % (
                    split["distance_sq"], whole[0]["distance_sq"], split["overlap_pieces"]))
            cluster_rows.append(split)
        else:
            for hosts in (2, 4):
                for rate in ("100mbit", "1gbit", "10gbit"):
                    for exchange in EXCHANGES:
                        for collective in (("allgather", "two-phase") if hosts == 4 else ("allgather",)):
                            print("separable, %d hosts, %s, %s, %s" % (hosts, rate, exchange, collective), flush=True)
                            cluster_rows.append(cluster_run(args.saddle, args.out, "separable", hosts, rate,
                                                            exchange, collective, 10, args.reuse))
            require_fashion_mnist()
            for rate in ("100mbit", "1gbit"):
                for exchange in ("fp32", "alq4"):
                    for collective in ("allgather", "two-phase"):
                        print("wgan-gp, 4 hosts, %s, %s, %s" % (rate, exchange, collective), flush=True)
                        cluster_rows.append(cluster_run(args.saddle, args.out, "wgan-gp", 4, rate,
                                                        exchange, collective, 6, args.reuse))
        for r in cluster_rows:
            if not r["ranks_agree"]:
                sys.exit("ranks disagree in %s" % r)

    traffic = []
    sizes = (2, 4) if args.quick else (2, 4, 8, 12, 16)
    for ranks in sizes:
        for collective in ("allgather", "two-phase"):
            traffic.append(traffic_run(args.saddle, args.out, ranks, collective, 2000 if args.quick else 50000))

    print("\n%-9s %5s %7s %5s %9s | %9s %9s %9s %9s %9s | %9s %8s" % (
        "game", "hosts", "rate", "exch", "collect", "s/iter", "compute", "exchange", "comm", "wait",
        "recv/rank", "H100 est"))
    for r in cluster_rows:
        p = r["phases"]
        print("%-9s %5d %7s %5s %9s | %9.3f %9.3f %9.3f %9.3f %9.3f | %8.2fM %8s" % (
            r["game"], r["hosts"], r["rate"], r["exchange"], r["collective"], r["seconds_per_iteration"],
            p["compute"], r["exchange_seconds_per_iteration"], p["communicate"], p["wait"],
            r["bytes_received_per_rank_exchange"] / 1e6,
            "%.3f" % r["h100_projection_seconds"] if "h100_projection_seconds" in r else ""))
    print("\ntraffic per rank and exchange (4-bit ALQ, %d coordinates):" % traffic[0]["dim"])
    for ranks in sizes:
        row = {t["collective"]: t["bytes_received_per_rank_exchange"] for t in traffic if t["ranks"] == ranks}
        print("  K = %2d: allgather %9.0f B, two-phase %9.0f B" % (ranks, row["allgather"], row["two-phase"]))

    verdicts = {}
    for rate in ("100mbit", "1gbit"):
        for collective in ("allgather", "two-phase"):
            pick = lambda r: r["game"] == "wgan-gp" and r["rate"] == rate and r["collective"] == collective
            verdicts["wgan_%s_%s_exchange_speedup" % (rate, collective)] = ratio(
                cluster_rows, pick, "fp32", "alq4", "exchange_seconds_per_iteration")
            verdicts["wgan_%s_%s_iteration_speedup" % (rate, collective)] = ratio(
                cluster_rows, pick, "fp32", "alq4", "seconds_per_iteration")
    verdicts = {k: v for k, v in verdicts.items() if v is not None}
    for k, v in verdicts.items():
        print("%s: %.2fx" % (k, v))

    with open(results_path, "w") as f:
        json.dump({"cluster": cluster_rows, "traffic": traffic, "verdicts": verdicts}, f, indent=1)
    print("wrote", results_path)

    plt = pyplot()
    if plt is None:
        return
    if cluster_rows:
        # One panel per (game, hosts), linear axes: seconds per iteration split by phase.
        groups = []
        for r in cluster_rows:
            if (r["game"], r["hosts"]) not in groups:
                groups.append((r["game"], r["hosts"]))
        fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4.8), squeeze=False)
        colors = {"compute": "#999999", "wait": "#dddddd", "encode": "#4c72b0",
                  "communicate": "#dd8452", "decode": "#55a868"}
        for ax, (game, hosts) in zip(axes[0], groups):
            rows = [r for r in cluster_rows if r["game"] == game and r["hosts"] == hosts]
            labels = []
            for i, r in enumerate(rows):
                labels.append("%s %s %s" % (r["rate"], r["exchange"],
                                            "2p" if r["collective"] == "two-phase" else "ag"))
                bottom = 0.0
                for phase in ("compute", "wait", "encode", "communicate", "decode"):
                    ax.bar(i, r["phases"][phase], bottom=bottom, color=colors[phase],
                           label=phase if i == 0 else None)
                    bottom += r["phases"][phase]
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=90, fontsize=7)
            ax.set_title("%s, %d hosts" % (game, hosts))
            ax.set_ylabel("seconds per iteration (rank 0's ledger)")
        axes[0][0].legend()
        fig.suptitle("qgenx on an emulated cluster (tc-limited links, one rank per host; ag: all-gather, 2p: two-phase)")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "cluster.png"), dpi=110)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for collective in ("allgather", "two-phase"):
        pts = [(t["ranks"], t["bytes_received_per_rank_exchange"] / 1e6) for t in traffic
               if t["collective"] == collective]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=collective)
    ax.set_xlabel("ranks K")
    ax.set_ylabel("MB received per rank and exchange")
    ax.set_title("4-bit ALQ, %d coordinates" % traffic[0]["dim"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "traffic.png"), dpi=120)
    print("wrote", os.path.join(args.out, "traffic.png"))


if __name__ == "__main__":
    main()
