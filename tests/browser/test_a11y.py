"""The panel in JupyterLab's dark theme and by keyboard, at 1280 px with the file browser open.

One notebook, one Run All: a 2-D run (its surface and colour key, the static result under
it), a --compare view, and a long run the keyboard drives. axe-core (npm, installed by
.ci/run into tests/browser/axe) scans the cells' outputs, not JupyterLab's own chrome,
in the light theme and in JupyterLab Dark (set through the Settings menu's command);
screenshots of both land in tests/artifacts/, and every text's contrast (HTML and the
charts' SVG) is checked against WCAG AA. Then keyboard only: from the selected cell, Tab
visits every control in the order shown, each with a name; arrow and Page keys on the eta
slider change the eta the run uses (history['eta'] holds it); Enter opens the tensor table,
Enter on Stop stops the cell's run, Space on Play starts it again, Enter on Stop stops it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from test_descend_ui import slider_exponent, wait_status

pytestmark = pytest.mark.browser

LAB_VIEWPORT = {"width": 1280, "height": 1500}
NB = "a11y.ipynb"
AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ETA0 = 0.0001
CELLS = [
    "%load_ext tfmagic",
    "%%descend a=-1.5 b=2.0 --optimizer adam --eta 0.02 --steps 300 -o r2\n"
    "loss = (1.0 - a) ** 2 + 100.0 * (b - a ** 2) ** 2",
    "%%descend x=10.0 --steps 200 --compare eta=0.01,0.1,0.5,0.9,1.1 -o runs\n"
    "y = tf.pow(x, 2.0) - 4.0 * x + 4.0",
    "%%descend u=-5:5 v=-5:5 --restarts 3 --seed 1 --eta 0.01 --steps 100\n"
    "f = (u**2 + v - 11)**2 + (u + v**2 - 7)**2 - 50",
    "%%descend z=3.0 --find-eta --steps 60\nloss = (z - 1.0) ** 2",
    "g = tf.Variable(4.0)",
    "%%tfgrad\nh = tf.pow(g, 2.0) * 3.0",
    f"%%descend w=10.0 --eta {ETA0} --steps 100000000 --jit off -o r3\n"
    "loss = (w - 2.0) ** 2",
    "print(r3.status, sorted({float(f'{e:.6g}') for e in r3.history['eta']}))",
]
C_SURFACE, C_COMPARE, C_RESTARTS, C_FIND_ETA, C_GRAD, C_LONG, C_PRINT = 1, 2, 3, 4, 6, 7, 8
SCANNED = (C_SURFACE, C_COMPARE, C_RESTARTS, C_FIND_ETA, C_GRAD, C_LONG)
THEMES = ("JupyterLab Light", "JupyterLab Dark")
# The controls in the order the panel shows them (find eta is off while a run goes).
TAB_ORDER = ["tfmagic-eta", "tfmagic-eta-text", "tfmagic-optimizer", "tfmagic-device", "tfmagic-play",
             "tfmagic-step", "tfmagic-stop", "tfmagic-reset", "tfmagic-steps"]
KEYS = ["ArrowRight", "ArrowRight", "PageUp", "ArrowLeft"]  # on the eta slider: +0.01, +0.05, -0.01 decade
MOVE = 0.06  # what KEYS move eta by, in decades


def set_theme(lab, theme):
    """The theme chosen as a person does (Settings > Theme runs this command); wait until applied."""
    lab.page.evaluate("(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme)
    light = "true" if theme == THEMES[0] else "false"
    lab.page.wait_for_function(
        "(l) => document.body.dataset.jpThemeLight === l && document.body.dataset.jpThemeName", arg=light,
        timeout=30_000)
    lab.page.wait_for_function("(t) => document.body.dataset.jpThemeName === t", arg=theme, timeout=30_000)
    lab.page.wait_for_timeout(500)  # (the theme's stylesheet swapped in; let a frame draw with it)


def axe_scan(lab, cells):
    """axe-core's serious and critical violations in the outputs of `cells` (tfmagic's own DOM)."""
    assert AXE.exists(), f"axe-core missing: npm install --prefix {AXE.parents[2]} (as .ci/run does)"
    if not lab.page.evaluate("() => !!window.axe"):
        lab.page.add_script_tag(path=str(AXE))
    panel_id = lab.page.evaluate(lab._js("return panel.id;"), [NB])
    include = [[f'[id="{panel_id}"] .jp-Cell[data-windowed-list-index="{i}"] .jp-Cell-outputWrapper'] for i in cells]
    found = lab.page.evaluate("""async (include) => {
        const r = await window.axe.run({include}, {resultTypes: ['violations']});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
          id: v.id, impact: v.impact, help: v.help,
          nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(' '), summary: n.failureSummary}))}));
    }""", include)
    return found


_CONTRAST_JS = """(selectors) => {
  const rgba = s => { const m = s && s.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const v = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
  const over = (top, under) => top.slice(0, 3).map((c, i) => c * top[3] + under[i] * (1 - top[3])).concat([1]);
  const lum = c => { const f = x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const background = el => {  // the first opaque background behind el, blending translucent ones on the way
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const b = rgba(getComputedStyle(e).backgroundColor);
      if (b && b[3] > 0) { layers.push(b); if (b[3] >= 1) break; }
    }
    let c = [255, 255, 255, 1];
    for (const b of layers.reverse()) c = over(b, c);
    return c;
  };
  const out = [];
  for (const sel of selectors) for (const root of document.querySelectorAll(sel)) {
    const nodes = [...root.querySelectorAll('svg text'), ...root.querySelectorAll('*')].filter(e =>
      e.namespaceURI !== 'http://www.w3.org/2000/svg' || e.tagName === 'text');
    for (const e of new Set(nodes)) {
      const own = [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
      if (!own || e.closest('.jp-InputArea, .jp-OutputPrompt') || e.closest('button:disabled, input:disabled, select:disabled')) continue;
      const r = e.getBoundingClientRect(), st = getComputedStyle(e);
      if (!r.width || !r.height || st.visibility === 'hidden') continue;
      let opacity = 1;
      for (let a = e; a; a = a.parentElement) opacity *= parseFloat(getComputedStyle(a).opacity);
      if (opacity < 0.05) continue;
      const bg = background(e.tagName === 'text' ? e.ownerSVGElement : e);
      const ink = rgba(e.tagName === 'text' ? st.fill : st.color);
      if (!ink) continue;
      const fg = over([ink[0], ink[1], ink[2], ink[3] * opacity], bg);
      const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      const big = parseFloat(st.fontSize) >= 18.66 || (parseFloat(st.fontSize) >= 14 && parseInt(st.fontWeight) >= 700);
      out.push({text: own.slice(0, 40), ratio: Math.round(ratio * 100) / 100, need: big ? 3 : 4.5,
                where: ((e.closest('[class*="tfmagic-"]') || e).getAttribute('class') || e.tagName)});
    }
  }
  return out;
}"""


def low_contrast(lab, cells):
    """Every piece of text in the outputs of `cells` (HTML and the charts' SVG) whose contrast
    with what is behind it is under WCAG AA (4.5:1; 3:1 for large text)."""
    panel_id = lab.page.evaluate(lab._js("return panel.id;"), [NB])
    seen = lab.page.evaluate(_CONTRAST_JS, [
        f'[id="{panel_id}"] .jp-Cell[data-windowed-list-index="{i}"] .jp-Cell-outputWrapper' for i in cells])
    assert len(seen) > 50, seen  # (the axes' ticks alone are more)
    return [t for t in seen if t["ratio"] < t["need"]]


def focused(lab):
    """The tfmagic control (its CSS class) that holds the keyboard focus, and its accessible name."""
    return lab.page.evaluate("""() => {
      const el = document.activeElement;
      if (!el) return null;
      const owner = el.closest('[class*="tfmagic-"]');
      const cls = owner ? Array.from(owner.classList).find(c => c.startsWith('tfmagic-')) : null;
      const byId = id => { const e = id && document.getElementById(id); return e ? e.textContent.trim() : ''; };
      const label = el.labels && el.labels.length ? el.labels[0].textContent.trim() : '';
      const name = el.getAttribute('aria-label') || (el.getAttribute('aria-labelledby') || '').split(' ').map(byId).join(' ').trim()
                   || label || (el.tagName === 'BUTTON' ? el.textContent.trim() : '') || el.title || '';
      const st = getComputedStyle(el);
      const ring = st.outlineStyle !== 'none' ? parseFloat(st.outlineWidth) : 0;
      return {cls, tag: el.tagName, name, ring};
    }""")


def tab_to(lab, css, key="Tab"):
    """Press Tab (or `key`) until the control with class `css` has the focus."""
    for _ in range(3 * len(TAB_ORDER)):
        lab.page.keyboard.press(key)
        if (focused(lab) or {}).get("cls") == css:
            return
    raise AssertionError(f"{key} never reached {css}")


def focus_shot(lab, locator, stem):
    """A screenshot of a control with 10 px around it (its focus outline is drawn outside it)."""
    box = locator.bounding_box()
    lab.page.screenshot(path=str(lab.artifacts / f"{stem}.png"), clip={
        "x": box["x"] - 10, "y": box["y"] - 10, "width": box["width"] + 20, "height": box["height"] + 20})


@pytest.fixture(scope="module")
def notebook(module_lab):
    lab = module_lab
    lab.run_all_with_sidebar(NB, CELLS)
    lab.wait_for_output(NB, C_SURFACE, "final loss", timeout_ms=180_000)
    lab.wait_for_output(NB, C_COMPARE, "best:", timeout_ms=180_000)
    lab.wait_for_output(NB, C_RESTARTS, "best:", timeout_ms=180_000)
    lab.wait_for_output(NB, C_GRAD, "dh/dg", timeout_ms=180_000)
    wait_status(lab, lab.cell(NB, C_LONG), lambda s: s["badge"] == "running" and (s["iteration"] or 0) > 0,
                timeout_s=120, what="the long run running")
    return lab


@pytest.fixture(scope="module")
def themes(notebook):
    """Per theme: axe's findings in the three outputs, and screenshots of each."""
    lab, seen = notebook, {}
    try:
        for theme in THEMES:
            set_theme(lab, theme)
            stem = "dark" if "Dark" in theme else "light"
            seen[theme] = {"axe": axe_scan(lab, SCANNED), "contrast": low_contrast(lab, SCANNED)}
            for i, what in ((C_SURFACE, "panel"), (C_COMPARE, "compare"), (C_RESTARTS, "restarts"),
                            (C_FIND_ETA, "find-eta"), (C_LONG, "live")):
                lab.element_screenshot(lab.cell(NB, i), f"a11y-{what}-{stem}")
    finally:
        set_theme(lab, THEMES[0])  # (the session's other modules expect the default theme)
    return seen


def test_no_serious_accessibility_violation_light_or_dark(themes):
    for theme, seen in themes.items():
        assert not seen["axe"], f"{theme}: {seen['axe']}"


def test_every_text_of_the_outputs_readable_light_or_dark(themes):
    """Ticks, axis labels, titles, legends, the colour key, the status line, the static result's chart."""
    low = {theme: seen["contrast"] for theme, seen in themes.items() if seen["contrast"]}
    assert not low, low


def test_keyboard_alone_steers_the_run(themes, notebook):
    lab = notebook
    cell = lab.cell(NB, C_LONG)
    # Where the keys start: the cell selected in command mode (its prompt clicked, Escape), as
    # a person leaves it; then Tab: JupyterLab's cell toolbar, then the panel's controls.
    cell.locator(".jp-InputArea-prompt").first.click()
    lab.page.keyboard.press("Escape")
    before = []
    while (focused(lab) or {}).get("cls") != TAB_ORDER[0]:
        before.append(focused(lab))
        assert len(before) <= 3, f"Tab did not reach the eta slider: {before}"
        lab.page.keyboard.press("Tab")
    seen = [focused(lab)]
    for _ in TAB_ORDER[1:]:
        lab.page.keyboard.press("Tab")
        seen.append(focused(lab))
    assert [s and s["cls"] for s in seen] == TAB_ORDER, seen
    assert all(s["name"] for s in seen), [s for s in seen if not s["name"]]
    assert all(s["ring"] >= 2 for s in seen), [s for s in seen if s["ring"] < 2]  # (where the focus is shows)
    # (the eta slider's name says what it is, not only its value)
    assert "eta" in seen[0]["name"] and "eta" in seen[1]["name"], seen[:2]

    # The table of tensors opens from the keyboard too.
    toggle = cell.locator(".tfmagic-tensors-toggle").first
    tab_to(lab, "tfmagic-tensors-toggle")
    lab.page.keyboard.press("Enter")
    table = cell.locator(".tfmagic-tensors table").first
    table.wait_for(state="visible", timeout=10_000)
    assert "w" in table.inner_text() and "hide" in toggle.inner_text()

    # Back to the slider: arrow keys move eta, and the run takes it up.
    tab_to(lab, "tfmagic-eta", "Shift+Tab")
    focus_shot(lab, cell.locator(".tfmagic-eta").first, "a11y-focus-eta")
    handle = cell.locator(".tfmagic-eta .noUi-handle[role=slider]").first
    start = slider_exponent(handle)
    for key in KEYS:
        lab.page.keyboard.press(key)
    want = round(start + MOVE, 6)
    lab.poll(lambda: abs(slider_exponent(handle) - want) < 1e-6, 20, what=f"the handle at 10^{want}")
    eta = float(f"{10 ** want:.6g}")
    wait_status(lab, cell, lambda s: s["eta"] is not None and math.isclose(s["eta"], eta, rel_tol=1e-5),
                timeout_s=30, what=f"the run at eta {eta}")


    tab_to(lab, "tfmagic-stop")
    lab.page.keyboard.press("Enter")
    printed = lab.wait_for_output(NB, C_PRINT, "stopped", timeout_ms=30_000)
    assert eta in eval(printed.split(" ", 1)[1]), printed  # history['eta'] holds the eta set by keyboard
    stopped = wait_status(lab, cell, lambda s: s["badge"] == "stopped", what="stopped")
    tab_to(lab, "tfmagic-find-eta")  # (on now that no run goes)
    focus_shot(lab, cell.locator(".tfmagic-find-eta").first, "a11y-focus-find-eta")
    assert focused(lab)["name"] == "Find eta", focused(lab)

    # Play (Space) and Stop (Enter) again, by keyboard: the run goes on in the background, then stops.
    tab_to(lab, "tfmagic-play", "Shift+Tab")
    assert focused(lab)["name"].strip().lower().startswith("play"), focused(lab)
    lab.page.keyboard.press("Space")
    wait_status(lab, cell, lambda s: s["badge"] == "running" and s["iteration"] > stopped["iteration"],
                what="running again after Space on Play")
    tab_to(lab, "tfmagic-stop")
    lab.page.keyboard.press("Enter")
    wait_status(lab, cell, lambda s: s["badge"] == "stopped", what="stopped by Enter on Stop")
    lab.element_screenshot(cell, "a11y-keyboard-stopped")
