"""Hostile strings every surface must refuse alike: the CLI (as a subprocess) and the API (over a socket)
feed these same values to the one validation in ``keyorch.domain.validation``.

A NUL character cannot travel in a command line (``execve`` ends each argument at the first NUL), so
the CLI gets :data:`ARGV_NAMES`; an unpaired surrogate reaches the CLI as bytes that are not UTF-8
(Python decodes argv with ``surrogateescape``) and the API as a JSON ``\\udcff`` escape.
"""

from __future__ import annotations

#: Refused as a vault, keystore or template name and as a key label.
HOSTILE_NAMES: tuple[str, ...] = (
    "name\n",  # `match` with `$` accepts a final newline
    "name\r\n",
    "\nname",
    "na\nme",
    "name\t",
    " name",
    "name ",
    "na me",
    "-name",
    "",
    "a" * 129,
    "näme",
    "\uff4e\uff41\uff4d\uff45",  # fullwidth letters
    "name\u2028",  # line separator
    "name/../x",
    "name\udcff",  # from the byte 0xff on a command line
    "name\x00",
    "\x00",
)

#: Text no store can hold, refused as bad input wherever an id, name or filter is given.
UNSTORABLE: tuple[str, ...] = ("ab\x00cd", "\x00", "name\udcff", "\ud800")

ARGV_NAMES: tuple[str, ...] = tuple(n for n in HOSTILE_NAMES if "\x00" not in n)
ARGV_UNSTORABLE: tuple[str, ...] = tuple(n for n in UNSTORABLE if "\x00" not in n and "\ud800" not in n)
