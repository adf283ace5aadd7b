"""Scenario files (TOML) and their loader: what world to simulate, with which faults, for how long.

A scenario names its traffic, its fault plan and what it expects; the simulator (simulator/)
runs it. The loader is strict because a typo in a fault name would otherwise silently test
nothing: an unknown key, a wrong type or a value out of range is a `ScenarioError` whose one-line
message names the file and the field (`happy_path.toml: faults.webhook_loss_p must be within
0..1, got 1.5`). Shipped scenarios live beside this module; `payengine scenario list` lists them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from engine.errors import UnknownCurrency
from engine.money import currency_exponent

#: The longest virtual time one scenario may simulate (a week), and the most checkouts per
#: virtual second it may ask for; beyond these a typo, not a plan, is the likely cause.
DURATION_S_MAX = 7 * 24 * 3600
RATE_PER_S_MAX = 10_000.0


class ScenarioError(Exception):
    """The scenario cannot be loaded; the message is one line naming the file and the field."""


@attrs.frozen
class Traffic:
    """Who buys what, how often. Rates are checkouts per virtual second (a Poisson process)."""

    rate_per_s: float = 0.5
    buyers: int = 500
    sellers: int = 50
    #: The first `hot_sellers` sellers receive `hot_share` of all orders (skew).
    hot_sellers: int = 0
    hot_share: float = 0.0
    orders_per_cart_max: int = 3
    #: Currency code -> weight. Mix 0, 2 and 3 decimal currencies (JPY, USD, BHD).
    currencies: Mapping[str, int] = attrs.field(
        factory=lambda: {"USD": 6, "EUR": 2, "JPY": 1, "BHD": 1}
    )
    amount_major_min: int = 1
    amount_major_max: int = 500
    #: The same checkout sent twice at once (same checkout id).
    double_click_p: float = 0.02
    #: The client gives up waiting and sends the same checkout again a little later.
    impatient_retry_p: float = 0.02
    #: What the buyer does on the hosted page; the rest abandon (the checkout expires).
    pay_p: float = 0.9
    decline_p: float = 0.03
    review_p: float = 0.0
    review_approve_p: float = 0.7
    review_hours_max: float = 6.0
    think_s_max: float = 300.0
    #: A burst: between `burst_start_s` and `burst_end_s` the rate is `burst_factor` times base.
    burst_start_s: float = 0.0
    burst_end_s: float = 0.0
    burst_factor: float = 1.0
    #: The share of captured orders a merchant later refunds (simulator/world_refunds.py):
    #: all that is left or a random part, after up to `refund_delay_s_max`; `refund_twice_p`
    #: of those send a second refund request at the same instant (racing the first). 0: off,
    #: and the run draws nothing for refunds (existing scenarios keep their trace).
    #: A client bug: the share of buyers whose client later sends another cart under the same
    #: checkout id; it must be refused (checkout_id_reused), never answered with a payment.
    checkout_id_reuse_p: float = 0.0
    refund_p: float = 0.0
    refund_partial_p: float = 0.5
    refund_twice_p: float = 0.2
    refund_delay_s_max: float = 600.0
    # --- payouts (simulator/world_payouts.py) ---------------------------------------------------
    #: The share of sellers on a payout schedule (daily; weekly for `payout_weekly_p` of them).
    #: 0: payouts off, and the run draws nothing for them (existing scenarios keep their trace).
    payout_scheduled_p: float = 0.0
    payout_weekly_p: float = 0.2
    #: Days captured money stays pending before a payout may take it.
    payout_delay_days: int = 1
    #: The schedules' minimum payout, in major units of each currency.
    payout_minimum_major: int = 0
    #: Mean virtual seconds between manual payout requests (a scheduled seller asks for a part
    #: of its wallet, sometimes more than it has); `payout_twice_p` of them twice at once.
    payout_manual_interval_s: float = 0.0
    payout_twice_p: float = 0.2


@attrs.frozen
class Faults:
    """The fault plan. `*_p` are probabilities per call / per webhook; every firing is counted."""

    psp_latency_ms_median: float = 120.0
    psp_latency_ms_max: float = 3000.0
    psp_unavailable_p: float = 0.0  # 5xx before acting
    psp_hang_p: float = 0.0  # timeout before the PSP acted
    psp_timeout_after_p: float = 0.0  # the PSP acted (captured), the answer is lost
    psp_decline_p: float = 0.0  # a capture the issuer refuses
    psp_failed_attempt_p: float = 0.0  # a failed capture attempt, announced by webhook
    #: Refunds only: the PSP accepts a refund as pending; it settles later (mostly succeeds).
    psp_refund_pending_p: float = 0.0
    webhook_duplicate_p: float = 0.0
    webhook_duplicates_max: int = 3
    webhook_delay_p: float = 0.0
    webhook_delay_s_max: float = 1800.0
    webhook_reorder_p: float = 0.0
    webhook_loss_p: float = 0.0
    webhook_forged_p: float = 0.0
    #: Mean virtual seconds between engine crashes; 0 means no crashes.
    crash_interval_s: float = 0.0
    restart_delay_s_max: float = 30.0
    #: Crash sweep: this share of checkouts (flows) each crash once, just before or just after
    #: one of their units of work; the points are taken in turn (before the 1st commit, after
    #: it, before the 2nd, ...), so a run covers every commit boundary of a flow's first
    #: `simulator.crash_sweep.UNITS_SWEPT_MAX` units many times over.
    crash_sweep_p: float = 0.0
    #: Correlated PSP outages: mean virtual seconds between outages (0: none); each lasts
    #: between the min and the max. In one, every PSP call hangs or fails, and webhook delivery
    #: may stall until it ends.
    psp_outage_interval_s: float = 0.0
    psp_outage_s_min: float = 60.0
    psp_outage_s_max: float = 900.0
    #: The share of outages that also stall webhook delivery (the rest take down the API only:
    #: a PSP's webhook dispatcher often runs apart from its API).
    psp_outage_webhooks_stall_p: float = 0.5
    #: Database outages: mean virtual seconds between them (0: none), each between the min and
    #: the max long. While one lasts every store call the engine makes (a read, a commit) fails
    #: with StoreUnavailable: nothing is committed, and the engine must wait it out.
    db_outage_interval_s: float = 0.0
    db_outage_s_min: float = 5.0
    db_outage_s_max: float = 120.0
    #: Settlement-file corruption (simulator/corruption.py). Content faults, per row, at most
    #: one per row: the PSP's books are wrong but the file is well-formed.
    settlement_row_dropped_p: float = 0.0
    settlement_row_duplicated_p: float = 0.0
    settlement_amount_altered_p: float = 0.0
    settlement_currency_altered_p: float = 0.0
    #: Transport faults, per file (at most one of trailer_missing, truncated, garbage): the
    #: strict parser refuses the file.
    settlement_unknown_row_p: float = 0.0
    settlement_trailer_missing_p: float = 0.0
    settlement_truncated_p: float = 0.0
    settlement_garbage_p: float = 0.0
    #: Reconciliation (issue 12, simulator/recon_faults.py): a line's fee altered (a content
    #: fault like the four above), and the report's shape: "stripe" or "adyen".
    settlement_fee_altered_p: float = 0.0
    settlement_format: str = "stripe"
    #: A capture whose every word the PSP withholds (answer and webhook lost, retries and
    #: status queries failing) until its nightly report has been reconciled.
    psp_capture_unheard_p: float = 0.0
    #: How often the PSP closes a settlement batch and sends its report (and the bank its
    #: statement): a day by default; Adyen, for one, can close several batches a day.
    settlement_interval_s: float = 86_400.0
    #: Disputes (chargebacks; simulator/world_disputes.py): the share of captured orders the
    #: PSP disputes, up to `dispute_open_s_max` after the capture (while the faults last), and
    #: closes up to `dispute_close_s_max` later, won with `dispute_win_p`. 0: off, and the run
    #: draws nothing for disputes (existing scenarios keep their trace).
    dispute_p: float = 0.0
    dispute_win_p: float = 0.4
    dispute_open_s_max: float = 600.0
    dispute_close_s_max: float = 1800.0
    #: The payout provider (simulator/payout_provider.py), per submit or query: 5xx before
    #: acting, a hang, the answer lost after acting; per submit: refused at once (FAILED).
    payout_unavailable_p: float = 0.0
    payout_hang_p: float = 0.0
    payout_timeout_after_p: float = 0.0
    payout_reject_p: float = 0.0
    #: Per accepted payout: it fails later, or is paid and returned by the bank later.
    payout_failed_p: float = 0.0
    payout_returned_p: float = 0.0
    #: The provider's notices: sent twice, delayed (up to the max), or a delivery lost (the
    #: provider sends it again later, as providers retry unacknowledged events).
    payout_notice_duplicate_p: float = 0.0
    payout_notice_delay_p: float = 0.0
    payout_notice_delay_s_max: float = 3600.0
    payout_notice_loss_p: float = 0.0


@attrs.frozen
class Expect:
    """What a passing run shows besides every invariant holding."""

    completed_min: int = 1


@attrs.frozen
class Scenario:
    name: str
    description: str = ""
    seed: int = 1
    duration_s: float = 3600.0
    #: After the traffic stops the faults stop too; the run must be quiet within this bound.
    liveness_s_max: float = 4 * 24 * 3600.0
    #: Swarm testing: the seed draws the fault plan (probabilities) instead of `faults`.
    swarm: bool = False
    traffic: Traffic = attrs.Factory(Traffic)
    faults: Faults = attrs.Factory(Faults)
    expect: Expect = attrs.Factory(Expect)
    source: str = ""

    def to_toml(self) -> str:
        """The scenario as TOML (for a shrunk failing run to be saved and replayed)."""
        lines = [f"name = {_toml(self.name)}", f"description = {_toml(self.description)}"]
        for field in ("seed", "duration_s", "liveness_s_max", "swarm"):
            lines.append(f"{field} = {_toml(getattr(self, field))}")
        for section in ("traffic", "faults", "expect"):
            lines.append(f"\n[{section}]")
            for name, value in attrs.asdict(getattr(self, section)).items():
                lines.append(f"{name} = {_toml(value)}")
        return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


_SECTIONS: Mapping[str, type] = {"traffic": Traffic, "faults": Faults, "expect": Expect}
_TOP = ("name", "description", "seed", "duration_s", "liveness_s_max", "swarm")


def _check_value(where: str, name: str, default: Any, value: Any) -> Any:
    field = f"{where}{name}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ScenarioError(f"{field} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ScenarioError(f"{field} must be a non-negative integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ScenarioError(f"{field} must be a non-negative number, got {value!r}")
        if name.endswith("_p") and value > 1:
            raise ScenarioError(f"{field} must be within 0..1, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ScenarioError(f"{field} must be a string, got {value!r}")
        return value
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping) or not value:
            raise ScenarioError(f"{field} must be a non-empty table of CODE = weight")
        weights: dict[str, int] = {}
        for code, weight in value.items():
            try:
                currency_exponent(code)
            except UnknownCurrency:
                raise ScenarioError(f"{field}.{code} is not an ISO 4217 currency") from None
            if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
                raise ScenarioError(f"{field}.{code} must be a positive integer weight")
            weights[code] = weight
        return weights
    raise AssertionError(f"no check for {field}")


def _section(where: str, cls: type, data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"[{where}] must be a table")
    defaults = cls()
    values: dict[str, Any] = {}
    known = {f.name for f in attrs.fields(cls)}
    for name, value in data.items():
        if name not in known:
            raise ScenarioError(
                f"{where}.{name} is not a known field (known: {', '.join(sorted(known))})"
            )
        values[name] = _check_value(f"{where}.", name, getattr(defaults, name), value)
    return cls(**values)


def parse_scenario(data: Mapping[str, Any], source: str = "") -> Scenario:
    """Validate a parsed TOML document into a `Scenario`, or raise ScenarioError."""
    for key in data:
        if key not in _TOP and key not in _SECTIONS:
            known = ", ".join((*_TOP, *_SECTIONS))
            raise ScenarioError(f"{key} is not a known field (known: {known})")
    name = data.get("name")
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ScenarioError(f"name must be a word of letters, digits and '_', got {name!r}")
    defaults = Scenario(name)
    top: dict[str, Any] = {}
    for key in _TOP[1:]:
        if key in data:
            top[key] = _check_value("", key, getattr(defaults, key), data[key])
    sections = {key: _section(key, cls, data.get(key, {})) for key, cls in _SECTIONS.items()}
    scenario = Scenario(name=name, **top, **sections, source=source)
    _check_relations(scenario)
    return scenario


def _check_relations(s: Scenario) -> None:
    t, f = s.traffic, s.faults
    if not 0 < s.duration_s <= DURATION_S_MAX:
        raise ScenarioError(f"duration_s must be within (0, {DURATION_S_MAX}], got {s.duration_s}")
    if s.liveness_s_max <= 0:
        raise ScenarioError("liveness_s_max must be positive")
    if not 0 < t.rate_per_s <= RATE_PER_S_MAX:
        raise ScenarioError(f"traffic.rate_per_s must be within (0, {RATE_PER_S_MAX}]")
    if t.buyers < 1 or t.sellers < 1:
        raise ScenarioError("traffic.buyers and traffic.sellers must be at least 1")
    if t.hot_sellers > t.sellers:
        raise ScenarioError("traffic.hot_sellers must not exceed traffic.sellers")
    if t.hot_share > 0 and t.hot_sellers == 0:
        raise ScenarioError("traffic.hot_share needs traffic.hot_sellers > 0")
    if not 1 <= t.orders_per_cart_max <= min(t.sellers, 50):
        raise ScenarioError("traffic.orders_per_cart_max must be within 1..min(sellers, 50)")
    if not 1 <= t.amount_major_min <= t.amount_major_max:
        raise ScenarioError("traffic.amount_major_min must be within 1..amount_major_max")
    if t.pay_p + t.decline_p + t.review_p > 1:
        raise ScenarioError("traffic.pay_p + decline_p + review_p must not exceed 1")
    if t.burst_end_s < t.burst_start_s or (t.burst_factor < 1 and t.burst_end_s > 0):
        raise ScenarioError("traffic.burst_end_s must follow burst_start_s; burst_factor >= 1")
    psp = f.psp_unavailable_p + f.psp_hang_p + f.psp_timeout_after_p
    if psp + f.psp_decline_p + f.psp_failed_attempt_p > 1:
        raise ScenarioError("faults: the psp_*_p probabilities must not add up to more than 1")
    if psp + f.psp_decline_p + f.psp_refund_pending_p > 1:
        raise ScenarioError(
            "faults: psp_*_p for refunds (with psp_refund_pending_p) must not exceed 1"
        )
    if f.psp_latency_ms_median > f.psp_latency_ms_max:
        raise ScenarioError("faults.psp_latency_ms_median must not exceed psp_latency_ms_max")
    content = f.settlement_row_dropped_p + f.settlement_row_duplicated_p
    content += f.settlement_fee_altered_p
    if not 60 <= f.settlement_interval_s <= DURATION_S_MAX:
        raise ScenarioError("faults.settlement_interval_s must be within 60..604800")
    if f.settlement_format not in ("stripe", "adyen"):
        raise ScenarioError("faults.settlement_format must be stripe or adyen")
    if content + f.settlement_amount_altered_p + f.settlement_currency_altered_p > 1:
        raise ScenarioError("faults: the per-row settlement_*_p must not add up to more than 1")
    transport = f.settlement_trailer_missing_p + f.settlement_truncated_p + f.settlement_garbage_p
    if transport > 1:
        raise ScenarioError(
            "faults: settlement_trailer_missing_p + truncated_p + garbage_p must not exceed 1"
        )
    payout_calls = f.payout_unavailable_p + f.payout_hang_p + f.payout_timeout_after_p
    if payout_calls + f.payout_reject_p > 1 or f.payout_failed_p + f.payout_returned_p > 1:
        raise ScenarioError("faults: the payout_*_p probabilities must not add up to more than 1")
    if f.psp_outage_s_min > f.psp_outage_s_max:
        raise ScenarioError("faults.psp_outage_s_min must not exceed psp_outage_s_max")
    if f.psp_outage_interval_s > 0 and f.psp_outage_s_max <= 0:
        raise ScenarioError("faults.psp_outage_s_max must be positive when outages are on")
    if not (0 <= f.dispute_p <= 1 and 0 <= f.dispute_win_p <= 1):
        raise ScenarioError("faults.dispute_p and dispute_win_p must be within [0, 1]")
    if f.dispute_open_s_max < 0 or f.dispute_close_s_max < 0:
        raise ScenarioError("faults.dispute_open_s_max and dispute_close_s_max must be >= 0")
    if f.db_outage_s_min > f.db_outage_s_max:
        raise ScenarioError("faults.db_outage_s_min must not exceed db_outage_s_max")
    if f.db_outage_interval_s > 0 and f.db_outage_s_max <= 0:
        raise ScenarioError("faults.db_outage_s_max must be positive when outages are on")
    if f.webhook_duplicates_max < 1:
        raise ScenarioError("faults.webhook_duplicates_max must be at least 1")


def _shipped_dir() -> Path:
    return Path(str(resources.files(__name__)))


def shipped() -> list[Scenario]:
    """Every scenario shipped with payengine, by name."""
    return sorted(
        (load_scenario(str(path)) for path in _shipped_dir().glob("*.toml")),
        key=lambda s: s.name,
    )


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name (`happy_path`) or a TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = _shipped_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in _shipped_dir().glob("*.toml")))
            raise ScenarioError(f"unknown scenario {name_or_path!r} (shipped: {names})")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path.name}: bad TOML: {exc}") from None
    try:
        return parse_scenario(data, source=str(path))
    except ScenarioError as exc:
        raise ScenarioError(f"{path.name}: {exc}") from None
