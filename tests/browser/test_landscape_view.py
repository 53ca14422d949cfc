"""--landscape in JupyterLab at 1280 px with the file browser open: the digits model's cell shows
the 11x11 preview of the slice at once, then the 41x41 grid, with the run's path from the start
(the square) on it; "zoom to the path" redraws the same slice around the path."""

from __future__ import annotations

import pytest

from pixels import colour_counts

pytestmark = pytest.mark.browser

NB = "landscape_view.ipynb"
CELLS = [
    "%load_ext tfmagic\nimport numpy as np, keras\nfrom sklearn.datasets import load_digits\n"
    "d = load_digits(); X, Y = (d.data / 16.0).astype('float32'), d.target\nkeras.utils.set_random_seed(0)\n"
    "model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation='relu'),\n"
    "                          keras.layers.Dense(64, activation='relu'), keras.layers.Dense(10)])",
    "%%descend model --optimizer adam --eta 0.01 --steps 300 --landscape -o fit\n"
    "loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(Y, model(X), from_logits=True))",
]
VIRIDIS = ["#21918c", "#fde725"]  # (the dark end is the minimum's few cells)

_VIEW_JS = """(c) => {
  const view = c.querySelector('.tfmagic-landscape');
  if (!view) return null;
  const note = view.querySelector('.tfmagic-landscape-note');
  const lines = Array.from(view.querySelectorAll('.tfmagic-landscape-chart g.curve path.line'))
      .map(p => p.getAttribute('d') || '');
  return {note: note ? note.textContent : '', path: lines.join(' '),
          title: (view.querySelector('.mainheading') || {}).textContent || ''};
}"""


def test_the_digits_cell_shows_the_preview_then_the_fine_slice_and_the_path(module_lab):
    lab = module_lab
    lab.run_all_with_sidebar(NB, CELLS)
    cell = lab.cell(NB, 1)
    seen = []

    def fine():
        state = cell.evaluate(_VIEW_JS) if cell.count() else None
        if state and state["note"] and (not seen or seen[-1] != state["note"]):
            seen.append(state["note"])
            if "41x41 coming" in state["note"] and len(seen) == 1:
                lab.element_screenshot(cell.locator(".tfmagic-landscape").first, "landscape-preview-11x11")
        return state if state and "grid 41x41" in state["note"] and "coming" not in state["note"] else None

    state = lab.poll(fine, timeout_s=180, what="the 41x41 slice", interval_ms=30)
    assert "grid 11x11, 41x41 coming" in seen[0], seen  # the preview came first
    assert "8,970 parameters" in state["title"]
    lab.wait_for_output(NB, 1, "max_steps", timeout_ms=120_000)
    state = lab.poll(lambda: (lambda s: s if "lies in it" in s["note"] and s["path"].count(",") >= 3 else None)(
        cell.evaluate(_VIEW_JS)), timeout_s=30, what="the path on the slice")
    view = cell.locator(".tfmagic-landscape").first
    lab.element_screenshot(view, "landscape-41x41-1280")
    lab.screenshot("landscape-page-1280")
    counts = colour_counts(lab.page, view.locator(".tfmagic-landscape-chart").first, VIRIDIS, tol=40)
    assert counts["#21918c"] > 1000 and counts["#fde725"] > 50, counts  # the heatmap spans the colour scale

    view.locator(".tfmagic-landscape-zoom").first.click()
    zoomed = lab.poll(lambda: (lambda s: s if "zoomed to a, b in ±" in s["note"] and "coming" not in s["note"] else None)(
        cell.evaluate(_VIEW_JS)), timeout_s=60, what="the zoomed slice")
    assert "grid 41x41" in zoomed["note"] and zoomed["path"] != state["path"]  # the path redrawn on the new scale
    lab.element_screenshot(view, "landscape-zoomed-1280")


def test_the_lesson_shows_sgd_and_adam_on_one_slice(module_lab):
    """examples/landscape.ipynb after Run All, at 1280 px with the file browser open: the
    comparison's live slice draws both paths, and the saved record under it the same slice
    and the zoomed one, each path named."""
    import shutil

    import nbformat

    lab = module_lab
    name = "landscape.ipynb"
    examples = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples"
    shutil.copy(examples / name, lab.server.root_dir / name)
    lab.open_notebook(name)
    lab.opened_kernels.append(lab.kernel_id(name))
    lab.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
    lab.run_all()
    cells = nbformat.read(examples / name, as_version=4).cells
    index = next(i for i, c in enumerate(cells) if "--compare optimizer=sgd,adam" in c.source)
    cell = lab.cell(name, index)
    state = lab.poll(lambda: (lambda s: s if s and "grid 41x41" in s["note"] and "adam:" in s["note"]
                              and "coming" not in s["note"] else None)(cell.evaluate(_VIEW_JS) if cell.count() else None),
                     timeout_s=300, what="the comparison's slice")
    assert "sgd:" in state["note"] and state["path"].count("M") >= 2  # one line per run
    records = cell.locator("svg.tfmagic-landscape-svg")
    lab.poll(lambda: records.count() == 2, timeout_s=60, what="the saved slice and its zoom")
    labels = records.nth(1).evaluate("(s) => Array.from(s.querySelectorAll('polyline')).map(p => p.dataset.label)")
    assert labels == ["sgd", "adam"]
    lab.element_screenshot(cell.locator(".tfmagic-landscape").first, "lesson-landscape-compare-1280")
    lab.element_screenshot(records.nth(1), "lesson-landscape-record-zoomed-1280")
    lab.screenshot("lesson-landscape-page-1280")
