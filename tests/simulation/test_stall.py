"""The stall watch: a real-time run that stops answering says where it waits, and ends."""

from __future__ import annotations

import tempfile
import time

import pytest
import trio

from payengine import cli
from simulator.pg_runner import _first_inconclusive
from simulator.stall import EXIT_STALLED, RunStalled, StallThread, watch_progress

#: The watch polls every POLL_S * time_scale seconds; tests poll every 0.05 s.
FAST = 0.05


async def _stuck_forever(event: trio.Event) -> None:
    await event.wait()


def test_a_run_without_progress_raises_run_stalled_naming_where_tasks_wait() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stuck_forever, trio.Event(), name="order-actor[o1]")
            nursery.start_soon(_stuck_forever, trio.Event(), name="order-actor[o2]")
            await watch_progress(lambda: 7, stall_s=0.3, time_scale=FAST)

    with pytest.raises(BaseExceptionGroup) as caught:
        trio.run(main)
    stalled = _first_inconclusive(caught.value)
    assert isinstance(stalled, RunStalled)
    message = str(stalled)
    assert "no database operation answered" in message
    # Both stuck tasks wait at the same place: one line, counted twice, under their kind.
    line = next(x for x in message.splitlines() if "_stuck_forever" in x)
    assert "2 x" in line and "order-actor" in line
    assert "tests/simulation/test_stall.py" in line


def test_a_run_that_makes_progress_is_left_alone_and_beats() -> None:
    beats: list[int] = []
    count = 0

    def progress() -> int:
        return count

    async def work() -> None:
        nonlocal count
        for _ in range(20):
            await trio.sleep(0.05)
            count += 1

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: watch_progress(
                    progress, stall_s=0.3, time_scale=FAST, beat=lambda: beats.append(count)
                )
            )
            await work()  # 1 s of progress, more than three stall limits
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert len(beats) >= 5
    assert beats == sorted(beats)


def test_the_thread_ends_a_wedged_process_with_every_threads_stack() -> None:
    exits: list[int] = []
    with tempfile.TemporaryFile("w+") as out:
        with StallThread(
            "database x is left behind", stall_s=0.2, grace_s=0.2, out=out, exit=exits.append
        ):
            time.sleep(2.0)  # the main thread blocked, as in a call that never returns
        out.seek(0)
        text = out.read()
    assert exits == [EXIT_STALLED]
    assert text.startswith("payengine: the run is wedged: no progress for ")
    assert "database x is left behind" in text
    assert "test_the_thread_ends_a_wedged_process" in text  # the blocked frame is named


def test_the_thread_stays_quiet_while_beats_come() -> None:
    exits: list[int] = []
    with StallThread("x", stall_s=0.3, grace_s=0.3, exit=exits.append) as watch:
        for _ in range(15):
            time.sleep(0.1)
            watch.beat()
    assert exits == []


def test_scenario_run_exits_3_with_the_reason_when_a_run_cannot_be_judged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def stalled(*args: object, **kwargs: object) -> object:
        raise RunStalled("no database operation answered for 180 wall s\n3 trio tasks ...")

    monkeypatch.setattr("payengine.scenario_cli._run_postgres", stalled)
    code = cli.main(["scenario", "run", "happy_path", "--store", "postgres"])
    assert code == 3
    err = capsys.readouterr().err
    assert err.startswith(
        "payengine: the run could not be judged: no database operation answered for 180 wall s"
    )
