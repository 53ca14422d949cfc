"""What a person sees in a screenshot: how many pixels of each colour an element shows
(decoded by the page's own canvas: no imaging package needed)."""

from __future__ import annotations

import base64

_COUNT_JS = """async ([b64, colours, tol]) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const rgb = colours.map(h => [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)));
  const counts = rgb.map(() => 0);
  for (let p = 0; p < d.length; p += 4) {
    for (let k = 0; k < rgb.length; k++) {
      const c = rgb[k];
      if (Math.abs(d[p] - c[0]) + Math.abs(d[p + 1] - c[1]) + Math.abs(d[p + 2] - c[2]) <= tol) counts[k]++;
    }
  }
  return counts;
}"""


def colour_counts(page, locator, colours: list[str], tol: int = 60) -> dict[str, int]:
    """colour ('#rrggbb') -> pixels of `locator`'s screenshot within `tol` (L1 over RGB) of it."""
    locator.scroll_into_view_if_needed(timeout=10_000)
    png = locator.screenshot(timeout=20_000, animations="disabled")
    counts = page.evaluate(_COUNT_JS, [base64.b64encode(png).decode(), colours, tol])
    return dict(zip(colours, counts))
