"""English dialogues of the ChatterBot corpus, fetched from PyPI at first use (real text for pretraining).

Source and licence
    The ``chatterbot-corpus`` package, version 1.3.3 (Gunther Cox and contributors), a
    "machine readable multilingual dialog corpus" of short hand-written conversations. Its licence
    is BSD-3-Clause: the sdist's ``pyproject.toml`` says ``license = {name = "BSD-3-Clause"}``, its
    PKG-INFO classifier is "License :: OSI Approved :: BSD License", and its ``license.md`` holds the
    three-clause text (Copyright (c) 2017, Gunther Cox). Redistribution in any form must keep that
    notice; nothing of the corpus is committed here (it is fetched into the cache), and a model
    trained on it that is shipped must carry the notice in its README. The licence file is cached
    next to the data (``license.md``).

What it holds
    21 English YAML files (``ai``, ``botprofile``, ``coding``, ``computers``, ``conversations``,
    ``emotion``, ``food``, ``gossip``, ``greetings``, ``health``, ``history``, ``humor``,
    ``literature``, ``money``, ``movies``, ``politics``, ``psychology``, ``science``, ``sports``,
    ``tech_support``, ``trivia``): 2,026 conversations, 4,332 turns, about 34,500 words. Each file is
    ``{"categories": [...], "conversations": [[turn, turn, ...], ...]}``. One entry of ``trivia.yml``
    is a bare string (a question and its answer on one line) rather than a list; it is read as a
    one-turn conversation. Numbers written as YAML scalars are read as their text.

How it is obtained
    Exactly as :mod:`rlhf_envs.data.hutto2014` (and with its helpers in
    :mod:`rlhf_envs.data.sdist_cache`): ``python -m pip download --no-deps --no-binary :all:
    chatterbot-corpus==1.3.3``, a sha256 check of the sdist against :data:`SDIST_SHA256`, the
    allow-listed files (:data:`DATA_FILES`, each with its own sha256) read in memory and written into
    ``$RLHF_ENVS_CACHE/datasets/chatterbot_corpus/``. YAML is parsed with ``yaml.safe_load`` (no code
    runs; PyYAML comes with ``transformers``).
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlhf_envs.data.sdist_cache import cache_root, install_files, pip_download_sdist, sha256
from rlhf_envs.errors import DataError, DataUnavailableError

NAME = "chatterbot_corpus"
SDIST_PACKAGE = "chatterbot-corpus"
SDIST_VERSION = "1.3.3"
SDIST_FILENAME = f"chatterbot_corpus-{SDIST_VERSION}.tar.gz"
#: sha256 of ``chatterbot_corpus-1.3.3.tar.gz`` as PyPI serves it (measured 2026-12-01).
SDIST_SHA256 = "615b5c4c605154f60ae51d03ed918ed92e9d32bc2b144b759bbc64ecdbe18481"
LICENSE = "BSD-3-Clause"
_ROOT = f"chatterbot_corpus-{SDIST_VERSION}/"
_ENGLISH = f"{_ROOT}chatterbot_corpus/data/english/"

#: The only files ever written to the cache (name -> pinned sha256): the licence and the English YAML.
DATA_FILES: dict[str, str] = {
    "license.md": "a3ef744f9a7ddfb090596aeabe99c145adfe0d14f3eafdfb6a70207caded8aea",
    "ai.yml": "620a65787a56641db4a03e1419a7578e813967218cf6721e3ea4ef90844916aa",
    "botprofile.yml": "1a694c5288f3f8f87d027d2f98dae71d02efa88e28853a6e5d27e6dbce907294",
    "coding.yml": "1726a8900a82ee32dad559809564f9ae97df9c52f42a8f1fcde84b1d54b1d260",
    "computers.yml": "a222c5a432efe4289e6c5edf1c3d99fd26c48df99db0ff893d1d5ab569f5b750",
    "conversations.yml": "1cf105b5802f377b2dc145f741f7df85629c9ca27e450538165286a75b5e3416",
    "emotion.yml": "510a018938c1880dd0f67e1ae458e26878c91a570daef5a84fb83713c89f0989",
    "food.yml": "68eab2497721d03044d520b70c27d8a0d8ba8e505b3265fb3a1ff3e1a64c7124",
    "gossip.yml": "d6f1b1613ed70821fc1c427bdd00395f58b77ff57d76fbe4ab8cb2038cf15c9b",
    "greetings.yml": "0dd7eb8dcee8e2a38cd1a137bcfbd7f3eb732cddfa1bd396fac5a24b063a4d55",
    "health.yml": "eb88edc5302d688ca096374c7e3f5b9d7cd821f053a17d80204c4acdc20ea4f5",
    "history.yml": "0ff4beeb6ef9b641dc12e1039a149c6a03eb8f2e183702fad2b0997fcc1d63e3",
    "humor.yml": "d2aa03a63f0e8e054589f642788afbc41b8c76f5d734c50901a9a63b359ea06b",
    "literature.yml": "9361ff1478273d811259ca307a1e6be23a5e08e776a5bc5d9524fb13deb886f1",
    "money.yml": "2911d9766625ff5c2feb3d784f2951b2ebd5e9658547efce7568d0282c49274b",
    "movies.yml": "075ca9d91a527206c635c88bf0353323826a25a6f2057be1bc71888af389f842",
    "politics.yml": "c436d5efedea6f715a8a811423a8edf396097771eb11e43b1f0a43a6aee7c2f0",
    "psychology.yml": "5047c211d35f715af4fbc3398f111135e99d34afcd0905a661c40bdeb1413a58",
    "science.yml": "3c259799bba36c67a1601fc264ec01ab051e9e63950734ce1ef644e022081fe7",
    "sports.yml": "8d1bcc632cad4058e3b8490daa15dcd7c2a51790a7b9140b252600b794590403",
    "tech_support.yml": "8a87cdf32579c8efdd9c5f3ef166ae9fb76dcf271b958f5e2265b9246b430655",
    "trivia.yml": "3a9de77e6d82803d1ea3eba48cf6543c884908f4c4f50501fed69f88112994dc",
}
YAML_FILES: tuple[str, ...] = tuple(n for n in DATA_FILES if n.endswith(".yml"))
#: Conversations in the English files (the loader checks it).
EXPECTED_CONVERSATIONS = 2026

FETCH_COMMAND = f"rlhf-envs data fetch {NAME}"
PIP_COMMAND = f"python -m pip download --no-deps --no-binary :all: {SDIST_PACKAGE}=={SDIST_VERSION} -d DIR"


@dataclass(frozen=True, slots=True)
class Dialogue:
    """One conversation: its file's stem (``"food"``), its position in the file, and its turns."""

    topic: str
    index: int
    turns: tuple[str, ...]

    @property
    def text(self) -> str:
        """The turns joined by single spaces: one line of text, the form pretraining uses."""
        return " ".join(" ".join(t.split()) for t in self.turns)


def parse_file(path: str | os.PathLike) -> list[Dialogue]:
    """The conversations of one ChatterBot YAML file.

    Raises :class:`~rlhf_envs.errors.DataError` naming the file (and the conversation) when the YAML
    does not parse, has no ``conversations`` list, or a conversation or turn is not text.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read it as UTF-8 YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
        raise DataError(f"{path}: expected a mapping with a 'conversations' list")
    out = []
    for i, conv in enumerate(doc["conversations"]):
        turns = [conv] if isinstance(conv, str) else conv  # trivia.yml has one bare-string entry
        if not isinstance(turns, list) or not turns:
            raise DataError(f"{path}: conversation {i} is {type(conv).__name__}, not a list of turns")
        texts = []
        for j, t in enumerate(turns):
            if isinstance(t, bool) or not isinstance(t, str | int | float):
                raise DataError(f"{path}: conversation {i}, turn {j} is {type(t).__name__}, not text")
            if str(t).strip():
                texts.append(str(t).strip())
        if texts:
            out.append(Dialogue(path.stem, i, tuple(texts)))
    return out


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """``<root>/datasets/chatterbot_corpus`` (root defaults to the project's cache root)."""
    return (Path(root) if root is not None else cache_root()) / "datasets" / NAME


def is_cached(root: str | os.PathLike | None = None) -> bool:
    """True if every allow-listed file is in the cache (checksums are checked by :func:`load`)."""
    d = data_dir(root)
    return all((d / n).is_file() for n in DATA_FILES)


def _unavailable_message(where: Path, why: str) -> str:
    return (
        f"The ChatterBot corpus is not in the cache ({where}) and could not be fetched from the "
        f"package registry ({why}). With access to PyPI, run `{FETCH_COMMAND}` (it runs "
        f"`{PIP_COMMAND}` and extracts the English dialogues); offline, download that sdist elsewhere "
        f"and run `{FETCH_COMMAND} --sdist PATH/{SDIST_FILENAME}`."
    )


def _data_from_sdist(sdist: Path) -> dict[str, bytes]:
    raw = sdist.read_bytes()
    digest = sha256(raw)
    if digest != SDIST_SHA256:
        raise DataError(
            f"{sdist}: sha256 {digest} does not match the pinned {SDIST_SHA256} of {SDIST_FILENAME}; "
            "refusing to use it"
        )
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.name == f"{_ROOT}license.md":
                name = "license.md"
            elif m.name.startswith(_ENGLISH):
                name = m.name[len(_ENGLISH) :]
            else:
                continue
            if name not in DATA_FILES:
                continue
            if not m.isfile():
                raise DataError(f"{sdist}: member {m.name} is not a regular file")
            content = tar.extractfile(m).read()  # type: ignore[union-attr]
            if sha256(content) != DATA_FILES[name]:
                raise DataError(f"{sdist}: {m.name} does not match its pinned sha256")
            files[name] = content
    missing = sorted(set(DATA_FILES) - set(files))
    if missing:
        raise DataError(f"{sdist}: missing files {', '.join(missing)}")
    return files


def fetch(
    root: str | os.PathLike | None = None,
    *,
    sdist: str | os.PathLike | None = None,
    force: bool = False,
    timeout: float = 600.0,
) -> Path:
    """Put the licence and the 21 English files into the cache (via pip, or from a local ``sdist``).

    Raises:
        DataUnavailableError: pip could not download the sdist (no registry access).
        DataError: the sdist or a file does not match its pinned sha256.
    """
    target = data_dir(root)
    if is_cached(root) and not force:
        return target
    with tempfile.TemporaryDirectory(prefix="rlhf_envs_chatterbot_") as tmp:
        path = (
            Path(sdist)
            if sdist is not None
            else pip_download_sdist(
                SDIST_PACKAGE,
                SDIST_VERSION,
                SDIST_FILENAME,
                Path(tmp),
                timeout,
                lambda why: _unavailable_message(target, why),
            )
        )
        files = _data_from_sdist(path)
    install_files(target, files, lambda: is_cached(root), force=force)
    _LOADED.pop(str(target), None)
    return target


_LOADED: dict[str, list[Dialogue]] = {}


def load(root: str | os.PathLike | None = None, *, download: bool = True) -> list[Dialogue]:
    """All English conversations, file by file in :data:`YAML_FILES` order; fetched on first use.

    Raises:
        DataUnavailableError: not cached and not fetchable; the message says what to run.
        DataError: a cached file fails its checksum or does not parse.
    """
    target = data_dir(root)
    if str(target) not in _LOADED:
        if not is_cached(root):
            if not download:
                raise DataUnavailableError(_unavailable_message(target, "download=False"))
            fetch(root)
        for name, digest in DATA_FILES.items():
            if sha256((target / name).read_bytes()) != digest:
                raise DataError(
                    f"{target / name} does not match its pinned sha256; delete {target} and run "
                    f"`{FETCH_COMMAND}` again"
                )
        out = [d for name in YAML_FILES for d in parse_file(target / name)]
        if len(out) != EXPECTED_CONVERSATIONS:
            raise DataError(f"{target}: {len(out)} conversations, expected {EXPECTED_CONVERSATIONS}")
        _LOADED[str(target)] = out
    return list(_LOADED[str(target)])
