"""How long ago, as people read it: one rule for the CLI tables and the web console.

:func:`age` turns seconds into the largest whole unit that fits (``42s``, ``12m``, ``5h``,
``3d``), always rounded down, so "2h" means at least two hours and less than three. With
``parts=2`` the next unit down follows (``3h05m``, ``2d04h``); seconds are shown only below
a minute, where they are the only unit. The same numbers come out in every language:
:data:`SHORT` for the operators' terminals, :data:`VIETNAMESE` for the console's staff.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The units, largest first, in seconds.
STEPS = (86400, 3600, 60, 1)


@dataclass(frozen=True, kw_only=True)
class Units:
    """The names of day, hour, minute, second (in :data:`STEPS` order) and how to join."""

    names: tuple[str, str, str, str]
    between: str  # between the two parts of ``parts=2``
    pad: bool  # the second part in two digits (``3h05m``)


SHORT = Units(names=("d", "h", "m", "s"), between="", pad=True)
VIETNAMESE = Units(names=(" ngày", " giờ", " phút", " giây"), between=" ", pad=False)


def age(seconds: float | None, *, parts: int = 1, units: Units = SHORT, never: str = "-") -> str:
    """``seconds`` (an age or a duration) in its largest unit, rounded down; ``never``
    for None; less than zero counts as zero (a clock a little ahead)."""
    if seconds is None:
        return never
    if parts not in (1, 2):
        raise ValueError(f"parts is 1 or 2, not {parts}")
    s = max(0, int(seconds))
    first = next(i for i, step in enumerate(STEPS) if s >= step or step == 1)
    value = s // STEPS[first]
    text = f"{value}{units.names[first]}"
    second = first + 1
    if parts == 2 and second < len(STEPS) - 1:  # never seconds after minutes
        rest = s % STEPS[first] // STEPS[second]
        number = f"{rest:02d}" if units.pad else str(rest)
        text += f"{units.between}{number}{units.names[second]}"
    return text
