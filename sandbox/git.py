"""Bare git repository driven through the git CLI's plumbing commands.

The GitHub stand-in keeps each repository as a real bare repository so that
objects, ref updates and ancestry behave exactly as git defines them. Every
command runs without a shell and with an environment built from scratch, so
the user's git configuration, hooks and ``GIT_*`` variables never apply.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from sandbox.git_objects import (
    ZERO_SHA,
    Commit,
    Signature,
    Tag,
    TreeEntry,
    format_git_date,
    split_tree_path,
)

__all__ = [
    "ZERO_SHA",
    "BareRepository",
    "Commit",
    "GitError",
    "Signature",
    "Tag",
    "TreeEntry",
    "split_tree_path",
]

_OBJECT_ID = re.compile(r"[0-9a-f]{40}")
# Wait this long for a ref lock held by a concurrent update before failing, so
# that contention ends in a clean compare-and-swap result.
_REF_LOCK_TIMEOUT_MS = 2000


class GitError(RuntimeError):
    """A git command failed for a reason other than a lost compare-and-swap."""


class BareRepository:
    """A bare repository at ``path``, read and written through git plumbing."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"BareRepository({str(self.path)!r})"

    def exists(self) -> bool:
        """Return whether ``path`` already contains a git repository."""
        return (self.path / "HEAD").is_file() and (self.path / "objects").is_dir()

    def init(self, default_branch: str = "main") -> None:
        """Create the bare repository with ``default_branch`` as its HEAD."""
        self._check_ref_name(f"refs/heads/{default_branch}")
        self.path.mkdir(parents=True, exist_ok=True)
        # An empty template directory keeps sample hooks out of the repository.
        self._run(
            "init",
            "--quiet",
            "--bare",
            "--template=",
            f"--initial-branch={default_branch}",
        )

    def write_blob(self, data: bytes) -> str:
        """Store ``data`` as a blob and return its id."""
        return self._text("hash-object", "-w", "--stdin", input=data)

    def read_blob(self, sha: str) -> bytes:
        """Return the contents of blob ``sha``."""
        return self._run("cat-file", "blob", self._check_object_id(sha))

    def write_tree(self, entries: Iterable[TreeEntry]) -> str:
        """Store a tree of ``entries`` and return its id.

        Paths may be nested (``a/b/c.py``): the subtrees are built bottom-up
        with ``git mktree``. An entry of mode ``040000`` inserts an existing
        tree whole, and nothing else may be placed under its path.
        """
        root: dict[str, object] = {}
        for entry in entries:
            if entry.type:  # Reading the type validates the mode.
                self._check_object_id(entry.sha)

            parts = split_tree_path(entry.path)
            node = root
            for part in parts[:-1]:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ValueError(
                        f"Tree path {entry.path!r} passes through {part!r}, "
                        "which is already an entry that is not a directory."
                    )

                node = child

            if parts[-1] in node:
                raise ValueError(f"Tree path {entry.path!r} appears more than once.")

            node[parts[-1]] = entry

        return self._write_tree_node(root)

    def _write_tree_node(self, node: Mapping[str, object]) -> str:
        lines = []
        for name, child in sorted(node.items()):
            if isinstance(child, dict):
                sha, mode, kind = self._write_tree_node(child), "040000", "tree"
            elif isinstance(child, TreeEntry):
                sha, mode, kind = child.sha, child.mode, child.type
            else:  # pragma: no cover - write_tree only stores these two types.
                raise TypeError(f"Unexpected tree node {child!r}.")

            lines.append(f"{mode} {kind} {sha}\t{name}\0")

        return self._text("mktree", "-z", input="".join(lines).encode())

    def read_tree(self, tree: str) -> list[TreeEntry]:
        """Return the top-level entries of ``tree``."""
        return self._ls_tree(tree)

    def read_tree_recursive(
        self, tree: str, *, include_trees: bool = False
    ) -> list[TreeEntry]:
        """Return every blob and submodule entry under ``tree`` with full paths.

        With ``include_trees`` the subtrees themselves are listed too.
        """
        return self._ls_tree(tree, "-r", *(["-t"] if include_trees else []))

    def _ls_tree(self, tree: str, *options: str) -> list[TreeEntry]:
        output = self._run("ls-tree", "-z", "-l", *options, self._check_object_id(tree))
        entries = []
        for record in output.decode().split("\0"):
            if not record:
                continue

            meta, path = record.split("\t", 1)
            mode, _kind, sha, size = meta.split()
            entries.append(
                TreeEntry(
                    path=path,
                    sha=sha,
                    mode=mode,
                    size=None if size == "-" else int(size),
                )
            )

        return entries

    def commit_tree(
        self,
        tree: str,
        parents: Iterable[str],
        message: str,
        author: Signature,
        committer: Signature,
    ) -> str:
        """Store a commit of ``tree`` with ``parents`` and return its id.

        The message is stored byte for byte, without git's whitespace cleanup.
        """
        parent_args = []
        for parent in parents:
            parent_args += ["-p", self._check_object_id(parent)]

        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_AUTHOR_DATE": format_git_date(author.date, explicit=True),
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
            "GIT_COMMITTER_DATE": format_git_date(committer.date, explicit=True),
        }
        # Formatting the identities rejects names that git cannot store.
        author.to_git()
        committer.to_git()
        return self._text(
            "commit-tree",
            self._check_object_id(tree),
            *parent_args,
            input=message.encode(),
            env=env,
        )

    def mktag(
        self,
        object_sha: str,
        object_type: str,
        tag_name: str,
        message: str,
        tagger: Signature,
    ) -> str:
        """Store an annotated tag object and return its id.

        ``git mktag`` checks the object's type and the tag name strictly.
        """
        if object_type not in {"commit", "tree", "blob", "tag"}:
            raise ValueError(
                f"Tag object type {object_type!r} is not a git object type."
            )

        self._check_ref_name(f"refs/tags/{tag_name}")
        content = (
            f"object {self._check_object_id(object_sha)}\n"
            f"type {object_type}\n"
            f"tag {tag_name}\n"
            f"tagger {tagger.to_git()}\n"
            f"\n{message}"
        )
        return self._text("mktag", input=content.encode())

    def update_ref(self, ref: str, new: str, old: str) -> bool:
        """Move ``ref`` from ``old`` to ``new`` atomically; return whether it moved.

        Pass ``ZERO_SHA`` as ``old`` to create a ref that must not exist yet.
        The update fails, returning False, when the ref no longer points at
        ``old``: this is the compare-and-swap that makes concurrent writers
        safe.
        """
        self._check_ref_name(ref)
        args = (self._check_object_id(new), self._check_object_id(old))
        if self._try("update-ref", ref, *args) is not None:
            return True

        # The failure is a lost race only when the ref moved away from `old`.
        current = self.read_ref(ref) or ZERO_SHA
        if current != old:
            return False

        raise GitError(
            f"git update-ref {ref} {new} {old} failed although {ref} still "
            f"points at {old}."
        )

    def read_ref(self, ref: str) -> str | None:
        """Return the object id that ``ref`` points at, or None if it is missing."""
        self._check_ref_name(ref)
        output = self._try("show-ref", "--verify", "--hash", ref)
        return None if output is None else output.decode().strip()

    def list_refs(self, prefix: str = "refs/") -> dict[str, str]:
        """Map every ref whose name starts with ``prefix`` to its object id."""
        if not prefix.startswith("refs/"):
            raise ValueError(f"Ref prefix {prefix!r} must start with 'refs/'.")

        output = self._text("for-each-ref", "--format=%(refname) %(objectname)")
        refs = {}
        for line in output.splitlines():
            name, sha = line.rsplit(" ", 1)
            if name.startswith(prefix):
                refs[name] = sha

        return refs

    def object_type(self, sha: str) -> str | None:
        """Return the type of object ``sha``, or None if there is no such object."""
        if not _OBJECT_ID.fullmatch(sha):
            return None

        output = self._try("cat-file", "-t", sha)
        return None if output is None else output.decode().strip()

    def peel(self, sha: str) -> str | None:
        """Follow tag objects from ``sha`` to the commit, or None if there is none."""
        if self.object_type(sha) is None:
            return None

        output = self._try("rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
        return None if output is None else output.decode().strip()

    def read_commit(self, sha: str) -> Commit:
        """Parse commit ``sha``."""
        headers, message = self._read_object("commit", sha)
        return Commit(
            sha=sha,
            tree=headers["tree"][0],
            parents=headers.get("parent", []),
            author=Signature.from_git(headers["author"][0]),
            committer=Signature.from_git(headers["committer"][0]),
            message=message,
        )

    def read_tag(self, sha: str) -> Tag:
        """Parse annotated tag object ``sha``."""
        headers, message = self._read_object("tag", sha)
        tagger = headers.get("tagger")
        return Tag(
            sha=sha,
            object=headers["object"][0],
            type=headers["type"][0],
            tag=headers["tag"][0],
            tagger=Signature.from_git(tagger[0]) if tagger else None,
            message=message,
        )

    def _read_object(self, kind: str, sha: str) -> tuple[dict[str, list[str]], str]:
        raw = self._run("cat-file", kind, self._check_object_id(sha)).decode()
        header_text, _, message = raw.partition("\n\n")
        headers: dict[str, list[str]] = {}
        last_key = ""
        for line in header_text.split("\n"):
            # Lines that start with a space continue a multi-line header
            # such as a commit signature.
            if line.startswith(" "):
                headers[last_key][-1] += "\n" + line[1:]
                continue

            last_key, _, value = line.partition(" ")
            headers.setdefault(last_key, []).append(value)

        return headers, message

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Return whether commit ``ancestor`` is reachable from ``descendant``."""
        args = ("merge-base", "--is-ancestor")
        args += (self._check_object_id(ancestor), self._check_object_id(descendant))
        return self._try(*args) is not None

    def merge_base(self, first: str, second: str) -> str | None:
        """Return the best common ancestor of two commits, or None if there is none."""
        args = (self._check_object_id(first), self._check_object_id(second))
        output = self._try("merge-base", *args)
        return None if output is None else output.decode().strip()

    def count_commits(self, base: str, head: str) -> int:
        """Count the commits in ``base..head``: reachable from head but not base."""
        return int(self._text("rev-list", "--count", *self._range(base, head)))

    def list_commits(self, base: str | None, head: str) -> list[str]:
        """Return the commits in ``base..head``, oldest first.

        With no ``base``, every commit reachable from ``head`` is listed.
        """
        args = self._range(base, head) if base else [self._check_object_id(head)]
        return self._text("rev-list", "--reverse", *args).split()

    def first_parent_log(self, ref: str) -> list[str]:
        """Return the first-parent history of ``ref``, newest first."""
        head = self.read_ref(ref)
        if head is None:
            raise GitError(f"Ref {ref!r} does not exist in {self.path}.")

        return self._text("rev-list", "--first-parent", head).split()

    def changed_paths(self, sha: str) -> dict[str, list[str]]:
        """Return the paths that commit ``sha`` added, removed and modified.

        A merge commit is compared with its first parent, a root commit with
        the empty tree.
        """
        commit = self.read_commit(sha)
        if commit.parents:
            args = [commit.parents[0], sha]
        else:
            args = ["--root", sha]

        output = self._run(
            "diff-tree",
            "-r",
            "-z",
            "--no-commit-id",
            "--no-renames",
            "--name-status",
            *args,
        )
        fields = output.decode().split("\0")
        changes: dict[str, list[str]] = {"added": [], "removed": [], "modified": []}
        keys = {"A": "added", "D": "removed"}
        for status, path in zip(fields[0::2], fields[1::2], strict=False):
            if status:
                changes[keys.get(status, "modified")].append(path)

        return changes

    def _range(self, base: str, head: str) -> list[str]:
        return [self._check_object_id(head), f"^{self._check_object_id(base)}"]

    def _check_ref_name(self, ref: str) -> str:
        if not ref.startswith("refs/") or self._try("check-ref-format", ref) is None:
            raise ValueError(f"Ref name {ref!r} is not a valid full git ref name.")

        return ref

    @staticmethod
    def _check_object_id(sha: str) -> str:
        if not _OBJECT_ID.fullmatch(sha):
            raise ValueError(
                f"Object id {sha!r} is not 40 lowercase hexadecimal digits."
            )

        return sha

    def _text(
        self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None
    ) -> str:
        return self._run(*args, input=input, env=env).decode().strip()

    def _run(
        self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None
    ) -> bytes:
        """Run one git command and return its stdout, raising GitError on failure."""
        result = self._execute(args, input, env)
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace").strip()
            raise GitError(
                f"git {' '.join(args)} failed in {self.path} with exit code "
                f"{result.returncode}: {stderr}"
            )

        return result.stdout

    def _try(self, *args: str) -> bytes | None:
        """Run one git command and return its stdout, or None if it failed."""
        result = self._execute(args, None, None)
        return result.stdout if result.returncode == 0 else None

    def _execute(
        self, args: tuple[str, ...], input: bytes | None, env: dict[str, str] | None
    ) -> subprocess.CompletedProcess[bytes]:
        command = [
            "git",
            "-c",
            f"core.hooksPath={os.devnull}",
            "-c",
            f"core.filesRefLockTimeout={_REF_LOCK_TIMEOUT_MS}",
            *args,
        ]
        return subprocess.run(
            command,
            input=input,
            capture_output=True,
            env=self._environment(env or {}),
            check=False,
        )

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        # Only these variables reach git, so nothing from the calling
        # process's git setup (GIT_DIR, config, hooks, prompts) can leak in.
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_DIR": str(self.path),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "HOME": str(self.path),
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            **extra,
        }
