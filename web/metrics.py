"""Prometheus metrics in text exposition format 0.0.4, without a client library.

Why hand-rolled: a few counters and one histogram are all the API needs, and owning the
renderer keeps the no-ids-as-labels rule enforceable: labels are only the route template (never
the path with its ids), the method, the status and small closed sets (webhook outcomes). Label
sets are bounded by `label_sets_max` per metric; beyond it new combinations are folded into
`other`, so a misbehaving client cannot grow memory.
"""

from __future__ import annotations

from collections import defaultdict

#: Request latency histogram bucket bounds, in seconds.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LABEL_SETS_MAX = 500

Labels = tuple[tuple[str, str], ...]


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"


class Metrics:
    def __init__(self, label_sets_max: int = LABEL_SETS_MAX) -> None:
        self._max = label_sets_max
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._hist: dict[str, dict[Labels, list[float]]] = defaultdict(dict)
        self._gauges: dict[str, dict[Labels, float]] = defaultdict(dict)

    def describe(self, name: str, kind: str, text: str) -> None:
        self._help[name] = (kind, text)

    def _slot(self, table: dict[Labels, float], labels: Labels) -> Labels:
        if labels in table or len(table) < self._max:
            return labels
        return tuple((k, "other") for k, _ in labels)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        table = self._counters[name]
        key = self._slot(table, tuple(sorted(labels.items())))
        table[key] = table.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        table = self._gauges[name]
        table[self._slot(table, tuple(sorted(labels.items())))] = value

    def observe(self, name: str, value_s: float, **labels: str) -> None:
        table = self._hist[name]
        key = tuple(sorted(labels.items()))
        if key not in table and len(table) >= self._max:
            key = tuple((k, "other") for k, _ in key)
        slots = table.setdefault(key, [0.0] * (len(LATENCY_BUCKETS_S) + 2))
        for index, bound in enumerate(LATENCY_BUCKETS_S):
            if value_s <= bound:
                slots[index] += 1
        slots[-2] += 1  # count
        slots[-1] += value_s  # sum

    def counter(self, name: str, **labels: str) -> float:
        return self._counters[name].get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(set(self._counters) | set(self._gauges) | set(self._hist)):
            kind, text = self._help.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(self._counters.get(name, {}).items()):
                lines.append(f"{name}{_fmt(labels)} {value:g}")
            for labels, value in sorted(self._gauges.get(name, {}).items()):
                lines.append(f"{name}{_fmt(labels)} {value:g}")
            for labels, slots in sorted(self._hist.get(name, {}).items()):
                for index, bound in enumerate(LATENCY_BUCKETS_S):
                    le = (*labels, ("le", f"{bound:g}"))
                    lines.append(f"{name}_bucket{_fmt(le)} {slots[index]:g}")
                lines.append(f"{name}_bucket{_fmt((*labels, ('le', '+Inf')))} {slots[-2]:g}")
                lines.append(f"{name}_count{_fmt(labels)} {slots[-2]:g}")
                lines.append(f"{name}_sum{_fmt(labels)} {slots[-1]:.6f}")
        return "\n".join(lines) + "\n"


def standard_metrics() -> Metrics:
    m = Metrics()
    m.describe("http_requests_total", "counter", "HTTP requests by route template and status")
    m.describe("http_request_duration_seconds", "histogram", "HTTP request latency by route")
    m.describe("payments_created_total", "counter", "Checkouts created through the API")
    m.describe("psp_webhooks_total", "counter", "PSP webhooks by engine outcome")
    m.describe("idempotent_replays_total", "counter", "Responses replayed for a repeated key")
    m.describe("rate_limited_total", "counter", "Requests refused with 429")
    m.describe("card_data_refused_total", "counter", "Bodies refused for holding a card number")
    m.describe("merchant_notifications_total", "counter", "Merchant webhook deliveries by result")
    return m
