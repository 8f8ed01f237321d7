"""The generated text seen by the scanners: append-only, addressed by absolute positions, cheap to grow.

A Python str cannot grow in place, so appending every delta to one string copies the whole output each step
(quadratic: a 1 MB output took minutes). `TextWindow` keeps in one string only the part still being searched
(from `release`'s `scan_from`) and moves older text to an archive while something may still slice it (a pending
call, whose raw text becomes content if it proves malformed). It offers the str methods the scanners use:
`len`, indexing, slicing, `find`, `rfind`, `startswith`, `endswith`.

NOTE: searches and single-character reads must start at or after the last `scan_from`; slices may reach back to
the last `keep_from`. Both are asserted.
"""

from __future__ import annotations

from typing import overload

# Released text is dropped once it is this long and at least half the window (amortised O(1) per character).
_TRIM_MIN_CHARS = 4096


class TextWindow:
    def __init__(self) -> None:
        self._text = ""
        self._base = 0  # absolute position of self._text[0]
        self._archive: list[str] = []  # contiguous text just before _base, from _archive_start
        self._archive_start = 0
        self._trim_min_chars = _TRIM_MIN_CHARS  # read at construction so tests can shrink it

    def append(self, piece: str) -> None:
        self._text += piece

    def release(self, scan_from: int, keep_from: int | None) -> None:
        """Nothing before `scan_from` will be searched again; slices may still start at `keep_from` (None: no
        slice before `scan_from` will be asked for)."""
        if keep_from is None or keep_from >= scan_from:
            keep_from = scan_from
        if self._archive and keep_from >= self._base:
            self._archive = []
        drop = scan_from - self._base
        if drop < self._trim_min_chars or drop * 2 < len(self._text):
            return
        if keep_from < scan_from:
            if not self._archive:  # a non-empty archive always ends at _base
                self._archive_start = max(keep_from, self._base)
            self._archive.append(self._text[self._archive_start - self._base if not self._archive else 0 : drop])
        self._text = self._text[drop:]
        self._base = scan_from

    def __len__(self) -> int:
        return self._base + len(self._text)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> str: ...

    def __getitem__(self, index: int | slice) -> str:
        base = self._base
        if isinstance(index, int):
            assert index >= base, "read before the scanned window"
            return self._text[index - base]
        start, stop = index.start or 0, len(self) if index.stop is None else index.stop
        assert index.step is None
        if start >= base:
            return self._text[start - base : stop - base]
        assert self._archive and start >= self._archive_start, "slice before the kept text"
        archived = "".join(self._archive)
        head = archived[start - self._archive_start : stop - self._archive_start]
        return head + (self._text[: stop - base] if stop > base else "")

    def find(self, sub: str, start: int) -> int:
        assert start >= self._base, "search before the scanned window"
        found = self._text.find(sub, start - self._base)
        return found + self._base if found >= 0 else -1

    def rfind(self, sub: str, start: int, end: int) -> int:
        assert start >= self._base, "search before the scanned window"
        found = self._text.rfind(sub, start - self._base, end - self._base)
        return found + self._base if found >= 0 else -1

    def startswith(self, prefix: str, start: int) -> bool:
        assert start >= self._base, "search before the scanned window"
        return self._text.startswith(prefix, start - self._base)

    def endswith(self, suffix: str) -> bool:
        assert len(suffix) <= len(self._text), "suffix reaches before the scanned window"
        return self._text.endswith(suffix)


Text = str | TextWindow
"""What the scanners read: a whole text (str) or a growing one."""
