"""Stop strings over a stream of text pieces, found even when they span piece (token) boundaries."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizer.markup import partial_tag_length


class StopStringMatcher:
    """Passes text through until the first stop string; nothing after it is ever released.

    The longest tail that could still grow into a stop string is held back, so a stop string split across
    pieces is found, and held text is released as soon as it can no longer start one (or at `flush`).
    The first stop string to complete ends the text; when several complete in the same step, the one starting
    first wins (the longest among those starting there). Without `include_stop_str_in_output` the released text
    is therefore the same however the text is split.
    """

    def __init__(self, stop_strings: Sequence[str], include_stop_str_in_output: bool = False) -> None:
        self._stops = tuple(sorted({stop for stop in stop_strings if stop}, key=len, reverse=True))
        self._include = include_stop_str_in_output
        self._held = ""
        self.matched: str | None = None
        """The stop string found, once found."""

    @property
    def has_stop_strings(self) -> bool:
        return bool(self._stops)

    def push(self, text: str) -> str:
        """Text that may be released now; after a match, always empty."""
        if self.matched is not None:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        best = -1
        for stop in self._stops:  # longest first, so a tie keeps the longest
            found = buffer.find(stop)
            if found >= 0 and (best < 0 or found < best):
                best, self.matched = found, stop
        if self.matched is not None:
            self._held = ""
            return buffer[: best + (len(self.matched) if self._include else 0)]
        held = partial_tag_length(buffer, self._stops)
        self._held = buffer[len(buffer) - held :] if held else ""
        return buffer[: len(buffer) - held]

    def flush(self) -> str:
        """End of stream: held text did not become a stop string, release it."""
        held, self._held = self._held, ""
        return "" if self.matched is not None else held
