"""State colours shared by every picture of a run: the static HTML view and the plotly timeline.

One table per vocabulary: named states (``Cached``, ``TimedOut`` …) first, their state types as
the fallback. ``runview.css`` holds the same colours for the live widget (as CSS variables, so a
dark theme can restyle them). Light backgrounds get dark text (:data:`DARK_TEXT`).
"""

from __future__ import annotations

__all__ = ["DARK_TEXT", "STATE_COLORS", "TYPE_COLORS", "color_of", "text_color_of"]

STATE_COLORS = {
    "Completed": "#2e9e5b",
    "Cached": "#8fd1a8",
    "Running": "#2f7fd8",
    "Retrying": "#2f7fd8",
    "Pending": "#a0a7b4",
    "Scheduled": "#a0a7b4",
    "Late": "#d99a1e",
    "AwaitingRetry": "#e0a526",
    "Failed": "#d64545",
    "TimedOut": "#b8324f",
    "Crashed": "#8e2c8e",
    "Cancelled": "#6b6f78",
    "Paused": "#9a8c2e",
}
TYPE_COLORS = {
    "COMPLETED": "#2e9e5b",
    "RUNNING": "#2f7fd8",
    "FAILED": "#d64545",
    "CRASHED": "#8e2c8e",
    "CANCELLED": "#6b6f78",
    "SCHEDULED": "#a0a7b4",
    "PENDING": "#a0a7b4",
    "PAUSED": "#9a8c2e",
}
UNKNOWN = "#8c959f"
# backgrounds too light for white text
DARK_TEXT = frozenset({"#8fd1a8", "#a0a7b4", "#e0a526", "#d99a1e"})


def color_of(state_name: str | None, state_type: str | None = None) -> str:
    """The colour of a state: by its name, else by its type, else a neutral grey."""
    return STATE_COLORS.get(state_name or "", TYPE_COLORS.get(state_type or "", UNKNOWN))


def text_color_of(background: str) -> str:
    """Readable text on ``background``."""
    return "#1f2328" if background in DARK_TEXT else "#ffffff"
