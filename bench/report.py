#!/usr/bin/env python3
"""Turns bench.jsonl (one line per measurement) into the markdown report:
medians, ratios to dm-linear (and to dm-snapshot for the snapshot
configurations) paired by repeat, I/O amplification from the block-layer
counters, and the targets of issues 8 and 18 checked against the numbers."""
import argparse
import datetime
import json
import statistics
from collections import defaultdict

LABEL = {
    "raw": "raw virtio disk",
    "linear": "dm-linear",
    "cowfile_track": "cowfile, tracking only",
    "cowfile_snap": "cowfile, snapshot held (store on a 2nd disk)",
    "era": "dm-era (tracking peer)",
    "snapshot": "dm-snapshot persistent, 64 KiB chunks",
    "snapshot4k": "dm-snapshot persistent, 4 KiB chunks (LVM's default)",
    "thin": "dm-thin, after a snapshot",
    "linear_fs": "dm-linear, ext4 on it, fio on a file",
    "cowfile_snap_fs": "cowfile, snapshot held, store on that same ext4",
}
WORKLOADS = ["first_write_qd16", "rewrite_qd16", "randwrite_qd16", "randwrite_qd1", "seqwrite_64k",
             "mixed_70r_qd16"]
SNAPSHOTS = ("cowfile_snap", "thin", "snapshot4k")


def spread(values):
    values = sorted(values)
    return f"{values[0]:.2f} / **{statistics.median(values):.2f}** / {values[-1]:.2f}"


def base_of(config):
    """The dm-linear run to compare with: the one with the same layout."""
    return "linear_fs" if config.endswith("_fs") else "linear"


def paired_ratios(runs, config, base, workload):
    a = {r["repeat"]: r["iops"] for r in runs[(config, workload)]}
    b = {r["repeat"]: r["iops"] for r in runs[(base, workload)]}
    return [a[k] / b[k] for k in a if k in b and b[k]]


def store_per_copied(rs):
    """Store bytes taken per byte of origin data copied (records included)."""
    copied = sum(r.get("copied_bytes", 0) for r in rs)
    return sum(r.get("cow_bytes", 0) for r in rs) / copied if copied else None


def image_vs_origin(runs, origin_workload, image_workload, config="cowfile_snap"):
    o = {r["repeat"]: r["iops"] for r in runs.get((config, origin_workload), [])}
    return [r["iops"] / o[r["repeat"]] for r in runs.get((config, image_workload), [])
            if o.get(r["repeat"])]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl")
    ap.add_argument("--kernel", default="?")
    ap.add_argument("--machine", default="?")
    args = ap.parse_args()
    runs = defaultdict(list)
    backup = memory = agent = None
    for line in open(args.jsonl):
        rec = json.loads(line)
        if rec["config"] == "backup":
            backup = rec
        elif rec["config"] == "memory":
            memory = rec
        elif rec["config"] == "agent":
            agent = rec
        else:
            runs[(rec["config"], rec["workload"])].append(rec)
    configs = [c for c in LABEL if any(k[0] == c for k in runs)]
    repeats = max((r["repeat"] for v in runs.values() for r in v), default=0)

    print(f"# Benchmark run {datetime.date.today()}\n")
    if not repeats:
        print(f"Kernel {args.kernel}; {args.machine}; no I/O configurations (BENCH_CONFIGS=none): backup timings and in-core memory only.\n")
    else:
        print(f"Kernel {args.kernel}; {args.machine}; {repeats} interleaved repeats; 1 GiB origin on a "
              "virtio disk backed by a host file (cache=none); 64 KiB chunks for every target; "
              "fio libaio, direct I/O. Ratios are paired by repeat, shown min / **median** / max. "
              "Amplification counts are device I/Os per user I/O, summed over all three disks. "
              "The last two rows of each table write into a 320 MiB file on ext4 on the origin, and "
              "their ratio is to dm-linear with the same filesystem.\n")
    for w in WORKLOADS:
        if not any((c, w) in runs for c in configs):
            continue
        print(f"## {w}\n")
        print("| target | IOPS (median) | vs dm-linear | vs dm-snapshot 64K | vs dm-snapshot 4K | "
              "p50 µs | p99 µs | reads/io | writes/io | KiB written/io | flushes/io | "
              "COW bytes/byte | store bytes/byte copied |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in configs:
            rs = runs.get((c, w))
            if not rs:
                continue
            med = lambda k: statistics.median(r[k] for r in rs)
            base = base_of(c)
            vs_linear = spread(paired_ratios(runs, c, base, w)) if (base, w) in runs else "-"
            vs = [spread(paired_ratios(runs, c, peer, w))
                  if c in SNAPSHOTS and c != peer and (peer, w) in runs else "-"
                  for peer in ("snapshot", "snapshot4k")]
            per_copied = store_per_copied(rs)
            print(f"| {LABEL[c]} | {med('iops'):,.0f} | {vs_linear} | {vs[0]} | {vs[1]} | "
                  f"{med('p50_us'):.0f} | {med('p99_us'):.0f} | {med('reads_per_io'):.2f} | "
                  f"{med('writes_per_io'):.2f} | {med('kib_written_per_io'):.1f} | "
                  f"{med('flushes_per_io'):.3f} | {med('cow_bytes_per_byte'):.2f} | "
                  f"{f'{per_copied:.3f}' if per_copied else '-'} |")
        print()

    ratios = image_vs_origin(runs, "randread_origin", "randread_image")
    seq_ratios = image_vs_origin(runs, "seqread_origin", "seqread_image")
    readers = [c for c in configs if (c, "seqread_image") in runs]
    if readers:
        print("## Snapshot image reads\n")
        print("The snapshot read against its origin read the same way, after the writes above "
              "(their copies scattered through the COW space): 4 KiB random reads QD16, 1 MiB "
              "sequential reads QD4, and the device requests per 1 MiB image read.\n")
        print("| target | 4 KiB random, image vs origin | 1 MiB sequential, image vs origin | "
              "requests per 1 MiB image read |")
        print("|---|---|---|---|")
        for c in readers:
            rand = image_vs_origin(runs, "randread_origin", "randread_image", c)
            seq = image_vs_origin(runs, "seqread_origin", "seqread_image", c)
            per = statistics.median(r["reads_per_io"] for r in runs[(c, "seqread_image")])
            print(f"| {LABEL[c]} | {spread(rand) if rand else '-'} | {spread(seq) if seq else '-'} | "
                  f"{per:.1f} |")
        print()

    if backup:
        print("## snapmgr backup\n")
        print("| what | seconds | bytes copied |")
        print("|---|---|---|")
        print(f"| full backup | {backup['full_s']:.2f} | {backup['full_bytes']:,} |")
        print(f"| dd of the same image | {backup['dd_s']:.2f} | {backup['full_bytes']:,} |")
        print(f"| incremental, 10% of chunks changed | {backup['incremental_s']:.2f} | "
              f"{backup['incremental_bytes']:,} |")
        print()

    if agent:
        mib = agent["image_bytes"] / (1 << 20)
        print("## snapmgrd downloads over mutual TLS\n")
        print("| what | seconds | MiB/s | vs local read |")
        print("|---|---|---|---|")
        for key, what in (("local_s", "dd of the image device in the guest"),
                          ("one_s", "one download of the whole image"),
                          ("eight_s", f"8 downloads of an eighth each, at once, "
                                      f"{agent['api_calls']} API calls meanwhile")):
            print(f"| {what} | {agent[key]:.2f} | {mib / agent[key]:.1f} | "
                  f"{agent['local_s'] / agent[key]:.2f} |")
        print()

    if memory:
        tib = memory["origin_bytes"] / (1 << 40)
        print("## In-core memory, 1 TiB origin (dm-zero), 64 KiB chunks\n")
        print("| state | status core_bytes | per TiB |")
        print("|---|---|---|")
        copied = memory.get("copied_blocks", 0)
        for key, what in (("idle", "tracking, nothing written"),
                          ("after_writes", "after a 4 KiB write every 4 GiB"),
                          ("snapshot_held", f"snapshot held, {copied:,} scattered 4 KiB blocks "
                                            f"copied ({copied * 4096 / (1 << 30):.2f} GiB)")):
            print(f"| {what} | {memory[key]:,} | {memory[key] / tib / (1 << 20):.1f} MiB |")
        if "radix_tree_bytes" in memory:
            print(f"\nMeasured while copying: radix tree node slab +{memory['radix_tree_bytes']:,} "
                  f"bytes ({memory['radix_tree_bytes'] / max(copied, 1):.0f} per copy), vmalloc "
                  f"+{memory['vmalloc_bytes']:,} bytes.")
        if "kernel_bytes" in memory:
            print(f"\nMeasured while copying: unreclaimable slab and vmalloc "
                  f"+{memory['kernel_bytes']:,} bytes ({memory['kernel_bytes'] / max(copied, 1):.1f} "
                  f"per copy).")
        print()

    print("## Targets\n")
    def target(name, values, goal):
        if not values:
            print(f"- {name}: not measured")
            return
        m = statistics.median(values)
        print(f"- {name}: {m:.2f} (goal {goal}) {'met' if eval(f'{m} {goal}') else 'MISSED'}")
    target("tracking only, steady 4K randwrite QD16 vs dm-linear",
           paired_ratios(runs, "cowfile_track", "linear", "randwrite_qd16"), ">= 0.95")
    target("tracking only, first writes vs dm-era",
           paired_ratios(runs, "cowfile_track", "era", "first_write_qd16"), ">= 1.0")
    target("snapshot held, first writes QD16 vs dm-snapshot",
           paired_ratios(runs, "cowfile_snap", "snapshot", "first_write_qd16"), ">= 2.0")
    target("snapshot held, first writes QD16 vs dm-thin",
           paired_ratios(runs, "cowfile_snap", "thin", "first_write_qd16"), ">= 1.0")
    target("image reads vs origin reads", ratios, ">= 0.9")
    print("\nIssue 18 (snapshot path v2):\n")
    for peer, goal in (("linear", ">= 0.65"), ("snapshot", ">= 2.0"), ("snapshot4k", ">= 1.5"),
                       ("thin", ">= 1.5")):
        target(f"snapshot held, first writes QD16 vs {LABEL[peer]}",
               paired_ratios(runs, "cowfile_snap", peer, "first_write_qd16"), goal)
    target("snapshot held, random 4 KiB writes QD16 (most blocks first touched) vs dm-linear",
           paired_ratios(runs, "cowfile_snap", "linear", "randwrite_qd16"), ">= 0.6")
    per_copied = store_per_copied(runs.get(("cowfile_snap", "randwrite_qd16"), []))
    target("store bytes per byte overwritten, random 4 KiB writes",
           [per_copied] if per_copied else [], "<= 1.1")
    target("rewrites of already-copied blocks vs dm-linear",
           paired_ratios(runs, "cowfile_snap", "linear", "rewrite_qd16"), ">= 0.95")
    target("1 MiB sequential image reads over scattered copies vs origin reads", seq_ratios, ">= 0.9")
    if memory and memory.get("copied_blocks"):
        bitmaps = 2 * (memory["origin_bytes"] // (64 << 10)) // 8
        extra = (memory["snapshot_held"] - bitmaps) / (1 << 20)
        target(f"in-core memory beyond the tracking bitmaps, 1 TiB origin, "
               f"{memory['copied_blocks'] * 4096 / (1 << 30):.2f} GiB of scattered copies, MiB "
               f"(status core_bytes)", [extra], "<= 64")
        if "radix_tree_bytes" in memory:
            target("the same, measured (radix tree slab growth while copying), MiB",
                   [memory["radix_tree_bytes"] / (1 << 20)], "<= 64")
        if "kernel_bytes" in memory:
            target("the same, measured (unreclaimable slab and vmalloc growth while copying), MiB",
                   [memory["kernel_bytes"] / (1 << 20)], "<= 64")
    same_fs = paired_ratios(runs, "cowfile_snap_fs", "linear_fs", "first_write_qd16")
    if same_fs:
        print(f"- snapshot held with the store on the same ext4, first writes QD16 vs dm-linear "
              f"on that ext4: {statistics.median(same_fs):.2f} (no goal; against the 2nd-disk "
              f"store: {statistics.median(paired_ratios(runs, 'cowfile_snap', 'linear', 'first_write_qd16') or [0]):.2f} "
              f"vs dm-linear)")
    if backup:
        target("incremental (10%) vs full backup time", [backup["incremental_s"] / backup["full_s"]],
               "<= 0.15")


if __name__ == "__main__":
    main()
