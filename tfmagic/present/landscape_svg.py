"""--landscape's static record: the loss on the slice as an image (a PNG inside the SVG: 41x41
colours in a few kB, where 1681 rectangles would take 100), each run's projected path on it,
for a saved notebook, GitHub or nbviewer. Colours as the live heatmap's: log10 of the loss
above its lowest, on bqplot's viridis; a point where the loss failed is left transparent."""

import base64
import html
import struct
import zlib

import numpy as np

from tfmagic.present.svg import COLORS

VIRIDIS = np.array([[0x44, 0x01, 0x54], [0x3b, 0x52, 0x8b], [0x21, 0x91, 0x8c], [0x5e, 0xc9, 0x62], [0xfd, 0xe7, 0x25]])
SIDE, LEFT, TOP = 220, 44, 18  # the image's side and the margins, px


def _rgba(z):
    """(n, n, 4) uint8: row 0 the top of the picture (the largest b)."""
    z = np.asarray(z, np.float64)[::-1]
    finite = np.isfinite(z)
    out = np.zeros(z.shape + (4,), np.uint8)
    if not finite.any():
        return out
    zmin, zmax = z[finite].min(), z[finite].max()
    eps = max((zmax - zmin) * 1e-4, 1e-12)  # (the live heatmap's scale: picture.surface_colors)
    h = np.log10(np.where(finite, z - zmin, 0.0) + eps)
    t = (h - h[finite].min()) / ((h[finite].max() - h[finite].min()) or 1.0) * (len(VIRIDIS) - 1)
    lo = np.clip(np.floor(t).astype(int), 0, len(VIRIDIS) - 2)
    rgb = VIRIDIS[lo] + (VIRIDIS[lo + 1] - VIRIDIS[lo]) * (t - lo)[..., None]
    out[..., :3] = np.round(rgb).astype(np.uint8)
    out[..., 3] = np.where(finite, 255, 0)
    return out


def _png(rgba):
    height, width = rgba.shape[:2]

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row.tobytes() for row in rgba)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def landscape_svg(land):
    """The 41x41 grid of `land` (a descent.landscape.Landscape; computed now if it is not yet)
    with every path it recorded, and where the paths are small on it (random directions hold
    little of a path), the same slice zoomed to them; '' without a landscape."""
    if land is None:
        return ""
    span = land.path_span()
    return _slice_svg(land) + (_slice_svg(land.zoomed(span), "zoomed to the paths") if span else "")


def _slice_svg(land, title=None):
    from tfmagic.descent.landscape import FINE

    z = land.grid(FINE)
    span = land.span
    px = lambda a: LEFT + (np.asarray(a, np.float64) + span) / (2 * span) * SIDE  # noqa: E731
    py = lambda b: TOP + (1 - (np.asarray(b, np.float64) + span) / (2 * span)) * SIDE  # noqa: E731
    image = base64.b64encode(_png(_rgba(z))).decode()
    body = [f"<image x='{LEFT}' y='{TOP}' width='{SIDE}' height='{SIDE}' preserveAspectRatio='none' "
            f"href='data:image/png;base64,{image}'/>"]
    paths = [p for p in land.paths if p.steps]
    keys = []
    for i, p in enumerate(paths):
        colour = "white" if len(paths) == 1 else COLORS[i % len(COLORS)]
        a, b = np.clip(p.a, -span, span), np.clip(p.b, -span, span)
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px(a), py(b)))
        label = html.escape(p.label or "path", quote=True)
        body.append(f"<polyline class='tfmagic-landscape-path' fill='none' stroke='{colour}' stroke-width='2' "
                    f"data-label='{label}' data-last-a='{p.a[-1]!r}' data-last-b='{p.b[-1]!r}' "
                    f"data-captured='{p.captured!r}' points='{pts}'/>"
                    f"<circle cx='{px(a[-1]):.1f}' cy='{py(b[-1]):.1f}' r='3.5' fill='{colour}' stroke='black'/>")
        keys.append((p.label or "path", colour, p.captured))
    body.append(f"<rect x='{px(0) - 3:.1f}' y='{py(0) - 3:.1f}' width='6' height='6' fill='white' stroke='black'/>")
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
    text_x = LEFT + SIDE + 10
    lines = [f"loss {lo:.4g} (dark) to {hi:.4g} (yellow),", "log scale above the lowest", "",
             "square: the start; lines: the paths,", "projected; in the slice lies"]
    lines += [f"{k}: {100 * c:.1f}% of its distance" for k, _, c in keys]
    text = "".join(f"<text x='{text_x + (8 if i >= 5 else 0)}' y='{TOP + 12 + 14 * i}'>{html.escape(t)}</text>"
                   for i, t in enumerate(lines))
    swatches = "".join(f"<rect x='{text_x}' y='{TOP + 12 + 14 * (5 + i) - 8}' width='3' height='10' fill='{c}' "
                       f"stroke='#888'/>" for i, (_, c, _) in enumerate(keys))
    on = "" if land.samples is None else ", on {:,} of {:,} samples".format(*land.samples)
    title = (f"the same slice, {title}" if title else
             f"loss on a random slice through the start ({land.parameters:,} parameters, {FINE}x{FINE}{on})")
    height = TOP + SIDE + 30
    axis = (f"<text x='{LEFT}' y='{TOP + SIDE + 12}'>{-span:g}</text>"
            f"<text x='{LEFT + SIDE}' y='{TOP + SIDE + 12}' text-anchor='end'>{span:g}</text>"
            f"<text x='{LEFT + SIDE / 2}' y='{TOP + SIDE + 24}' text-anchor='middle'>a · direction 1</text>"
            f"<text x='{LEFT - 4}' y='{TOP + 8}' text-anchor='end'>{span:g}</text>"
            f"<text x='{LEFT - 4}' y='{TOP + SIDE}' text-anchor='end'>{-span:g}</text>"
            f"<text x='12' y='{TOP + SIDE / 2}' transform='rotate(-90 12 {TOP + SIDE / 2})' text-anchor='middle'>"
            "b · direction 2</text>")
    return (f"<svg class='tfmagic-landscape-svg' width='{text_x + 230}' height='{height}' role='img' "
            f"aria-label='{html.escape(title, quote=True)}' data-grid='{z.shape[0]}' data-span='{span!r}' "
            f"data-lowest='{lo!r}' data-highest='{hi!r}' style='font:10px sans-serif'>"
            f"<text x='{LEFT}' y='11' fill='#555'>{html.escape(title)}</text>"
            + "".join(body) + axis + text + swatches + "</svg>")
