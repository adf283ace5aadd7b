"""`payengine scenario run NAME --html report.html`: one self-contained page per run.

The page shows the faults fired on a time axis (virtual time), the throughput over the run,
every invariant the oracle checked with its verdict, the run's totals and the command that
replays it. Self-contained: inline CSS and SVG, no script, no other file or host, so it can be
mailed, attached to an issue or opened years later.

The time axis comes from `Sampler`, a progress callback (simulator/progress.py calls it from a
trio instrument, so sampling changes no schedule and no trace hash): it notes the fault counts
and the payments count each time virtual time crosses a bucket boundary.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from html import escape
from typing import Any

import attrs

#: Buckets on the time axis, over the scenario's duration (the liveness phase after it adds
#: buckets of the same width).
BUCKETS = 60
CHART_W = 720
ROW_H = 18
LABEL_W = 220


@attrs.frozen
class Sample:
    virtual_s: float
    payments: int
    faults: dict[str, int]


@attrs.define(eq=False)
class Sampler:
    """A progress callback that samples the world, then calls `then` (the progress bar)."""

    then: Callable[[Any], None] | None = None
    samples: list[Sample] = attrs.Factory(list)
    _next_s: float = 0.0

    def __call__(self, world: Any) -> None:
        now_s = world.now_ms() / 1000
        if now_s >= self._next_s:
            step_s = max(world.scenario.duration_s / BUCKETS, 1e-3)
            self.samples.append(Sample(now_s, world.store.payments_count(), dict(world.faults)))
            self._next_s = (now_s // step_s + 1) * step_s
        if self.then is not None:
            self.then(world)

    def finish(self, result: Any) -> None:
        """The last sample: the run's own totals at its end."""
        self.samples.append(Sample(result.virtual_s, result.payments, dict(result.faults)))


def _deltas(samples: list[Sample]) -> list[tuple[float, float, int, dict[str, int]]]:
    """(start s, end s, payments started, faults fired by name) per interval."""
    found = []
    for before, after in itertools.pairwise(samples):
        if after.virtual_s <= before.virtual_s:
            continue
        faults = {
            name: after.faults.get(name, 0) - before.faults.get(name, 0)
            for name in after.faults
            if after.faults.get(name, 0) > before.faults.get(name, 0)
        }
        found.append(
            (before.virtual_s, after.virtual_s, max(0, after.payments - before.payments), faults)
        )
    return found


def _x(t_s: float, end_s: float) -> float:
    return LABEL_W + (CHART_W - LABEL_W) * (t_s / end_s if end_s else 0.0)


def _axis(end_s: float, y: int, faults_end_s: float) -> str:
    """The time axis under a chart, and a mark where the faults stop (the liveness phase after
    it lets every payment settle; the oracle then judges)."""
    ticks = []
    for i in range(6):
        t_s = end_s * i / 5
        x = _x(t_s, end_s)
        anchor = "end" if i == 5 else "middle"
        ticks.append(
            f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" class="axis"/>'
            f'<text x="{x:.1f}" y="{y + 15}" text-anchor="{anchor}">{t_s:,.0f} s</text>'
        )
    stop = _x(faults_end_s, end_s)
    mark = (
        f'<line x1="{stop:.1f}" y1="0" x2="{stop:.1f}" y2="{y}" class="stop"/>'
        f'<text x="{stop + 3:.1f}" y="10" class="stop">traffic and faults stop</text>'
        if faults_end_s < end_s
        else ""
    )
    axis = f'<line x1="{LABEL_W}" y1="{y}" x2="{CHART_W}" y2="{y}" class="axis"/>'
    return axis + "".join(ticks) + mark


def faults_chart(samples: list[Sample], duration_s: float) -> str:
    intervals = _deltas(samples)
    names = sorted({n for *_, faults in intervals for n in faults})
    end_s = max([duration_s, *(e for _, e, _, _ in intervals)])
    if not names:
        return '<p class="none">No fault fired.</p>'
    peak = max(f.get(n, 0) for *_, f in intervals for n in names) or 1
    height = len(names) * ROW_H + 24
    parts = [
        f'<svg viewBox="0 0 {CHART_W} {height}" class="chart" role="img" '
        'aria-label="faults fired over virtual time">'
    ]
    for row, name in enumerate(names):
        y = row * ROW_H
        parts.append(
            f'<text x="{LABEL_W - 6}" y="{y + 13}" text-anchor="end">{escape(name)}</text>'
        )
        for start_s, stop_s, _, faults in intervals:
            count = faults.get(name, 0)
            if not count:
                continue
            x0, x1 = _x(start_s, end_s), _x(stop_s, end_s)
            opacity = 0.25 + 0.75 * count / peak
            parts.append(
                f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(1.5, x1 - x0):.1f}" '
                f'height="{ROW_H - 4}" class="fault" fill-opacity="{opacity:.2f}">'
                f"<title>{escape(name)}: {count} between {start_s:,.0f} s and {stop_s:,.0f} s"
                "</title></rect>"
            )
    parts.append(_axis(end_s, len(names) * ROW_H + 2, duration_s))
    parts.append("</svg>")
    return "".join(parts)


def throughput_chart(samples: list[Sample], duration_s: float) -> str:
    intervals = _deltas(samples)
    if not intervals:
        return '<p class="none">No sample.</p>'
    end_s = max([duration_s, *(e for _, e, _, _ in intervals)])
    rates = [(s, e, n / (e - s)) for s, e, n, _ in intervals]
    peak = max(r for *_, r in rates) or 1.0
    plot_h = 100
    parts = [
        f'<svg viewBox="0 0 {CHART_W} {plot_h + 24}" class="chart" role="img" '
        'aria-label="payments started per virtual second">',
        f'<text x="{LABEL_W - 6}" y="12" text-anchor="end">{peak:,.2f}/s</text>',
        f'<text x="{LABEL_W - 6}" y="{plot_h}" text-anchor="end">0/s</text>',
    ]
    for start_s, stop_s, rate in rates:
        x0, x1 = _x(start_s, end_s), _x(stop_s, end_s)
        h = plot_h * rate / peak
        parts.append(
            f'<rect x="{x0:.1f}" y="{plot_h - h:.1f}" width="{max(1.0, x1 - x0 - 0.5):.1f}" '
            f'height="{h:.1f}" class="bar"><title>{rate:,.2f} payments/s at '
            f"{start_s:,.0f} s</title></rect>"
        )
    parts.append(_axis(end_s, plot_h + 2, duration_s))
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[tuple[str, str]], cls: str = "") -> str:
    body = "".join(
        f'<tr class="{escape(cls or v)}"><td>{escape(k)}</td><td>{escape(v)}</td></tr>'
        for k, v in rows
    )
    return f"<table>{body}</table>"


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;color:#1d2330;max-width:900px;margin:1.5rem auto;
padding:0 1rem}h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:1.6rem}
.verdict{font-weight:700;padding:.2rem .5rem;border-radius:4px}.ok{background:#d9f2e3}
.bad{background:#fbdcd9}table{border-collapse:collapse;width:100%}
td{border-bottom:1px solid #e0e3ea;padding:.2rem .4rem;font-size:14px}
tr.held td:last-child{color:#1b7f4b}tr.violated td:last-child{color:#b3261e;font-weight:700}
pre{background:#f2f4f7;padding:.6rem;overflow-x:auto}.chart{width:100%;height:auto}
.chart text{font:10px system-ui,sans-serif;fill:#5b6475}.axis{stroke:#9aa3b5}
.fault{fill:#b3261e}line.stop{stroke:#9a6400;stroke-dasharray:3 3}text.stop{fill:#9a6400}
.bar{fill:#2457d6}.none{color:#5b6475}
"""


def render(result: Any, samples: list[Sample]) -> str:
    """The report of one run (`simulator.runner.RunResult`) as one HTML page."""
    scenario = result.scenario
    verdict = (
        '<span class="verdict ok">every invariant held</span>'
        if result.ok
        else f'<span class="verdict bad">VIOLATED {escape(result.violation.invariant)}</span>'
    )
    s = result.summary
    per_s = result.payments / result.wall_s if result.wall_s else 0.0
    totals = [
        ("payments", ", ".join(f"{k} {v}" for k, v in s["payments"].items())),
        ("orders", ", ".join(f"{k} {v}" for k, v in s["orders"].items())),
        ("captures at the PSP", str(s["psp_captures"])),
        ("dead letters", str(s["dead_letters"])),
    ]
    for currency, m in s["money_minor"].items():
        totals.append(
            (
                f"{currency} (minor units)",
                f"captured {m['captured']:,} / booked to sellers {m['sellers']:,} / "
                f"commission {m['commission']:,}",
            )
        )
    totals += [
        (
            "time",
            f"virtual {result.virtual_s:,.0f} s, wall {result.wall_s:.1f} s, "
            f"{per_s:,.1f} payments per wall second",
        ),
        ("trace", f"{result.trace_events:,} events, sha256 {result.trace_hash}"),
    ]
    faults = [(k, f"{v:,}") for k, v in result.faults.items()] or [("none", "")]
    violation = ""
    if not result.ok:
        recent = "\n".join(result.trace_recent[-15:])
        violation = (
            f"<h2>Violation</h2><p>{escape(str(result.violation))}</p>"
            f"<h3>Last trace events</h3><pre>{escape(recent)}</pre>"
        )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(scenario.name)} seed {result.seed}: payengine scenario report</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Scenario {escape(scenario.name)}, seed {result.seed}</h1><p>{verdict}</p>"
        f"<p>{escape(scenario.description)}</p>"
        "<h2>Faults fired over virtual time</h2>"
        f"{faults_chart(samples, scenario.duration_s)}{_table(faults, 'fault-total')}"
        "<h2>Throughput: payments started per virtual second</h2>"
        f"{throughput_chart(samples, scenario.duration_s)}"
        f"<h2>Invariants checked ({len(result.invariants)})</h2>"
        f"{_table(list(result.invariants.items()))}"
        f"<h2>Totals</h2>{_table(totals, 'total')}{violation}"
        f"<h2>Replay</h2><pre>{escape(result.replay)}</pre>"
        "<p>Same seed, same trace hash: the replay runs the same events in the same order.</p>"
        "</body></html>"
    )
