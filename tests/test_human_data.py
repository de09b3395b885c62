"""The Hutto & Gilbert (ICWSM 2014) loader: parser, split, safe extraction, offline message, real counts."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from rlhf_envs.data import hutto2014 as h
from rlhf_envs.errors import DataError, DataUnavailableError


def write(path: Path, lines: list[str], encoding: str = "utf-8", bom: bool = False) -> Path:
    data = "\r\n".join(lines).encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def pair(tmp_path: Path, gt: list[str], ratings: list[str], encoding: str = "utf-8") -> tuple[Path, Path]:
    return (
        write(tmp_path / "x_GroundTruth.txt", gt, encoding),
        write(tmp_path / "x_anonDataRatings.txt", ratings),
    )


GOOD_RATINGS = ["1\t1.0\t0.0\t[1, 1]", "2\t-0.5\t0.5\t[0, -1]"]


# -- parser -----------------------------------------------------------------------------------------


def test_parses_latin1_text_and_joins_ratings(tmp_path):
    gt, r = pair(
        tmp_path, ["1\t1.0\tcaf\xe9 cr\xe8me, tr\xe8s bon", "2\t-0.5\tna\xefve plot"], GOOD_RATINGS, "latin-1"
    )
    recs = h.parse_domain(gt, r, "movies")
    assert [x.text for x in recs] == ["café crème, très bon", "naïve plot"]
    assert [x.id for x in recs] == ["1", "2"]
    assert recs[0].ratings == (1, 1) and recs[1].ratings == (0, -1)
    assert recs[1].mean == -0.5 and recs[1].ratings_mean == -0.5
    assert recs[0].key == "movies/1"


def test_utf8_text_and_byte_order_mark(tmp_path):
    gt = write(tmp_path / "a_GroundTruth.txt", ["1\t1.0\tthe clichés", "2\t-0.5\tMünch"], bom=True)
    r = write(tmp_path / "a_anonDataRatings.txt", GOOD_RATINGS, bom=True)
    recs = h.parse_domain(gt, r, "tweets")
    assert [x.text for x in recs] == ["the clichés", "Münch"] and recs[0].id == "1"


@pytest.mark.parametrize(
    "gt_lines, rating_lines, file, line, words",
    [
        (["1\t1.0\ta", "2\tb"], GOOD_RATINGS, "GroundTruth", 2, "3 tab-separated"),
        (["1\t1.0\ta", "2\tabc\tb"], GOOD_RATINGS, "GroundTruth", 2, "not a finite number"),
        (["1\t1.0\ta", "2\t7.5\tb"], GOOD_RATINGS, "GroundTruth", 2, "outside"),
        (["1\t1.0\ta", "1\t0.5\tb"], GOOD_RATINGS, "GroundTruth", 2, "already on line 1"),
        (["1\t1.0\ta", "3\t0.5\tb"], GOOD_RATINGS, "GroundTruth", 2, "no ratings"),
        (["1\t1.0\ta"], GOOD_RATINGS, "anonDataRatings", 2, "no sentence"),
        (
            ["1\t1.0\ta", "2\t-0.5\tb"],
            ["1\t1.0\t0.0\t[1, 1]", "2\t-0.5\t[0, -1]"],
            "anonDataRatings",
            2,
            "4 tab",
        ),
        (
            ["1\t1.0\ta", "2\t-0.5\tb"],
            ["1\t1.0\t0.0\t[1, 1]", "2\t0\t0\t[0, x]"],
            "anonDataRatings",
            2,
            "list",
        ),
        (
            ["1\t1.0\ta", "2\t-0.5\tb"],
            ["1\t1.0\t0.0\t[1, 1]", "2\t0\t0\t[]"],
            "anonDataRatings",
            2,
            "non-empty",
        ),
        (
            ["1\t1.0\ta", "2\t-0.5\tb"],
            ["1\t1.0\t0.0\t[1, 1]", "2\t2.5\t2.5\t[5, 0]"],
            "anonDataRatings",
            2,
            "outside",
        ),
        (
            ["1\t1.0\ta", "2\t-0.5\tb"],
            ["1\t1.0\t0.0\t[1, 1]", "2\t0.5\t0.5\t[0, -1]"],
            "anonDataRatings",
            2,
            "mean",
        ),
        (
            ["1\t1.0\ta", "2\t-0.5\tb"],
            ["1\t1.0\t0.0\t[1, 1]", "2\t0\t0\t__import__('os').system('true')"],
            "anonDataRatings",
            2,
            "list of integers",
        ),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, gt_lines, rating_lines, file, line, words):
    gt, r = pair(tmp_path, gt_lines, rating_lines)
    with pytest.raises(DataError) as info:
        h.parse_domain(gt, r, "nyt")
    msg = str(info.value)
    assert f"_{file}.txt, line {line}" in msg and words in msg


def test_blank_lines_and_trailing_newline_are_not_records(tmp_path):
    gt, r = pair(tmp_path, ["1\t1.0\ta", "", "2\t-0.5\tb", ""], GOOD_RATINGS)
    assert len(h.parse_domain(gt, r, "amazon")) == 2


def test_unknown_domain_and_split():
    with pytest.raises(DataError, match="known domains"):
        h.load("imdb", download=False)
    with pytest.raises(DataError, match="known splits"):
        h.select([], split="dev")


# -- the split --------------------------------------------------------------------------------------

TEXTS = [f"Sentence number {i} about {['films', 'phones', 'news'][i % 3]}." for i in range(3000)]


def test_split_fractions_and_pinned_values():
    counts = {s: 0 for s in h.SPLITS}
    for t in TEXTS:
        counts[h.split_of(t)] += 1
    assert abs(counts["train"] / 3000 - 0.7) < 0.03
    assert abs(counts["validation"] / 3000 - 0.1) < 0.02
    assert abs(counts["test"] / 3000 - 0.2) < 0.025
    # pinned: a change to the hash, salt or bounds moves sentences between splits
    assert [h.split_of(t) for t in TEXTS[:8]] == PINNED


PINNED = ["train", "train", "test", "train", "train", "test", "train", "validation"]


def test_split_ignores_whitespace_and_groups_identical_texts():
    assert h.split_of("  But why?\t") == h.split_of("But  why?")
    a = h.RatedSentence("nyt", "1_1", "But why?", 0.0, (0,))
    b = h.RatedSentence("movies", "9", "But why?", 0.0, (0,))
    assert a.split == b.split


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_split_is_the_same_under_any_python_hash_seed(hash_seed):
    code = (
        "from rlhf_envs.data.hutto2014 import split_of\n"
        f"print(''.join(split_of(t)[0] for t in {TEXTS[:300]!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "".join(h.split_of(t)[0] for t in TEXTS[:300])


# -- fetching: checksums, the allow-list, no path traversal -----------------------------------------


def fake_sdist(
    tmp_path: Path, extra: list[tarfile.TarInfo | tuple[str, bytes]], omit: tuple[str, ...] = ()
) -> tuple[Path, dict[str, str]]:
    """A vaderSentiment-like sdist holding tiny data files (but ``omit``) plus ``extra`` inner members."""
    inner = io.BytesIO()
    digests = {}
    with tarfile.open(fileobj=inner, mode="w:gz") as t:
        members: list = [(h.INNER_PREFIX + n, f"data of {n}".encode()) for n in h.DATA_FILES if n not in omit]
        for m in members + extra:
            if isinstance(m, tarfile.TarInfo):
                t.addfile(m)
                continue
            name, content = m
            info = tarfile.TarInfo(name)
            info.size = len(content)
            t.addfile(info, io.BytesIO(content))
            if name.startswith(h.INNER_PREFIX):
                digests[name[len(h.INNER_PREFIX) :]] = hashlib.sha256(content).hexdigest()
    outer_path = tmp_path / h.SDIST_FILENAME
    with tarfile.open(outer_path, mode="w:gz") as t:
        info = tarfile.TarInfo(h.INNER_ARCHIVE)
        info.size = len(inner.getvalue())
        t.addfile(info, io.BytesIO(inner.getvalue()))
    return outer_path, digests


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_fetch_writes_only_the_allow_listed_files(tmp_path, monkeypatch):
    evil = [
        ("hutto_ICWSM_2014/vaderSentiment.py", b"print('old code')"),
        ("hutto_ICWSM_2014/../../escaped.txt", b"x"),
        ("../outside.txt", b"x"),
        ("/abs/outside.txt", b"x"),
    ]
    (tmp_path / "src").mkdir()
    sdist, digests = fake_sdist(tmp_path / "src", evil)
    monkeypatch.setattr(h, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    monkeypatch.setattr(h, "DATA_FILES", {n: digests[n] for n in h.DATA_FILES})
    root = tmp_path / "cache"
    out = h.fetch(root, sdist=sdist)
    assert out == root / "datasets" / "hutto2014"
    assert all_files(root) == {f"datasets/hutto2014/{n}" for n in h.DATA_FILES}
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "outside.txt").exists()
    assert (out / "tweets_GroundTruth.txt").read_bytes() == b"data of tweets_GroundTruth.txt"
    assert h.is_cached(root)


def test_fetch_refuses_links_and_checksum_mismatches(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    link = tarfile.TarInfo(h.INNER_PREFIX + "tweets_GroundTruth.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    sdist, digests = fake_sdist(tmp_path / "src", [link], omit=("tweets_GroundTruth.txt",))
    # the real pinned checksum rejects any other archive before it is opened
    with pytest.raises(DataError, match="sha256"):
        h.fetch(tmp_path / "c1", sdist=sdist)
    monkeypatch.setattr(h, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    monkeypatch.setattr(h, "DATA_FILES", {n: digests.get(n, "0" * 64) for n in h.DATA_FILES})
    with pytest.raises(DataError, match="not a regular file"):
        h.fetch(tmp_path / "c2", sdist=sdist)
    assert not (tmp_path / "c2" / "datasets" / "hutto2014").exists()


def test_no_cache_and_no_registry_gives_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_ENVS_CACHE", str(tmp_path / "empty"))
    for k, v in {
        "PIP_INDEX_URL": "http://127.0.0.1:9/",
        "PIP_NO_INDEX": "1",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(DataUnavailableError) as info:
        h.load()
    msg = str(info.value)
    assert "rlhf-envs data fetch hutto2014" in msg
    assert "pip download --no-deps --no-binary :all: vaderSentiment==3.3.2" in msg
    assert str(tmp_path / "empty") in msg and "pip said" in msg
    assert not (tmp_path / "empty" / "datasets" / "hutto2014").exists()
    with pytest.raises(DataUnavailableError, match="rlhf-envs data fetch hutto2014"):
        h.load(download=False)


# -- the real data (fetched into the cache by the first run, in seconds) ----------------------------


def test_real_counts_ratings_and_split_sizes():
    recs = h.load()
    by = {d: h.select(recs, domain=d) for d in h.DOMAINS}
    assert {d: len(v) for d, v in by.items()} == {
        "tweets": 4200,
        "movies": 10605,
        "amazon": 3708,
        "nyt": 5190,
    }
    n = {d: sorted(len(r.ratings) for r in v) for d, v in by.items()}
    assert (n["tweets"][0], n["tweets"][len(n["tweets"]) // 2], n["tweets"][-1]) == (20, 20, 99)
    assert (n["movies"][0], n["movies"][-1]) == (15, 29) and set(n["amazon"]) == set(n["nyt"]) == {20}
    assert all(h.RATING_MIN <= x <= h.RATING_MAX for r in recs for x in r.ratings)
    assert sum(abs(r.mean - r.ratings_mean) > 1e-6 for r in recs) == 199  # tweets only (module doc)
    sizes = {d: [len(h.select(v, s)) for s in h.SPLITS] for d, v in by.items()}
    assert sizes == {
        "tweets": [2974, 384, 842],
        "movies": [7503, 1039, 2063],
        "amazon": [2630, 371, 707],
        "nyt": [3646, 518, 1026],
    }
    assert any("clichés" in r.text for r in by["movies"])  # decoded as UTF-8, not Latin-1 mojibake
    assert h.load("nyt", split="test") == h.select(by["nyt"], "test")
