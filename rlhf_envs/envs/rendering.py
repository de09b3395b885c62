"""Rendering an episode: ``"ansi"`` text and ``"rgb_array"`` images of that text.

The natural picture of a text episode is its text, which ``render_mode="ansi"`` returns. The envs
also support ``"rgb_array"`` (the text drawn on a fixed-size image) because that is the mode the
rest of the ecosystem asks for: Stable-Baselines3's ``make_vec_env`` passes
``render_mode="rgb_array"`` by default, video recorders need frames, and ``gym.make`` builds
``render_mode="human"`` (``HumanRendering``) and ``"rgb_array_list"`` (``RenderCollection``) on top
of ``"rgb_array"``, which is Gymnasium's own way of offering the modes an env does not implement.

Frames are ``uint8`` arrays of shape ``(FRAME_HEIGHT, FRAME_WIDTH, 3)``, the same for every step so
that videos can be written. The prompt is drawn in blue, the completion in black below it; text that
does not fit is cut with an ellipsis.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from rlhf_envs.errors import ConfigValueError

#: the render modes of both env classes
RENDER_MODES = ["ansi", "rgb_array"]
FRAME_HEIGHT, FRAME_WIDTH = 160, 640
_MARGIN, _LINE = 6, 14
_PROMPT_RGB, _COMPLETION_RGB = (20, 60, 160), (0, 0, 0)


def check_render_mode(render_mode: Any) -> str | None:
    """Return ``render_mode`` if the envs support it (``None``, ``"ansi"``, ``"rgb_array"``)."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ConfigValueError(
            f"render_mode must be None, {' or '.join(map(repr, RENDER_MODES))}, got {render_mode!r} "
            "(gym.make turns 'human' and 'rgb_array_list' into wrappers around 'rgb_array')"
        )
    return render_mode


@functools.lru_cache(maxsize=1)
def _font() -> Any:
    from PIL import ImageFont  # Pillow comes with matplotlib, a dependency

    return ImageFont.load_default()


def _wrap(text: str, width: int, font: Any) -> list[str]:
    """Greedy line breaking of ``text`` to ``width`` pixels (breaks inside long words too)."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for ch in para:
            if font.getlength(line + ch) > width and line:
                cut = line.rfind(" ")
                if cut > 0 and ch != " ":
                    lines.append(line[:cut])
                    line = line[cut + 1 :]
                else:
                    lines.append(line)
                    line = ""
                if ch == " " and not line:
                    continue
            line += ch
        lines.append(line)
    return lines


def text_frame(prompt: str, completion: str) -> np.ndarray:
    """Draw ``prompt`` and ``completion`` on a white ``(FRAME_HEIGHT, FRAME_WIDTH, 3)`` uint8 image."""
    from PIL import Image, ImageDraw

    font = _font()
    image = Image.new("RGB", (FRAME_WIDTH, FRAME_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    width = FRAME_WIDTH - 2 * _MARGIN
    rows = [(line, _PROMPT_RGB) for line in _wrap(prompt, width, font)]
    rows += [(line, _COMPLETION_RGB) for line in _wrap("> " + completion, width, font)]
    fit = (FRAME_HEIGHT - 2 * _MARGIN) // _LINE
    if len(rows) > fit:
        rows = rows[:fit]
        rows[-1] = (rows[-1][0][: max(0, len(rows[-1][0]) - 3)] + "...", rows[-1][1])
    for i, (line, colour) in enumerate(rows):
        draw.text((_MARGIN, _MARGIN + i * _LINE), line, fill=colour, font=font)
    return np.asarray(image, dtype=np.uint8).copy()
