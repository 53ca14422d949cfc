"""Time to first feedback (issue 14): from running a %%descend cell (TensorFlow already
imported) to the first loss point drawn on its chart, measured in the page itself."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

NB = "first_feedback.ipynb"
CELLS = [
    "%load_ext tfmagic\nimport tensorflow as tf\nprint(float(tf.constant(1.0)))",
    "%%descend x=10.0 --eta 0.1 --steps 50\ny = tf.pow(x, 2.0) - 4.0 * x + 4.0",
]

# Runs cell args[1] and resolves with the milliseconds until its loss chart has a point.
_TIMED_RUN = """
  panel.content.activeCellIndex = args[1];
  const t0 = performance.now();
  window.jupyterapp.commands.execute('notebook:run-cell');
  return new Promise((resolve, reject) => {
    const give_up = setTimeout(() => reject(new Error('no loss point after 60 s')), 60000);
    const look = () => {
      const cell = panel.content.widgets[args[1]].node;
      const line = cell.querySelector('.tfmagic-loss-chart svg g.curve path.line');
      const d = line && line.getAttribute('d');
      if (d && /M\\s*-?[0-9]/.test(d) && !d.includes('NaN')) {
        clearTimeout(give_up);
        resolve(performance.now() - t0);
      } else {
        requestAnimationFrame(look);
      }
    };
    look();
  });
"""


def test_first_loss_point_after_running_a_cell(module_lab):
    lab = module_lab
    lab.write_notebook(NB, CELLS)
    lab.open_notebook(NB)
    kernel = lab.kernel_id(NB)
    if kernel:
        lab.opened_kernels.append(kernel)
    lab.page.evaluate(lab._js("panel.content.activeCellIndex = 0; "
                              "window.jupyterapp.commands.execute('notebook:run-cell'); return true;"), [NB])
    lab.wait_for_output(NB, 0, "1.0", timeout_ms=120_000)  # TensorFlow imported
    first = lab.page.evaluate(lab._js(_TIMED_RUN), [NB, 1])
    lab.wait_for_output(NB, 1, "max_steps", timeout_ms=60_000)
    again = lab.page.evaluate(lab._js(_TIMED_RUN), [NB, 1])  # the same cell once more
    print(f"\nfirst loss point: {first:.0f} ms on a cell's first run, {again:.0f} ms on its re-run")
    assert 0 < first < 60_000 and 0 < again < 60_000
    # (times are reported, not asserted: the machine's load moves them; the re-run's reuse is checked)
    lab.wait_for_output(NB, 1, "max_steps", timeout_ms=60_000)
    assert "Reused the compiled steps" in lab.output_text(lab.cell_outputs(NB, 1))
