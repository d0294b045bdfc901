"""Tests for the bare repository wrapper that backs the GitHub stand-in."""

from __future__ import annotations

import datetime
import os
import subprocess
import threading
from pathlib import Path

import pytest

from sandbox.git import (
    ZERO_SHA,
    BareRepository,
    GitError,
    Signature,
    TreeEntry,
)

UTC = datetime.UTC
AUTHOR = Signature(
    "Jane Doe",
    "jane@example.org",
    datetime.datetime(
        2024, 5, 1, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-2.5))
    ),
)
COMMITTER = Signature(
    "Query Bot", "bot@example.org", datetime.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
)


@pytest.fixture
def repo(tmp_path: Path) -> BareRepository:
    repository = BareRepository(tmp_path / "owner" / "repo.git")
    repository.init("main")
    return repository


def make_commit(
    repo: BareRepository, files: dict[str, bytes], parents: list[str], message: str
) -> str:
    entries = [TreeEntry(path, repo.write_blob(data)) for path, data in files.items()]
    return repo.commit_tree(
        repo.write_tree(entries), parents, message, AUTHOR, COMMITTER
    )


def test_init_creates_bare_repository(repo: BareRepository) -> None:
    assert repo.exists()
    assert (repo.path / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert not (repo.path / "hooks").exists() or not any(
        (repo.path / "hooks").iterdir()
    )


def test_write_tree_builds_nested_subtrees(repo: BareRepository) -> None:
    blob = repo.write_blob(b"print('hi')\n")

    tree = repo.write_tree(
        [
            TreeEntry("project.yaml", blob),
            TreeEntry("analysis/queries/count.py", blob),
            TreeEntry("analysis/run.sh", blob, mode="100755"),
        ]
    )

    top = {entry.path: entry for entry in repo.read_tree(tree)}
    assert sorted(top) == ["analysis", "project.yaml"]
    assert top["analysis"].type == "tree"
    assert top["project.yaml"].size == len(b"print('hi')\n")
    leaves = {entry.path: entry for entry in repo.read_tree_recursive(tree)}
    assert sorted(leaves) == [
        "analysis/queries/count.py",
        "analysis/run.sh",
        "project.yaml",
    ]
    assert leaves["analysis/run.sh"].mode == "100755"
    assert repo.read_blob(leaves["analysis/queries/count.py"].sha) == b"print('hi')\n"


def test_write_tree_accepts_existing_subtree(repo: BareRepository) -> None:
    blob = repo.write_blob(b"x")
    subtree = repo.write_tree([TreeEntry("inner.txt", blob)])

    tree = repo.write_tree([TreeEntry("dir", subtree, mode="040000")])

    paths = [entry.path for entry in repo.read_tree_recursive(tree)]
    assert paths == ["dir/inner.txt"]


@pytest.mark.parametrize(
    "paths",
    [
        ["a", "a/b"],
        ["a/b", "a"],
        ["same", "same"],
    ],
)
def test_write_tree_rejects_conflicting_paths(
    repo: BareRepository, paths: list[str]
) -> None:
    blob = repo.write_blob(b"x")

    with pytest.raises(ValueError, match="Tree path"):
        repo.write_tree([TreeEntry(path, blob) for path in paths])


@pytest.mark.parametrize("path", ["/abs", "a//b", "a/../b", ".git/config", "a/", ""])
def test_write_tree_rejects_invalid_path(repo: BareRepository, path: str) -> None:
    blob = repo.write_blob(b"x")

    with pytest.raises(ValueError, match="is invalid"):
        repo.write_tree([TreeEntry(path, blob)])


def test_write_tree_rejects_unknown_mode(repo: BareRepository) -> None:
    blob = repo.write_blob(b"x")

    with pytest.raises(ValueError, match="mode '100600'"):
        repo.write_tree([TreeEntry("a", blob, mode="100600")])


def test_commit_round_trips_identities_and_message(repo: BareRepository) -> None:
    message = "Add query 01HV\n\nQuery-Id: 01HV\nRequested-By: Jane <j@x>"

    sha = make_commit(repo, {"a.txt": b"a"}, [], message)
    commit = repo.read_commit(sha)

    assert commit.message == message
    assert commit.parents == []
    assert commit.author == AUTHOR
    assert commit.author.date.utcoffset() == datetime.timedelta(hours=-2.5)
    assert commit.committer == COMMITTER


def test_commit_rejects_identity_with_angle_bracket(repo: BareRepository) -> None:
    tree = repo.write_tree([])
    bad = Signature("Eve <eve@x>", "eve@example.org", COMMITTER.date)

    with pytest.raises(ValueError, match="contains '<'"):
        repo.commit_tree(tree, [], "message", bad, COMMITTER)


def test_mktag_creates_annotated_tag_that_peels_to_commit(
    repo: BareRepository,
) -> None:
    commit = make_commit(repo, {"a.txt": b"a"}, [], "first")

    tag_sha = repo.mktag(commit, "commit", "01HV3Z8Q", "Query 01HV3Z8Q\n", COMMITTER)

    assert repo.object_type(tag_sha) == "tag"
    assert repo.peel(tag_sha) == commit
    tag = repo.read_tag(tag_sha)
    assert tag.object == commit
    assert tag.type == "commit"
    assert tag.tag == "01HV3Z8Q"
    assert tag.tagger == COMMITTER
    assert tag.message == "Query 01HV3Z8Q\n"


def test_mktag_rejects_invalid_tag_name(repo: BareRepository) -> None:
    commit = make_commit(repo, {"a.txt": b"a"}, [], "first")

    with pytest.raises(ValueError, match="not a valid full git ref name"):
        repo.mktag(commit, "commit", "bad..name", "message", COMMITTER)


def test_update_ref_is_compare_and_swap(repo: BareRepository) -> None:
    first = make_commit(repo, {"a.txt": b"a"}, [], "first")
    second = make_commit(repo, {"a.txt": b"b"}, [first], "second")

    created = repo.update_ref("refs/heads/main", first, ZERO_SHA)
    created_again = repo.update_ref("refs/heads/main", second, ZERO_SHA)
    moved = repo.update_ref("refs/heads/main", second, first)
    stale = repo.update_ref("refs/heads/main", first, first)

    assert created
    assert not created_again
    assert moved
    assert not stale
    assert repo.read_ref("refs/heads/main") == second


def test_update_ref_lets_one_concurrent_writer_win(repo: BareRepository) -> None:
    base = make_commit(repo, {"a.txt": b"a"}, [], "base")
    repo.update_ref("refs/heads/main", base, ZERO_SHA)
    candidates = [
        make_commit(repo, {"a.txt": str(n).encode()}, [base], f"writer {n}")
        for n in range(6)
    ]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(len(candidates))

    def write(sha: str) -> None:
        barrier.wait()
        results[sha] = repo.update_ref("refs/heads/main", sha, base)

    threads = [threading.Thread(target=write, args=(sha,)) for sha in candidates]
    for thread in threads:
        thread.start()

    for thread in threads:
        thread.join()

    winners = [sha for sha, won in results.items() if won]
    assert len(winners) == 1
    assert repo.read_ref("refs/heads/main") == winners[0]


def test_update_ref_rejects_invalid_name(repo: BareRepository) -> None:
    commit = make_commit(repo, {"a.txt": b"a"}, [], "first")

    with pytest.raises(ValueError, match="not a valid full git ref name"):
        repo.update_ref("heads/main", commit, ZERO_SHA)


def test_update_ref_raises_for_missing_object(repo: BareRepository) -> None:
    with pytest.raises(GitError, match="update-ref"):
        repo.update_ref("refs/heads/main", "1" * 40, ZERO_SHA)


def test_read_ref_and_object_type_of_missing_things(repo: BareRepository) -> None:
    assert repo.read_ref("refs/heads/main") is None
    assert repo.object_type("1" * 40) is None
    assert repo.object_type("not-a-sha") is None
    assert repo.peel("1" * 40) is None


def test_ancestry_queries(repo: BareRepository) -> None:
    root = make_commit(repo, {"a.txt": b"a"}, [], "root")
    left = make_commit(repo, {"a.txt": b"l"}, [root], "left")
    left2 = make_commit(repo, {"a.txt": b"l2"}, [left], "left 2")
    right = make_commit(repo, {"a.txt": b"r"}, [root], "right")
    repo.update_ref("refs/heads/main", left2, ZERO_SHA)

    assert repo.is_ancestor(root, left2)
    assert not repo.is_ancestor(left2, root)
    assert not repo.is_ancestor(right, left2)
    assert repo.count_commits(root, left2) == 2
    assert repo.count_commits(left2, root) == 0
    assert repo.merge_base(left2, right) == root
    assert repo.list_commits(root, left2) == [left, left2]
    assert repo.list_commits(None, left) == [root, left]
    assert repo.first_parent_log("refs/heads/main") == [left2, left, root]


def test_merge_base_of_unrelated_commits_is_none(repo: BareRepository) -> None:
    first_root = make_commit(repo, {"a.txt": b"a"}, [], "one")
    second_root = make_commit(repo, {"b.txt": b"b"}, [], "other")

    assert repo.merge_base(first_root, second_root) is None


def test_changed_paths_against_first_parent(repo: BareRepository) -> None:
    first = make_commit(repo, {"keep": b"k", "gone": b"g", "edit": b"1"}, [], "one")
    second = make_commit(
        repo, {"keep": b"k", "edit": b"2", "new/x": b"n"}, [first], "2"
    )

    assert repo.changed_paths(first) == {
        "added": ["edit", "gone", "keep"],
        "removed": [],
        "modified": [],
    }
    assert repo.changed_paths(second) == {
        "added": ["new/x"],
        "removed": ["gone"],
        "modified": ["edit"],
    }


def test_list_refs_filters_by_prefix(repo: BareRepository) -> None:
    commit = make_commit(repo, {"a.txt": b"a"}, [], "first")
    tag = repo.mktag(commit, "commit", "v1", "", COMMITTER)
    repo.update_ref("refs/heads/main", commit, ZERO_SHA)
    repo.update_ref("refs/tags/v1", tag, ZERO_SHA)

    assert repo.list_refs() == {"refs/heads/main": commit, "refs/tags/v1": tag}
    assert repo.list_refs("refs/tags/") == {"refs/tags/v1": tag}


def test_git_ignores_caller_environment(
    repo: BareRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[i18n]\n\tcommitEncoding = ISO-8859-1\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere.git"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Leaked Name")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "@0 +0000")

    sha = make_commit(repo, {"a.txt": b"a"}, [], "first")

    raw = subprocess.run(
        ["git", "--git-dir", str(repo.path), "cat-file", "commit", sha],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1"},
    ).stdout
    commit = repo.read_commit(sha)
    assert b"\nencoding " not in raw
    assert commit.author.name == AUTHOR.name
    assert commit.committer.date == COMMITTER.date
    assert not (tmp_path / "elsewhere.git").exists()
