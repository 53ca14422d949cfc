"""Every output leaves a static record (HTML, inline SVG, no JavaScript) that says what the run
said: its numbers, words, and a chart whose last point is the last point reported. Generated
over each kind of output (a run, --compare, --restarts, --find-eta, %%tfgrad, a training run
with and without --validate) and how runs end (ran their steps, converged, diverged,
undefined, stopped). (%%tfgrad's record, a table, is checked in test_records_notebook.py.)"""

import itertools
import re

import numpy as np
import pytest

COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"
ROSEN = "f = (1.0 - a) ** 2 + 100.0 * (b - a ** 2) ** 2"
SINGLE = [
    ("x=10.0 --eta 0.1 --steps 50", COURSE),
    ("x=10.0 --eta 0.02 --steps 2000", COURSE),
    ("x=10.0 --eta 0.4 --steps 5000 --tol 1e-3", COURSE),
    ("x=10.0 --eta 1.5 --steps 50", COURSE),
    ("x=10.0 --eta 0.1 --steps 1", COURSE),
    ("a=-1.0 b=1.0 --eta 0.001 --steps 300", ROSEN),
    ("a=-1.0 b=1.0 --eta 0.01 --steps 300 --optimizer adam", ROSEN),
    ("x=3.0 --eta 0.5 --steps 30", "y = tf.sqrt(x - 2.5) - x"),
    ("W=tf.ones([3, 4]) --eta 0.05 --steps 80", "L = tf.reduce_sum((W - 2.0) ** 2)"),
]


def svg_of(html, css):
    m = re.search(rf"<svg class='{css}'.*?</svg>", html, re.S)
    return m and m.group(0)


def lines_of(svg):
    """label -> (last x, last y, the drawn points as pixels) of each line or set of dots."""
    out = {}
    for tag in re.findall(r"<(?:polyline|g) [^>]*data-label='[^']*'[^>]*>", svg):
        label = re.search(r"data-label='([^']*)'", tag).group(1)
        pts = re.search(r"(?:data-points|points)='([^']*)'", tag).group(1).split()
        out[label] = (float(re.search(r"data-last-x='([^']*)'", tag).group(1)),
                      float(re.search(r"data-last-y='([^']*)'", tag).group(1)),
                      [tuple(map(float, p.split(","))) for p in pts])
    return out


def check_drawn_at(svg, x, y, pixel):
    """The pixel drawn for (x, y) is where the svg's own axes put it (within a pixel)."""
    log = re.search(r"data-log='(\d)'", svg).group(1) == "1"
    x0, x1 = map(float, re.search(r"data-x-range='([^']*)'", svg).group(1).split(","))
    y0, y1 = map(float, re.search(r"data-y-range='([^']*)'", svg).group(1).split(","))
    width = float(re.search(r"width='(\d+)'", svg).group(1))
    f = np.log10 if log else (lambda v: v)
    y = max(y, y0)  # (a value <= 0 on a log axis is drawn at its floor, the axis's bottom)
    px = 40 + (x - x0) / ((x1 - x0) or 1.0) * (width - 50)
    py = 16 + (1 - (f(y) - f(y0)) / ((f(y1) - f(y0)) or 1.0)) * (110 - 36)
    assert pixel == pytest.approx((px, py), abs=0.06)


def clean(html):
    svgs = "".join(re.findall(r"<svg.*?</svg>", html, re.S))
    assert not re.search(r"\bnan\b|\binf\b", svgs, re.I), svgs[:300]
    assert "<script" not in html  # (readable where no JavaScript runs: GitHub, nbviewer)


@pytest.mark.parametrize("line,cell", SINGLE, ids=[ln for ln, _ in SINGLE])
@pytest.mark.parametrize("stopped", [False, True], ids=["ended", "stopped"])
def test_a_run_record_says_what_the_run_said(run, line, cell, stopped):
    res = run("descend", line + " --no-widgets", cell)
    if stopped:  # (Play again from the API, stopped after its first chunk; an ended run stays ended)
        first = res.status
        res.engine.observe(lambda engine, chunk: engine.request_stop())
        res.engine.run(10**6)
        assert res.status == ("stopped" if first == "max_steps" else first)
    html = res._repr_html_()
    clean(html)
    assert f">{res.status}</b>" in html and f": {res.steps} step" in html
    loss = res.final_loss
    assert ("final loss None" if loss is None else f"final loss {loss:.6g}") in html
    svg = svg_of(html, "tfmagic-loss-svg")
    finite = np.isfinite(res.history["loss"]).sum() + (loss is not None and np.isfinite(loss))
    assert (svg is not None) == (finite >= 2), (res.status, finite)
    if svg is None:
        return
    x, y, pts = lines_of(svg)["loss"]
    if loss is not None and np.isfinite(loss):
        assert (x, y) == (res.steps, loss)
    check_drawn_at(svg, x, y, pts[-1])
    assert len(pts) <= 301


TRAIN = list(itertools.product([1, 3], [16, 30], [True, False]))


@pytest.mark.parametrize("epochs,batch,validate", TRAIN)
def test_a_training_record_has_its_epoch_table_and_the_live_charts_epoch_points(ip, run, epochs, batch, validate):
    rng = np.random.default_rng(epochs * batch)
    X = rng.normal(size=(90, 2)).astype("float32")
    ip.user_ns.update(X=X, Y=X @ [[1.0], [-2.0]] + 0.1, Xv=X[:20] + 0.5, Yv=X[:20] @ [[1.0], [-2.0]])
    line = f"w=tf.zeros([2, 1]) --data X,Y --batch-size {batch} --epochs {epochs} --no-widgets"
    res = run("descend", line + " --validate Xv,Yv" * validate, "loss = tf.reduce_mean((Y - X @ w) ** 2)")
    html = res._repr_html_()
    clean(html)
    table = res.epochs
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>",
                      re.search(r"<table class='tfmagic-epochs'>.*?</table>", html).group(0))
    assert [int(r[0]) for r in rows] == list(table["epoch"]) == list(range(1, epochs + 1))
    assert [r[1] for r in rows] == [f"{v:.4g}" for v in table["loss"]]
    assert [r[2] for r in rows] == [("–" if np.isnan(v) else f"{v:.4g}") for v in table["val_loss"]]
    drawn = lines_of(svg_of(html, "tfmagic-loss-svg"))
    ends, train, val = res.epoch_points()
    assert drawn["epoch mean"][:2] == (ends[-1], train[-1]) and len(drawn["epoch mean"][2]) == epochs
    assert ("validation" in drawn) == validate
    if validate:
        assert drawn["validation"][:2] == (ends[-1], val[-1])
    assert drawn["loss"][:2] == (res.steps, res.final_loss)


SERIES = [
    ("x=10.0 --compare eta=0.01,0.1,0.9,1.1 --steps 50", COURSE),
    ("x=10.0 --compare eta=0.5,1.2 --steps 30", COURSE),
    ("x=10.0 --compare optimizer=sgd,momentum,adam --eta 0.05 --steps 200", COURSE),
    ("a=-1.0 b=1.0 --compare eta=0.0005,0.001,0.004 --steps 400", ROSEN),
    ("x=-5:5 --restarts 4 --seed 1 --steps 60", COURSE),
    ("a=-2:2 b=-1:3 --restarts 6 --seed 3 --eta 0.001 --steps 300", ROSEN),
    ("x=-5:5 --restarts 3 --seed 2 --eta 1.2 --steps 40", COURSE),
]


@pytest.mark.parametrize("line,cell", SERIES, ids=[ln for ln, _ in SERIES])
def test_a_series_record_draws_every_run_to_its_final_loss(run, line, cell):
    multi = run("descend", line + " --no-widgets", cell)
    html = multi._repr_html_()
    clean(html)
    svg = svg_of(html, "tfmagic-runs-svg")
    drawn = lines_of(svg)
    assert len(drawn) == len(multi.runs)
    for label, r in multi.runs.items():
        row = re.search(rf"<tr><td>{re.escape(label)}</td><td>([^<]*)</td><td>([^<]*)</td>", html)
        assert row.groups() == (r.status, "–" if r.final_loss is None else f"{r.final_loss:.4g}")
        assert f"{label}: {r.status}" in svg  # (the legend)
        x, y, pts = drawn[f"{label}: {r.status}"]
        if r.final_loss is not None and np.isfinite(r.final_loss):
            assert (x, y) == (r.steps, r.final_loss), label
        check_drawn_at(svg, x, y, pts[-1])
    assert len(html) < 16_000  # (a saved notebook stays small: the bytes per output, README)


@pytest.mark.parametrize("line", ["x=10.0 --find-eta", "x=10.0 --find-eta --steps 60 --optimizer adam",
                                  "x=10.0 --find-eta --steps 30"])
def test_a_find_eta_record_marks_the_eta_its_text_suggests(run, line):
    sweep = run("descend", line + " --no-widgets", COURSE)
    html = sweep._repr_html_()
    clean(html)
    svg = svg_of(html, "tfmagic-sweep-svg")
    x, y, pts = lines_of(svg)["smoothed loss"]
    ok = np.isfinite(sweep.smoothed)
    assert (x, y) == (sweep.etas[ok][-1], sweep.smoothed[ok][-1])
    if sweep.suggested_eta:
        assert f"suggested eta ≈ {sweep.suggested_eta:.3g}" in html
        assert float(re.search(r"class='tfmagic-suggested' data-eta='([^']*)'", svg).group(1)) == sweep.suggested_eta
