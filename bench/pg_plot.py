"""Plot throughput and p99 latency against offered load from `bench.pg_bench --json` lines.

    python -m bench.pg_plot results.jsonl docs/pg_bench.png

One line per (label, store) over the open-loop windows (offered payments/s on the x axis),
plus the closed-loop saturation rate as a marker at the right. matplotlib is a bench-only
dependency (`pip install matplotlib`).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any


def load(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot(results: list[dict[str, Any]], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r.get("mode") == "open":
            series[(r.get("label", ""), r["store"])].append(r)
    fig, (ax_rate, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (label, store), rows in sorted(series.items()):
        rows.sort(key=lambda r: r["level"])
        x = [r["level"] for r in rows]
        name = f"{store} {label}".strip()
        style = "-" if store == "postgres" else "--"
        marker = "o" if label == "after" else "s"
        ax_rate.plot(x, [r["payments_per_s"] for r in rows], style, marker=marker, label=name)
        ax_p99.plot(x, [r["p99_ms"] for r in rows], style, marker=marker, label=name)
    ax_rate.plot([0, max((r["level"] for r in results if r.get("mode") == "open"), default=1)],
                 [0, max((r["level"] for r in results if r.get("mode") == "open"), default=1)],
                 ":", color="grey", label="offered")  # fmt: skip
    ax_rate.set_xlabel("offered load (payments/s, open loop)")
    ax_rate.set_ylabel("completed payments/s")
    ax_rate.set_title("Throughput")
    ax_rate.legend(fontsize=8)
    ax_p99.set_xlabel("offered load (payments/s, open loop)")
    ax_p99.set_ylabel("p99 latency, ms (log)")
    ax_p99.set_yscale("log")
    ax_p99.set_title("p99 of a full payment (create -> COMPLETED)")
    ax_p99.legend(fontsize=8)
    fig.suptitle("Full payments, memory vs PostgreSQL, before vs after (one run, shared 2-core VM)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    plot(load(sys.argv[1]), sys.argv[2])


if __name__ == "__main__":
    main()
