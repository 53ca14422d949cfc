"""The example notebooks run top to bottom in a real kernel, and show the course's numbers."""

import pathlib
import re

import nbclient
import nbformat
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run_notebook(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    return nb


def outputs_of(nb):
    """(stdout + results text, stderr text) of every code cell, in order."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        text, err = [], []
        for out in cell.outputs:
            if out.output_type == "stream":
                (err if out.name == "stderr" else text).append(out.text)
            elif "data" in out:
                text.append(out.data.get("text/plain", ""))
        cells.append(("".join(text), "".join(err)))
    return cells


@pytest.fixture(scope="module")
def lecture1():
    return outputs_of(run_notebook("lecture1.ipynb"))


def test_lecture1_autodiff_numbers(lecture1):
    text = "\n".join(t for t, _ in lecture1)
    assert "dy/dx = 6 " in text  # y = x^2 at 3
    assert "df/dx = 24 " in text and "df/dy = 1 " in text
    assert "df/dx = 48 " in text  # x^3 at the constant 4
    assert re.search(r"df/dW = \[\[.*\]\]\s+\(shape=\(2, 2\) dtype=float32\)", text, re.S)


def test_lecture1_gradient_descent(lecture1):
    text = "\n".join(t for t, _ in lecture1)
    assert "iteration: 40 x: 2.00085" in text  # the course's loop output
    m = re.search(r"x = ([\d.]+)  y = ([\d.e-]+)  status: max_steps  steps: 50", text)
    assert m and abs(float(m.group(1)) - 2.0) < 1e-3 and float(m.group(2)) < 1e-5
    assert "diverged after" in text and "eta=1.1 is too large" in text
    assert "same as version 1: True" in text
    assert re.search(r"converged \d+ steps: a = 0\.99\d* +b = 0\.99", text)


def test_lecture1_shows_no_red_noise(lecture1):
    assert [err for _, err in lecture1 if err.strip()] == []
