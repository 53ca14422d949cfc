"""A notebook with every kind of output, run by nbclient, saved, and exported with
`jupyter nbconvert --to html`: each output's record (numbers, words, inline SVG) is there
without a kernel or JavaScript, the live panels' outputs say where the record is, and the
saved notebook stays small. In a real kernel, the panels give way to a line of text when
the kernel shuts down, so a notebook saved afterwards holds no widget without its model."""

import json
import re
import subprocess
import sys

import nbclient
import nbformat
import pytest

from test_live_kernel import Kernel

WIDGET = "application/vnd.jupyter.widget-view+json"
SETUP = """%load_ext tfmagic
import numpy as np
rng = np.random.default_rng(0)
X = rng.normal(size=(120, 2)).astype('float32'); Y = X @ np.array([[1.0], [-2.0]], 'float32') + 0.1
Xv, Yv = X[:30] + 0.2, Y[:30]"""
COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"
KINDS = {  # kind -> the cell
    "run": f"%%descend x=10.0 --eta 0.1 --steps 50 -o run\n{COURSE}",
    "diverged run": f"%%descend x=10.0 --eta 1.5 --steps 50 -o bad\n{COURSE}",
    "compare": f"%%descend x=10.0 --compare eta=0.01,0.1,0.9,1.1 --steps 50 -o cmp\n{COURSE}",
    "restarts": f"%%descend x=-5:5 --restarts 5 --seed 1 --steps 60 -o rs\n{COURSE}",
    "find-eta": f"%%descend x=10.0 --find-eta -o sweep\n{COURSE}",
    "tfgrad": "%%tfgrad\nf = tf.pow(x, 2.0) * 3.0",
    "training": "%%descend w=tf.zeros([2, 1]) --data X,Y --batch-size 16 --epochs 3 --validate Xv,Yv -o fit\n"
                "loss = tf.reduce_mean((Y - X @ w) ** 2)",
}
RECORD = {"run": "tfmagic-loss-svg", "diverged run": "tfmagic-loss-svg", "compare": "tfmagic-runs-svg",
          "restarts": "tfmagic-runs-svg", "find-eta": "tfmagic-sweep-svg", "tfgrad": "tfmagic-grad",
          "training": "tfmagic-epochs"}
BYTES = {"tfgrad": 3_000, "run": 6_000, "diverged run": 6_000, "find-eta": 6_000, "training": 8_000,
         "compare": 16_000, "restarts": 16_000}  # the README's bytes per output, with room


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The executed notebook, saved as JupyterLab saves it by default (no widget state)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(c) for c in KINDS.values()]
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    nb.metadata.pop("widgets", None)
    path = tmp_path_factory.mktemp("records") / "every_kind.ipynb"
    nbformat.write(nb, path)
    return path


def outputs_by_kind(path):
    nb = nbformat.read(path, as_version=4)
    return dict(zip(KINDS, [c.outputs for c in nb.cells[1:]]))


def test_every_kind_is_recorded_in_the_saved_notebook_and_stays_small(saved):
    for kind, outputs in outputs_by_kind(saved).items():
        assert not [o for o in outputs if o.output_type == "error"], kind
        html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
        assert RECORD[kind] in html, kind
        size = len(json.dumps(outputs))
        print(f"{kind}: {size} bytes")
        assert size < BYTES[kind], (kind, size)
        for o in outputs:
            if WIDGET in o.get("data", {}):  # (a live panel: where no widget is drawn, its text says why)
                assert re.search(r"needs? (its|their) kernel", o.data["text/plain"]) and "record" in o.data["text/plain"], kind
    widgets = [o for outs in outputs_by_kind(saved).values() for o in outs if WIDGET in o.get("data", {})]
    assert len(widgets) >= 4  # (the runs' and the series' live views were shown)


def test_the_html_export_shows_every_record_without_a_kernel(saved):
    subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(saved)], check=True, capture_output=True)
    page = saved.with_suffix(".html").read_text()
    for css in set(RECORD.values()):
        assert css in page, css
    assert len(re.findall(r"<svg[^>]*class=.tfmagic-runs-svg", page)) == 2
    assert len(re.findall(r"<svg[^>]*class=.tfmagic-loss-svg", page)) == 3
    assert "Error displaying widget" not in page and "VBox(" not in page and "GridBox(" not in page
    assert len(re.findall(r"needs? (its|their) kernel", page)) >= 4
    svgs = "".join(re.findall(r"<svg[^>]*class=.tfmagic.*?</svg>", page, re.S))
    assert not re.search(r"\bnan\b|\binf\b", svgs, re.I)
    for number in ("final loss", "best: eta=0.1", "suggested eta ≈", "val_loss", "∂f/∂x"):
        assert number in page, number


def test_the_live_views_give_way_to_a_line_when_the_kernel_shuts_down(tmp_path):
    k = Kernel(tmp_path)
    try:
        ids = []
        for code in (SETUP, "x = tf.Variable(1.0)", KINDS["run"], KINDS["compare"]):
            msg_id = k.kc.execute(code)
            k.wait_iopub(k.child_of(msg_id, "status", execution_state="idle"), timeout=180)
        for m in k.iopub:
            if m["msg_type"] == "display_data" and WIDGET in m["content"]["data"]:
                ids.append(m["content"]["transient"]["display_id"])
        assert len(ids) == 2
        mark = len(k.iopub)
        k.kc.shutdown()
        updates = {}
        while set(updates) != set(ids):
            m = k.wait_iopub(lambda m: m["msg_type"] == "update_display_data", timeout=20, start=mark)
            mark = k.index(m) + 1
            updates[m["content"]["transient"]["display_id"]] = m["content"]["data"]
        for data in updates.values():
            assert WIDGET not in data and "kernel shut down" in data["text/plain"]
            assert "tfmagic-gave-way" in data["text/html"]
    finally:
        k.close()


def test_a_run_that_went_on_after_its_cell_leaves_its_record_now_when_the_kernel_shuts_down(tmp_path):
    """Pause ends the cell (its result shows the steps so far), Play goes on in the background,
    Stop: at shutdown the panel gives way to the record of where the run ended."""
    from test_reach_kernel import background_run, run

    k = Kernel(tmp_path)
    try:
        run(k, "%load_ext tfmagic")
        start = len(k.iopub)
        ids, _ = background_run(k, out="r")
        shown = next(m for m in k.iopub[start:] if m["msg_type"] == "execute_result")["content"]["data"]["text/plain"]
        _, text, _ = run(k, "%descend_runs stop")
        _, text, _ = run(k, "print(r.status, r.steps, repr(r.final_loss))")
        status, steps, loss = text.split()
        assert status == "stopped" and f"{int(steps)} steps" not in shown  # (it went on)
        display_id = next(m for m in k.iopub[start:] if m["msg_type"] == "display_data")["content"]["transient"]["display_id"]
        mark = len(k.iopub)
        k.kc.shutdown()
        m = k.wait_iopub(lambda m: m["msg_type"] == "update_display_data"
                         and m["content"]["transient"]["display_id"] == display_id, timeout=20, start=mark)
        data = m["content"]["data"]
        assert WIDGET not in data and f"went on to step {steps}" in data["text/plain"]
        assert f"<b class='tfmagic-status-stopped'>stopped</b>: {steps} steps" in data["text/html"]
        assert f"data-last-step='{steps}' data-last-loss='{float(loss)!r}'" in data["text/html"]
    finally:
        k.close()
