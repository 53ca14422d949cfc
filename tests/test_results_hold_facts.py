"""A magic's result holds the facts its run found (MultiResult its Experiment, EtaSweepResult
its EtaSweep, GradResult its Gradients) and reads them as its own attributes: the same
objects, not copies, shown as text (repr) and HTML."""

import copy

import numpy as np
import pytest

from tfmagic.descent.experiments import Experiment
from tfmagic.descent.find_eta import EtaSweep
from tfmagic.grad.gradients import Gradients
from tfmagic.present import html, text

COURSE = "y = (x - 2.0) ** 2"
TWO_MINIMA = "y = (x * x - 1.0) ** 2"


def _holds(res, kind, names):
    assert isinstance(res.facts, kind)
    for name in names:
        assert getattr(res, name) is getattr(res.facts, name), name  # the fact's own object
        assert name in dir(res)
    with pytest.raises(AttributeError):
        res.no_such_attribute  # noqa: B018
    twin = copy.copy(res)
    assert twin.facts is res.facts and repr(twin) == repr(res)


@pytest.mark.parametrize("line", [
    "x=10.0 --steps 100 --compare eta=0.01,0.1,1.1",
    "x=10.0 --eta 0.1 --steps 100 --compare optimizer=sgd,adam",
    "x=-4:4 --restarts 4 --seed 3 --eta 0.01 --steps 200",
])
def test_a_comparison_result_holds_its_experiment(run, line):
    res = run("descend", line + " --no-widgets", TWO_MINIMA if "restarts" in line else COURSE)
    _holds(res, Experiment, ["runs", "best", "engine", "minima", "kind", "what"])
    assert repr(res) == text.multi_text(res.facts) and f"best: {res.best}" in repr(res)
    assert res._repr_html_() == html.multi_html(res.facts) and "tfmagic-compare" in res._repr_html_()


@pytest.mark.parametrize("line", ["x=10.0 --find-eta", "x=10.0 --find-eta --steps 40", "x=10.0 --find-eta --optimizer adam"])
def test_an_eta_sweep_result_holds_its_sweep(run, line):
    res = run("descend", line + " --no-widgets", COURSE)
    _holds(res, EtaSweep, ["etas", "losses", "smoothed", "suggested_eta", "bound", "status"])
    assert len(res.etas) and repr(res) == text.sweep_text(res.facts) and repr(res).startswith("find-eta: ")
    assert "tfmagic-sweep-svg" in res._repr_html_()


@pytest.mark.parametrize("line,cell,grads", [
    ("", "f = tf.pow(x, 2.0) * 3.0 + y", {"x": 24.0, "y": 1.0}),
    ("x", "f = tf.pow(x, 3.0)", {"x": 48.0}),
    ("x y", "f = x * 2.0", {"x": 2.0, "y": None}),
])
def test_a_gradient_result_holds_its_gradients(ip, run, line, cell, grads):
    ip.run_cell("x = tf.Variable(4.0); y = tf.Variable(2.0)")
    res = run("tfgrad", line, cell)
    _holds(res, Gradients, ["value", "target", "gradients", "reasons", "tensors", "notes"])
    got = {n: None if g is None else float(np.asarray(g)) for n, g in res.gradients.items()}
    assert got == grads
    assert repr(res) == text.grad_text(res.facts) and f"d{res.target}/dx" in repr(res)
    assert res._repr_html_() == html.grad_html(res.facts) and "tfmagic-grad" in res._repr_html_()
