"""Git object values shared by the bare repository and the REST stand-in.

These are plain data: signatures with timezone-aware dates, tree entries, and
parsed commits and tags, plus the checks git applies to tree paths.
"""

from __future__ import annotations

import dataclasses
import datetime
import re

ZERO_SHA = "0" * 40

TREE_MODES = {"100644": "blob", "100755": "blob", "120000": "blob"}
TREE_MODES |= {"040000": "tree", "160000": "commit"}
_SIGNATURE = re.compile(
    r"(?P<name>.*) <(?P<email>.*)> (?P<seconds>-?\d+) (?P<tz>[+-]\d{4})"
)


@dataclasses.dataclass(frozen=True)
class Signature:
    """Author, committer or tagger identity with a timezone-aware date."""

    name: str
    email: str
    date: datetime.datetime

    def to_git(self) -> str:
        """Format the signature as git stores it: ``Name <email> seconds +hhmm``."""
        if self.date.tzinfo is None:
            raise ValueError(f"Signature date {self.date!r} needs a timezone.")

        for value in (self.name, self.email):
            if any(char in value for char in "<>\n\0"):
                raise ValueError(
                    f"Signature field {value!r} contains '<', '>' or a newline."
                )

        return f"{self.name} <{self.email}> {format_git_date(self.date)}"

    @classmethod
    def from_git(cls, text: str) -> Signature:
        """Parse a signature line in git's stored format."""
        match = _SIGNATURE.fullmatch(text)
        if match is None:
            raise ValueError(f"Signature {text!r} is not in git's format.")

        tz = match["tz"]
        offset = datetime.timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))
        zone = datetime.timezone(-offset if tz[0] == "-" else offset)
        date = datetime.datetime.fromtimestamp(int(match["seconds"]), zone)
        return cls(name=match["name"], email=match["email"], date=date)


@dataclasses.dataclass(frozen=True)
class TreeEntry:
    """One entry of a tree: a path (nested with ``/``), a mode and an object id."""

    path: str
    sha: str
    mode: str = "100644"
    size: int | None = None

    @property
    def type(self) -> str:
        """Return the object type that git stores for this entry's mode."""
        if self.mode not in TREE_MODES:
            raise ValueError(
                f"Tree entry {self.path!r} has mode {self.mode!r}, but the mode "
                f"must be one of {sorted(TREE_MODES)}."
            )

        return TREE_MODES[self.mode]


@dataclasses.dataclass(frozen=True)
class Commit:
    """A parsed commit object."""

    sha: str
    tree: str
    parents: list[str]
    author: Signature
    committer: Signature
    message: str


@dataclasses.dataclass(frozen=True)
class Tag:
    """A parsed annotated tag object."""

    sha: str
    object: str
    type: str
    tag: str
    tagger: Signature | None
    message: str


def split_tree_path(path: str) -> list[str]:
    """Split a tree path into its names, rejecting paths that git or GitHub reject."""
    parts = path.split("/")
    for part in parts:
        if part in {"", ".", ".."} or part.lower() == ".git" or "\0" in part:
            raise ValueError(
                f"Tree path {path!r} is invalid: it needs non-empty names without "
                "'.', '..', '.git' or NUL characters, separated by single '/'."
            )

    return parts


def format_git_date(date: datetime.datetime, *, explicit: bool = False) -> str:
    """Format ``date`` as git's ``seconds +hhmm``, prefixed by "@" if ``explicit``."""
    offset = date.utcoffset()
    if offset is None:
        raise ValueError(f"Date {date!r} needs a timezone.")

    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    # An "@" marks the number as seconds since the epoch for git's date parser.
    prefix = "@" if explicit else ""
    return f"{prefix}{int(date.timestamp())} {sign}{hours:02d}{minutes:02d}"
