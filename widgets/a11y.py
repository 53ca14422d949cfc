"""Accessible names for the controls ipywidgets 8 leaves unnamed: the eta slider's handle
(noUiSlider draws a <div role=slider> with no label; noUiSlider#1019 adds one from script)
and an entry without a description. `AriaNames(names)` is an invisible anywidget placed in
a panel: in the page it sets `aria-label` on the elements each CSS selector finds in that
panel, again whenever the panel redraws its controls."""

import anywidget
import traitlets


_ESM = """
function render({ model, el }) {
  el.style.display = 'none';
  let root = null, due = false;
  const name = () => {
    due = false;
    for (const [selector, label] of Object.entries(model.get('names'))) {
      for (const node of root.querySelectorAll(selector)) {
        if (node.getAttribute('aria-label') !== label) node.setAttribute('aria-label', label);
      }
    }
  };
  const soon = () => { if (!due) { due = true; requestAnimationFrame(name); } };
  // Only the controls' changes: the charts redraw many nodes several times a second.
  const observer = new MutationObserver(records => {
    if (records.some(r => !(r.target.closest && r.target.closest('.bqplot')))) soon();
  });
  const attach = (tries) => {
    root = el.isConnected && (el.closest(model.get('scope')) || el.parentElement);
    if (!root) { if (tries > 0) setTimeout(() => attach(tries - 1), 100); return; }
    observer.observe(root, { childList: true, subtree: true });
    name();
  };
  attach(600);
  model.on('change:names', soon);
  return () => observer.disconnect();
}
export default { render };
"""


# Where the keyboard is, plain in either theme (ipywidgets draws a 1-px light-blue outline
# on buttons, 2:1 on white, and none on inputs and the slider's handle).
_CSS = """
.tfmagic-panel :is(button, input, select, .noUi-handle):focus-visible,
.tfmagic-compare-view :is(button, input, select):focus-visible {
  outline: 2px solid var(--jp-brand-color1, #1976d2) !important; outline-offset: 1px;  /* (over ipywidgets' outline: none) */
}
"""


class AriaNames(anywidget.AnyWidget):
    """Sets aria-label = names[selector] on what each selector finds inside the closest `scope`;
    brings the panel's focus outline (_CSS) into the page."""

    _esm = _ESM
    _css = _CSS
    names = traitlets.Dict().tag(sync=True)
    scope = traitlets.Unicode(".tfmagic-panel").tag(sync=True)
