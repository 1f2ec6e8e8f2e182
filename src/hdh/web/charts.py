"""Bar charts drawn on the server as SVG: they need no script, scale with the page, and
carry a text alternative (``role="img"`` and a label); the pages also give the values as
a table. A bar whose count was suppressed is drawn as a hatched stub, never with a
height, since its count must not be guessed from the picture."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from html import escape

WIDTH, HEIGHT = 320, 120
_ids = itertools.count(1)


def bars(
    data: list[tuple[str, float | None, bool]],
    *,
    label: str,
    horizontal: bool = False,
    unit: str = "",
    suppressed_word: str = "suppressed",
    number: Callable[[float], str] | None = None,
) -> str:
    """``data``: (label, value or None when suppressed, suppressed)."""
    if not data:
        return ""
    top = max((v for _, v, _ in data if v is not None), default=0.0) or 1.0
    say = number or (lambda value: _fmt(value, ""))
    hatch = f"hatch{next(_ids)}"  # one id per chart: a page holds several
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">',
        f'<defs><pattern id="{hatch}" width="4" height="4" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="2" height="4" fill="#767676"/>'
        "</pattern></defs>",
    ]
    n = len(data)
    if horizontal:
        # One row per value: its name on the left, the bar, then the count.
        row, left, right = 18, 120, 60
        rows_height = row * n
        parts[0] = (
            f'<svg class="chart bars" viewBox="0 0 {WIDTH} {rows_height}" role="img" '
            f'aria-label="{escape(label)}">'
        )
        for i, (name, value, hidden) in enumerate(data):
            y = i * row
            suppressed = hidden or value is None
            said = suppressed_word if suppressed else f"{say(value or 0.0)} {unit}".strip()
            length = 6.0 if suppressed else max((WIDTH - left - right) * (value or 0) / top, 1.0)
            fill = f"url(#{hatch})" if suppressed else "#1f5f99"
            shown_name = name if len(name) <= 18 else name[:17] + "\u2026"
            parts.append(
                f"<g><title>{escape(f'{name}: {said}')}</title>"
                f'<text x="0" y="{y + 13}" font-size="11" fill="#1b1b1b">'
                f"{escape(shown_name)}</text>"
                f'<rect x="{left}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" '
                f'fill="{fill}"/>'
                f'<text x="{left + length + 4:.1f}" y="{y + 13}" font-size="11" fill="#4a4a4a">'
                f"{escape(said)}</text></g>"
            )
    else:
        step = WIDTH / n
        for i, (name, value, hidden) in enumerate(data):
            x = i * step + step * 0.1
            height = 0.0 if value is None else (HEIGHT - 2) * value / top
            amount = suppressed_word if value is None else f"{say(value)} {unit}".strip()
            title = f"{name}: {suppressed_word if hidden else amount}"
            if hidden or value is None:
                parts.append(
                    f'<rect x="{x:.1f}" y="{HEIGHT - 6}" width="{step * 0.8:.1f}" height="6" '
                    f'fill="url(#{hatch})"><title>{escape(title)}</title></rect>'
                )
            else:
                shown = max(height, 1.0)
                parts.append(
                    f'<rect x="{x:.1f}" y="{HEIGHT - shown:.1f}" width="{step * 0.8:.1f}" '
                    f'height="{shown:.1f}" fill="#1f5f99"><title>{escape(title)}</title></rect>'
                )
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: float, unit: str) -> str:
    text = f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"
    return f"{text} {unit}".strip()
