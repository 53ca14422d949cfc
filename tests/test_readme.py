"""The README's first example, pasted cell by cell as a reader would, prints what it shows."""

import re
from pathlib import Path

from IPython.utils.capture import capture_output

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title):
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def cells_and_outputs(text):
    """[(python cell, the output block after it or None)] in order."""
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    pairs = []
    for lang, body in blocks:
        if lang == "python":
            pairs.append([body, None])
        elif pairs and pairs[-1][1] is None:
            pairs[-1][1] = body
    return pairs


def words(text):
    return " ".join(text.split())


def test_the_30_seconds_example_runs_as_pasted_and_prints_what_it_shows(shell):
    shell.run_line_magic("unload_ext", "tfmagic")  # as in a fresh kernel: the README loads it
    shell.reset(new_session=False)
    shell.user_ns.pop("tf", None)
    pairs = cells_and_outputs(section("30 seconds"))
    assert len(pairs) == 4
    for cell, shown in pairs:
        with capture_output() as out:
            result = shell.run_cell(cell)
        assert result.success, (cell, result.error_in_exec or result.error_before_exec, out.stderr)
        if shown:
            printed = words(out.stdout + "".join(o.data.get("text/plain", "") for o in out.outputs))
            for line in shown.strip().splitlines():
                assert words(line) in printed, (line, printed)
    assert shell.user_ns["run"].status == "max_steps"
    shell.reset(new_session=False)
    shell.run_line_magic("load_ext", "tfmagic")  # (a no-op if the README's line loaded it)


def test_the_option_table_lists_every_declared_option_with_its_default():
    """The README's %%descend table and %config sentence follow tfmagic/options/declared.py."""
    from tfmagic.options import declared

    table = section("`%%descend [NAME[=INIT] ...] [options]`")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    for option in declared.DESCEND:
        if option.flags:
            assert any(option.flags[0] in row for row in rows), option.flags
        if option.setting:
            assert f"%config TfMagics.{option.setting} = {option.example}" in words(table), option.setting
    row = lambda flag: next(r for r in rows if r.startswith(f"| `{flag}"))  # noqa: E731
    assert f"default {declared.ETA}" in row("--eta") and f"default {declared.STEPS}" in row("--steps")
    assert row("--optimizer").startswith(f"| `--optimizer` | `{declared.OPTIMIZER}`")
    assert f"({declared.BATCH_SIZE})" in row("--batch-size")
    assert f"default {declared.FIND_ETA_STEPS}" in words(section("`%%descend [NAME[=INIT] ...] [options]`"))


def test_each_benchmark_keeps_one_current_table_and_the_journal_is_linked():
    text = README.read_text()
    journal = (README.parent / "benchmarks" / "README.md").read_text()
    assert "benchmarks/README.md" in text and "in brackets" not in text
    for bench in ("bench_descent", "bench_first_run", "bench_rerun", "bench_ui", "bench_train"):
        assert bench in text and bench in journal, bench
    assert not re.search(r"20\d\d-\d\d-\d\d", text)  # (the dated runs are in the journal)
