"""Saved, the server stopped, a new server started, the notebook reopened: every kind of output
shows its record and no "Error displaying widget". JupyterLab's default settings (no widget
state saved): the live views gave way to a line of text when the kernel was shut down, before
the notebook was saved. (A notebook JupyterLab does not trust, one made elsewhere, has its SVG
stripped by the sanitizer until trusted: its numbers and words stay.)"""

import json

import nbformat
import pytest

from conftest import Lab, LabServer

pytestmark = pytest.mark.browser

CELLS = [
    "%load_ext tfmagic\nimport numpy as np\nrng = np.random.default_rng(0)\n"
    "X = rng.normal(size=(96, 2)).astype('float32'); Y = X @ np.array([[1.0], [-2.0]], 'float32')\nXv, Yv = X[:24], Y[:24]",
    "%%descend x=10.0 --eta 0.1 --steps 50 -o run\ny = tf.pow(x, 2.0) - 4.0 * x + 4.0",
    "%%descend x=10.0 --compare eta=0.01,0.1,0.9,1.1 --steps 50 -o cmp\ny = tf.pow(x, 2.0) - 4.0 * x + 4.0",
    "%%descend x=-5:5 --restarts 4 --seed 1 --steps 60 -o rs\ny = tf.pow(x, 2.0) - 4.0 * x + 4.0",
    "%%descend x=10.0 --find-eta -o sweep\ny = tf.pow(x, 2.0) - 4.0 * x + 4.0",
    "%%tfgrad\nf = tf.pow(x, 2.0) * 3.0",
    "%%descend w=tf.zeros([2, 1]) --data X,Y --batch-size 16 --epochs 3 --validate Xv,Yv -o fit\n"
    "loss = tf.reduce_mean((Y - X @ w) ** 2)",
    "print('all done')",
]
RECORDS = {1: ".tfmagic-loss-svg", 2: ".tfmagic-runs-svg", 3: ".tfmagic-runs-svg", 4: ".tfmagic-sweep-svg",
           5: ".tfmagic-grad", 6: ".tfmagic-epochs"}  # cell -> its record
WIDGET = "application/vnd.jupyter.widget-view+json"
NAME = "records.ipynb"


def _page(browser, server, artifacts_dir, console):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    return context, Lab(server, page, artifacts_dir, console)


def _ran_all(lab):
    """The notebook written, opened with the file browser beside it, and run to its last cell."""
    lab.write_notebook(NAME, CELLS)
    lab.open_notebook(NAME)
    lab.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
    lab.run_all()
    lab.wait_for_output(NAME, len(CELLS) - 1, "all done", timeout_ms=240_000)


def _save(lab):
    lab.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    lab.page.wait_for_function(lab._js("return !panel.context.model.dirty;"), arg=[NAME])


def _reopened(browser, tmp_path, first, artifacts_dir, console, shots, wait_ms):
    """The saved notebook opened on a second server: every record visible (a screenshot of each);
    returns the records' text."""
    second = LabServer(tmp_path / "second")
    second.root_dir = first.root_dir
    # The same user on the same machine: the notebook's signature (trust, so its inline SVG is
    # drawn) is in the data directory the first server wrote it to.
    (tmp_path / "second" / "data").symlink_to(tmp_path / "first" / "data")
    second.start()
    try:
        context, lab = _page(browser, second, artifacts_dir, console)
        lab.open_notebook(NAME)
        lab.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
        lab.page.wait_for_timeout(wait_ms)  # (what a widget output would need to show its error)
        text = ""
        for i, css in RECORDS.items():
            cell = lab.cell(NAME, i)
            lab.element_screenshot(cell, f"{shots}-{i}")
            assert cell.locator(css).first.is_visible(), css
            text += cell.inner_text()
        lab.screenshot(shots)
        context.close()
        return text
    finally:
        second.stop()


def test_a_saved_notebook_reopened_on_a_new_server_shows_every_record(browser, tmp_path, artifacts_dir):
    (tmp_path / "first").mkdir(), (tmp_path / "second").mkdir()
    first, console = LabServer(tmp_path / "first"), []
    first.start()
    try:
        context, lab = _page(browser, first, artifacts_dir, console)
        _ran_all(lab)
        live = [i for i in range(len(CELLS)) if any(WIDGET in o.get("data", {}) for o in lab.cell_outputs(NAME, i))]
        assert live == [1, 2, 3, 6], live  # (the runs' panels and the series' charts were live)
        lab.page.evaluate(lab._js("return panel.sessionContext.shutdown().then(() => true);"), [NAME])
        lab.poll(lambda: all("tfmagic-gave-way" in json.dumps(lab.cell_outputs(NAME, i)) for i in live), 30,
                 "the live views to give way")
        _save(lab)
        context.close()
    finally:
        first.stop()
    saved = nbformat.read(first.root_dir / NAME, as_version=4)
    assert not [o for c in saved.cells for o in c.outputs if WIDGET in o.get("data", {})]
    print("saved after the views gave way:", (first.root_dir / NAME).stat().st_size, "bytes")

    text = _reopened(browser, tmp_path, first, artifacts_dir, console, "records-reopened", 2000)
    assert "Error displaying widget" not in text and "Loading widget" not in text
    assert "best: eta=0.1" in text and "suggested eta" in text and "val_loss" in text
    assert text.count("kernel shut down") == 4


def test_with_widget_state_saving_a_notebook_saved_while_its_kernel_runs_reopens_without_errors(
        browser, tmp_path, artifacts_dir):
    """JupyterLab's own remedy (Settings > Widgets > Save Widget State Automatically): saved
    with the kernel running, the panels come back drawn from the saved state."""
    (tmp_path / "first").mkdir(), (tmp_path / "second").mkdir()
    first, console = LabServer(tmp_path / "first"), []
    first.env()  # (makes the settings directory)
    plugin = tmp_path / "first" / "config" / "lab" / "user-settings" / "@jupyter-widgets" / "jupyterlab-manager"
    plugin.mkdir(parents=True)
    (plugin / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))
    first.start()
    try:
        context, lab = _page(browser, first, artifacts_dir, console)
        _ran_all(lab)
        _save(lab)
        context.close()
    finally:
        first.stop()
    path = first.root_dir / NAME
    saved = nbformat.read(path, as_version=4)
    assert "application/vnd.jupyter.widget-state+json" in saved.metadata.get("widgets", {})
    print("saved with widget state:", path.stat().st_size, "bytes")

    text = _reopened(browser, tmp_path, first, artifacts_dir, console, "records-state-reopened", 4000)
    assert "Error displaying widget" not in text, text[:2000]
