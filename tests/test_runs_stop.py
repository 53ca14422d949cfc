"""`%descend_runs stop` says "Stopped" only for runs that have ended; runs still going after
its wait are said to be stopping, with how many."""

import asyncio

import pytest

from tfmagic import reach


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("ending", [0, 1, 3])
def test_the_stop_line_says_stopped_only_once_every_run_has_ended(monkeypatch, capsys, loop, n, ending):
    monkeypatch.setattr(reach, "STOP_WAIT_S", 0.2)
    ending = min(ending, n)

    async def scenario():
        tasks = [asyncio.ensure_future(asyncio.sleep(0.01 if i < ending else 30)) for i in range(n)]
        said = f"Stopped {n} run{'s' * (n != 1)}."
        await reach._said_once_ended(tasks, said, reach._still_stopping)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    loop.run_until_complete(scenario())  # (in its own thread: another test may leave a loop running on this one)
    out = capsys.readouterr().out.strip()
    if ending == n:
        assert out == f"Stopped {n} run{'s' * (n != 1)}."
    else:
        left = n - ending
        assert out.startswith(f"Stopping {left} run{'s' * (left != 1)}: not ended after 0.2 s"), out
