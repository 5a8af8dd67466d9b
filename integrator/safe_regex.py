"""Regular expressions that cannot hang the router: RE2, whose time is linear in the input.

google-re2's Python `search` spends some 20 us per call rebuilding match offsets we never
read, so this adapter calls the compiled RE2 object's `Match` directly (about 1 us). That is
the one place that relies on google-re2's internals, and it checks them when imported.
"""

from __future__ import annotations

from collections.abc import Callable

import re2
from re2 import _re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is reported as the file's problem, not on stderr
_OPTIONS.never_capture = True  # only whether it matches counts
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = -1


class PatternError(ValueError):
    """Not a regular expression RE2 accepts (RE2 has no backreferences or lookaround)."""


def compile_search(pattern: str) -> Callable[[str], bool]:
    """A function telling whether `pattern` matches anywhere in a string."""
    try:
        match = re2.compile(pattern, _OPTIONS)._regexp.Match
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(reason) from None

    def search(text: str) -> bool:
        encoded = text.encode()
        return match(_UNANCHORED, encoded, 0, len(encoded))[0][0] != _NO_MATCH

    return search


def _check_internals() -> None:
    try:
        found = compile_search("b+$")
        ok = found("ab") and not found("ba") and compile_search("é")("café")
    except (AttributeError, TypeError, IndexError) as exc:
        raise RuntimeError(f"google-re2's internals changed ({exc!r}); see integrator/safe_regex.py") from exc
    if not ok:
        raise RuntimeError("google-re2's Match answers unexpectedly; update integrator/safe_regex.py")


_check_internals()
