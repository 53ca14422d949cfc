"""The example notebooks run top to bottom in a real kernel and show the course's numbers."""

import math
import pathlib
import re

import nbclient
import nbformat
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


# Appended to every notebook run: the results (-o NAME) whose panel still steers its run after Run All.
LIVE_PROBE = ("from tfmagic.kernel.runner import LiveRunner\n"
              "print('LIVE PANELS', sorted(n for n, v in dict(globals()).items() if not n.startswith('_') and any(\n"
              "    r.engine is getattr(v, 'engine', None) for r in LiveRunner._active)))")


def run_notebook(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(LIVE_PROBE))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()
    return nb


def seconds(cell):
    """How long a cell ran, from nbclient's timing metadata."""
    from datetime import datetime

    t = cell.metadata.execution
    start, end = (datetime.fromisoformat(t[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


class Outputs:
    def __init__(self, nb):
        self.text, self.stderr, self.errors, self.widgets = [], [], [], 0
        self.paced = [c for c in nb.cells if "--pace" in c.source and c.cell_type == "code"]
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            streams = {"stdout": "", "stderr": ""}  # (one print may come in several messages)
            for out in cell.outputs:
                if out.output_type == "stream":
                    streams[out.name] += out.text
                elif out.output_type == "error":
                    self.errors.append("\n".join(out.traceback))
                elif "data" in out:
                    self.text.append(out.data.get("text/plain", ""))
                    self.widgets += "application/vnd.jupyter.widget-view+json" in out.data
            self.text.append(streams["stdout"])
            self.stderr.append(streams["stderr"])
        self.all = "\n".join(self.text)
        live = re.search(r"LIVE PANELS (\[.*\])", self.all)
        self.live = eval(live.group(1)) if live else None
        # The %%descend cells the text before them asks to steer (drag eta, press Play).
        self.steerable, said = [], False
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                said = bool(re.search(r"\bdrag\b|\bPlay\b", cell.source))
            elif cell.source.startswith("%%descend") and said:
                out = re.search(r" -o (\w+)", cell.source.split("\n")[0])
                self.steerable.append(out and out.group(1))

    def steerable_panels_are_live(self):
        """Every panel the text says to steer still steers its variables after Run All."""
        assert self.steerable and self.live is not None, (self.steerable, self.live)
        return all(name in self.live for name in self.steerable)


@pytest.fixture(scope="module")
def lecture1():
    return Outputs(run_notebook("lecture1.ipynb"))


def test_lecture1_tensor_basics(lecture1):
    text = lecture1.all
    assert "tf.Tensor(5.0, shape=(), dtype=float32)" in text
    assert "[[ 6  8]\n [11 13]]" in text and "[[ 5 12]\n [24 36]]" in text
    assert re.search(r"d\s+tensor\s+\(\)\s+int32", text) and re.search(r"e\s+tensor\s+\(\)\s+float32", text)
    assert "[False  True False]" in text and "[ 5 10 12]\n[1 2]" in text


def test_lecture1_course_errors_are_explained(lecture1):
    dtype, shape = lecture1.errors
    assert "InvalidArgumentError" in dtype and "tfmagic hint" in dtype and "tf.cast(t, tf.float32)" in dtype
    assert "Incompatible shapes: [2] vs. [3]" in shape and "do not broadcast" in shape


def test_lecture1_autodiff_numbers(lecture1):
    text = lecture1.all
    assert "dy/dx = 6 " in text
    assert "df/dx = 24 " in text and "df/dy = 1 " in text
    assert "df/dx = 48 " in text
    assert re.search(r"df/dW = \[\[.*\]\]\s+\(shape=\(2, 2\) dtype=float32\)", text, re.S)


def test_lecture1_gradient_descent(lecture1):
    text = lecture1.all
    assert "iteration: 49 x: 2.000114 y: 0.0" in text  # the course's own loop
    assert "iteration: 40 x: 2.00085" in text  # %%descend --print-every
    m = re.search(r"x = ([\d.]+)  y = ([\d.e-]+)  status: max_steps  steps: 50", text)
    assert m and abs(float(m.group(1)) - 2.0) < 1e-3 and float(m.group(2)) < 1e-5
    assert "diverged after" in text and "eta=1.1 is too large" in text and "2/λ = 1" in text
    assert re.search(r"\d+\.\dx faster compiled; traced once", text)
    assert "same as version 1: True" in text
    assert re.search(r"converged \d+ steps: a = 0\.99\d* +b = 0\.99", text)
    assert lecture1.widgets >= 5  # live panels for the %%descend cells
    # The paced run: 300 mini-batch steps (unseeded shuffle) leave m near d's mean, 1.952, whose
    # stationary spread is ~0.045 (one in eight runs printed m < 1.9).
    paced = re.search(r"max_steps: 300 steps of sgd \(eta=0\.02\).*\n  m = ([\d.]+)", text)
    assert paced and abs(float(paced.group(1)) - 1.952) < 0.25, paced
    assert [9.5 <= seconds(c) < 15 for c in lecture1.paced] == [True]  # 300 steps at 30 steps/s, then the next cell


def test_lecture1_steerable_panels_are_live_after_run_all(lecture1):
    assert lecture1.steerable == ["steer"] and lecture1.steerable_panels_are_live(), lecture1.live


def test_lecture1_shows_no_red_noise(lecture1):
    assert [e for e in lecture1.stderr if e.strip()] == []


def test_learning_rate_notebook():
    out = Outputs(run_notebook("learning_rate.ipynb"))
    assert re.search(r"eta=1\.1\s+diverged", out.all)
    assert re.search(r"eta=0\.1\s+converged\s+final loss 0\.0", out.all)
    assert "sgd diverges above eta = 1.0" in out.all
    assert re.search(r"max_steps: 300 steps of sgd \(eta=0\.02\)", out.all)  # the paced run to steer
    assert [9.5 <= seconds(c) < 15 for c in out.paced] == [True]
    assert out.steerable == ["steer"] and out.steerable_panels_are_live(), out.live
    assert out.errors == [] and [e for e in out.stderr if e.strip()] == []


def test_earlier_runs_notebook():
    """The course's cell run with eta 0.1, 0.3, 1.0: the third shows the first two faint, labelled."""
    nb = run_notebook("earlier_runs.ipynb")
    out = Outputs(nb)
    assert re.search(r"^run 2: eta 0.1 → 0.3\s+max_steps\s+final loss 0$", out.all, re.M), out.all
    assert re.search(r"^run 1: first run \(sgd, eta 0.1\)\s+max_steps\s+final loss 0$", out.all, re.M)
    assert "this run, run 3: final loss 64" in out.all  # eta 1.0: x jumps between 10 and -6
    third = [c for c in nb.cells if c.source.startswith("%%descend x=10.0 --eta 1.0")][0]
    html = "".join(o.data.get("text/html", "") for o in third.outputs if "data" in o)
    faint = re.findall(r"<polyline [^>]*class='tfmagic-earlier'[^>]*data-label='([^']*)'[^>]*data-last-y='([^']*)'", html)
    assert faint == [("run 2: eta 0.1 → 0.3", "0.0"), ("run 1: first run (sgd, eta 0.1)", "0.0")], faint
    assert re.search(r"<td>3 \(this run\)</td><td>eta 0.3 → 1</td><td>50</td><td>64</td><td>max_steps</td>", html)
    assert out.widgets >= 3 and out.errors == [] and [e for e in out.stderr if e.strip()] == []


def test_landscapes_notebook():
    out = Outputs(run_notebook("landscapes.ipynb"))
    m = re.search(r"a = ([\d.]+)\n  b = ([\d.]+)", out.all)
    assert m and abs(float(m.group(1)) - 1) < 1e-2 and abs(float(m.group(2)) - 1) < 1e-2
    ends = {name: (status, float(loss)) for name, status, loss in re.findall(
        r"^(sgd|momentum|adam|rmsprop)\s+(\S+)\s+final loss (\S+)", out.all, re.M)}
    assert ends["momentum"][0] == "converged" and ends["sgd"][0] == "max_steps"
    assert ends["momentum"][1] < 1e-5 < ends["sgd"][1]
    m = re.search(r"(\d+) distinct minima; best run: start \d+ loss (\S+)", out.all)
    assert m and int(m.group(1)) >= 2 and float(m.group(2)) < -0.5
    assert not out.steerable or out.steerable_panels_are_live(), (out.steerable, out.live)
    assert out.errors == []


def test_first_network_notebook():
    out = Outputs(run_notebook("first_network.ipynb"))
    m = re.search(r"loss ([\d.]+) -> ([\d.]+); training accuracy ([\d.]+)", out.all)
    assert m and float(m.group(2)) < 0.1 * float(m.group(1)) and float(m.group(3)) > 0.95
    assert not out.steerable or out.steerable_panels_are_live(), (out.steerable, out.live)
    assert out.errors == [] and [e for e in out.stderr if e.strip()] == []


def test_train_digits_notebook(tmp_path):
    """Mini-batches of scikit-learn's digits, five epochs with validation; saved and reopened,
    the notebook keeps the static record (the live widgets are gone where no kernel runs)."""
    path = tmp_path / "saved.ipynb"
    nbformat.write(run_notebook("train_digits.ipynb"), path)
    reopened = nbformat.read(path, as_version=4)
    html = "".join(o.data.get("text/html", "") for c in reopened.cells if c.cell_type == "code"
                   for o in c.outputs if "data" in o)
    for kept in ("tfmagic-loss-svg", "tfmagic-sweep-svg", "tfmagic-epochs"):
        assert kept in html
    out = Outputs(reopened)
    m = re.search(r"validation accuracy after 5 epochs: ([\d.]+)", out.all)
    assert m and float(m.group(1)) > 0.9
    assert "(1437, 64) (360, 64)" in out.all
    m = re.search(r"suggested eta ≈ ([\d.e-]+)", out.all)  # --find-eta, before training
    used = re.search(r"of adam \(eta=([\d.e-]+)\)", out.all)
    assert used and f"{float(used.group(1)):.3g}" == m.group(1)  # ... and the training uses it
    assert out.steerable == ["fit"] and out.steerable_panels_are_live(), out.live
    m = re.search(r"model.fit with the steered schedule: validation accuracy ([\d.]+)", out.all)
    assert m and float(m.group(1)) > 0.85  # fit.eta_schedule() trains in Keras's own loop
    assert out.errors == [] and [e for e in out.stderr if e.strip()] == []


def test_every_cell_of_every_example_has_an_id():
    for path in sorted(EXAMPLES.glob("*.ipynb")):
        import json

        cells = json.loads(path.read_text())["cells"]
        ids = [c.get("id") for c in cells]
        assert all(ids) and len(set(ids)) == len(ids), (path.name, ids)


def test_landscape_notebook():
    """The digits model's slice: its centre is the start's loss; sgd and adam on the same slice."""
    out = Outputs(run_notebook("landscape.ipynb"))
    assert out.errors == [] and [e for e in out.stderr if e.strip()] == []
    m = re.search(r"8970 parameters; the loss at the slice's centre (\d\.\d+), at the start (\d\.\d+)", out.all)
    assert m and m.group(1) == m.group(2)
    lo, hi = map(float, re.search(r"the loss runs from ([\d.]+) to ([\d.]+)", out.all).groups())
    assert lo < float(m.group(1)) < hi
    assert float(re.search(r"adam's path ends at .*: ([\d.]+)% of the distance", out.all).group(1)) < 10
    assert "the same directions as the adam run above: True" in out.all
    ends = dict(re.findall(r"(sgd|adam): (\w+), final loss ([\d.]+)", out.all)[i][::2] for i in range(2))
    assert float(ends["adam"]) < 0.01 < float(ends["sgd"]) < float(m.group(1))
    a = {k: (float(x), float(y)) for k, x, y in re.findall(r"(sgd|adam): .*path ends at a = (-?[\d.]+), b = (-?[\d.]+)", out.all)}
    assert math.hypot(*a["adam"]) > 2 * math.hypot(*a["sgd"]) > 0  # adam moves further on the slice
    assert out.widgets >= 2  # the panel and the comparison


def test_sharpness_notebook(tmp_path):
    """--sharpness on an MLP: a small eta sharpens below 2/eta; too large an eta's λ crosses 2/eta,
    the loss jumps, and λ then hovers at 2/eta (the edge of stability). Saved, the static chart stays."""
    path = tmp_path / "saved.ipynb"
    nbformat.write(run_notebook("sharpness.ipynb"), path)
    reopened = nbformat.read(path, as_version=4)
    html = "".join(o.data.get("text/html", "") for c in reopened.cells if c.cell_type == "code"
                   for o in c.outputs if "data" in o)
    assert html.count("tfmagic-sharpness-svg") == 2
    out = Outputs(reopened)
    m = re.search(r"λ from ([\d.]+) \(step 100\) to ([\d.]+) \(step 3000\); 2/eta = 100", out.all)
    assert m and 1.03 * float(m.group(1)) < float(m.group(2)) < 100  # progressive sharpening, below the line
    assert "the loss fell at every 100 steps: True" in out.all
    m = re.search(r"λ crossed 2/eta = 40 at step (\d+); the loss rose at (\d+) steps from step 100 to there, "
                  r"at (\d+) in the 500 steps after", out.all)
    assert m and 200 <= int(m.group(1)) <= 2000 and int(m.group(2)) == 0 < int(m.group(3))  # stable, then not
    m = re.search(r"from step 1500 on, λ = ([\d.]+) ± ([\d.]+)", out.all)
    assert m and abs(float(m.group(1)) - 40) < 3 and float(m.group(2)) < 3
    m = re.search(r"final loss ([\d.]+) \(eta 0.02: ([\d.]+)\)", out.all)
    assert m and float(m.group(1)) < float(m.group(2))  # unstable, yet it trained further
    assert re.search(r"sharpness λ = [\d.]+ at step 3000; 2/eta = 100: below it", out.all)
    assert out.steerable == ["edge"] and out.steerable_panels_are_live(), out.live


def test_time_travel_notebook():
    out = Outputs(run_notebook("time_travel.ipynb"))
    assert "back at step 20  x = 7.3409  eta 0.01" in out.all  # 2 + 8 * 0.98**20
    assert "same eta, same run: True" in out.all
    assert re.search(r"eta=0\.01\s+loss at step 40: 12\.7 +x = 5\.5656\d\d", out.all)  # 2 + 8 * 0.98**40
    assert re.search(r"eta=0\.5\s+loss at step 40: 0 +x = 2\.000000", out.all)
    for eta in ("0.1", "0.9"):  # 2 + 5.3409 * (±0.8)**20: the same point, one sliding, one jumping
        assert re.search(rf"eta={eta}\s+loss at step 40: 0\.00379 +x = 2\.06157\d", out.all), out.all
    assert "branches (step, number): [(0, 0), (20, 5)] ; the rows from step 20 are of branch 5" in out.all
    assert out.errors == [] and [e for e in out.stderr if e.strip()] == []
