"""Charts as SVG, drawn here: no chart library to ship, nothing to run in the page, and the
live pages swap the whole fragment. Every label is escaped."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 32


def _nice(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k at or above value."""
    if value <= 0:
        return 1.0
    exponent = 10.0 ** int(f"{value:e}".split("e")[1])
    for step in (1, 2, 5, 10):
        if value <= step * exponent:
            return float(step * exponent)
    return 10.0 * exponent


def _label(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _frame(title: str, y_max: float, x_labels: Sequence[tuple[float, str]], body: str) -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    grid = []
    for i in range(5):
        y = TOP + plot_h * (1 - i / 4)
        grid.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_label(y_max * i / 4))}</text>"
        )
    for x, text in x_labels:
        grid.append(
            f'<text class="tick" x="{LEFT + x * plot_w:.1f}" y="{HEIGHT - 10}" '
            f'text-anchor="middle">{escape(text)}</text>'
        )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">'
        f"<title>{escape(title)}</title>{''.join(grid)}{body}</svg>"
    )


def line_chart(points: Sequence[tuple[float, float]], *, title: str, x_unit: str = "s") -> Markup:
    """y over x (x from 0 to its largest value); an empty chart says so."""
    if not points:
        return Markup('<p class="empty">nothing finished yet</p>')
    x_max = max(max(x for x, _ in points), 1e-9)
    y_max = _nice(max(y for _, y in points) * 1.05)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    coords = [(LEFT + plot_w * x / x_max, TOP + plot_h * (1 - y / y_max)) for x, y in points]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords))
    area = f"{path} L{coords[-1][0]:.1f},{TOP + plot_h} L{coords[0][0]:.1f},{TOP + plot_h} Z"
    dots = "".join(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2"/>' for x, y in coords)
    labels = [(i / 4, _label(x_max * i / 4) + (f" {x_unit}" if i == 4 else "")) for i in range(5)]
    body = f'<path class="area" d="{area}"/><path class="line" d="{path}"/>{dots}'
    return _frame(title, y_max, labels, body)


def bar_chart(counts: Sequence[int], *, width: int, title: str, unit: str = "tokens") -> Markup:
    """A histogram: bin i covers [i*width, (i+1)*width)."""
    if not counts or not any(counts):
        return Markup('<p class="empty">no generations yet</p>')
    y_max = _nice(max(counts) * 1.05)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / len(counts)
    bars = []
    for i, n in enumerate(counts):
        h = plot_h * n / y_max
        bars.append(
            f'<rect class="bar" x="{LEFT + i * bar_w + 1:.1f}" y="{TOP + plot_h - h:.1f}" '
            f'width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}">'
            f"<title>{i * width}–{(i + 1) * width} {escape(unit)}: {n}</title></rect>"
        )
    n_bins = len(counts)
    labels = [(i / 4, _label(n_bins * width * i / 4)) for i in range(5)]
    return _frame(title, y_max, labels, "".join(bars))
