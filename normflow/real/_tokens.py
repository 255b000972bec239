"""Token-table statistics and short fine-tunes of the real model (docs/theory.md §17).

The lab's concepts become the rows of BERT's token table ``word[t]``. The contrastive loss is
sentence-transformers' ``MultipleNegativesRankingLoss`` (the one all-MiniLM-L6-v2 was trained
with): InfoNCE from each query to the in-batch documents on mean-pooled, cosine-compared
embeddings with scale 20 (temperature 0.05) — :func:`normflow.info_nce`.

A step's gradient on row ``t`` is ``g_t = ∂L/∂word[t]`` summed over the token's occurrences in
the batch (zero when ``t`` is absent). The statistics are the lab's (docs/theory.md §1), with the
source at unit radius ``s = R·g`` so that they plug into :mod:`normflow.theory` unchanged, plus
what a token row has that a free row has not: the **radial part** of its gradient. The first
LayerNorm sees ``word[t] + position + type``, so scaling a row changes the direction of that
sum; ``x̂·g ≠ 0`` and the identity of docs/theory.md §2 gets a first-order term ``2ηR·D``.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ..losses import info_nce
from ._bert import Bert, mean_pool, tokenize

__all__ = ["MNRL_TEMPERATURE", "PairBatches", "pair_batches", "pair_loss", "TokenStats", "token_statistics",
           "FineTune", "finetune_table", "source_energy_of", "rows_seen", "row_sightings",
           "token_strings", "token_frequencies", "gloss_lemma_pairs", "VocabularyFrequencies", "vocabulary_frequencies"]

MNRL_TEMPERATURE = 0.05  # sentence-transformers' MultipleNegativesRankingLoss: scale 20


class PairBatches(NamedTuple):
    """``S`` fixed-shape minibatches of ``B`` (query, document) pairs, token ids and masks."""

    q_ids: Int[Array, "S B Tq"]
    q_mask: Float[Array, "S B Tq"]
    d_ids: Int[Array, "S B Td"]
    d_mask: Float[Array, "S B Td"]


def _fixed(texts, length):
    ids, mask = tokenize(texts, multiple=1)
    if ids.shape[1] >= length:  # truncate, keeping [SEP] last
        ids, mask = ids[:, :length].copy(), mask[:, :length].copy()
        long = mask[:, -1] > 0
        ids[long, -1] = 102
    else:
        pad = length - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)))
        mask = np.pad(mask, ((0, 0), (0, pad)))
    return ids, mask


def pair_batches(pairs: list[tuple[str, str]], *, batch_size: int, steps: int, key: PRNGKeyArray,
                 q_len: int = 16, d_len: int = 4) -> PairBatches:
    """Random minibatches of distinct pairs (each batch without repeats), tokenized once.

    **Arguments:**

    - `pairs`: ``(query, document)`` texts, e.g. (WordNet gloss, lemma).
    - `batch_size`, `steps`: ``B`` pairs per batch, ``S`` batches.
    - `key`: PRNG key of the sampling.
    - `q_len`, `d_len`: token lengths (truncated with ``[SEP]`` kept last, or padded).

    **Returns:** a :class:`PairBatches`.
    """
    if batch_size > len(pairs):
        raise ValueError(f"batch_size: must be <= the number of pairs ({len(pairs)}), got {batch_size}")
    qi, qm = _fixed([q for q, _ in pairs], q_len)
    di, dm = _fixed([d for _, d in pairs], d_len)
    keys = jax.random.split(key, steps)
    idx = np.asarray(jax.vmap(lambda k: jax.random.choice(k, len(pairs), (batch_size,), replace=False))(keys))
    return PairBatches(jnp.asarray(qi[idx]), jnp.asarray(qm[idx]), jnp.asarray(di[idx]), jnp.asarray(dm[idx]))


def _embed(model: Bert, word, ids, mask):
    h = jax.vmap(lambda i, m: model.hidden_states(i, m, word=word[i]))(ids, mask)
    return mean_pool(h, mask)


def pair_loss(word: Float[Array, "V d"], model: Bert, q_ids, q_mask, d_ids, d_mask,
              temperature: float = MNRL_TEMPERATURE) -> Float[Array, ""]:
    """MultipleNegativesRankingLoss of one batch with token table ``word`` (the model's other
    parameters fixed): InfoNCE from each query to the batch's documents."""
    q = _embed(model, word, q_ids, q_mask.astype(word.dtype))
    d = _embed(model, word, d_ids, d_mask.astype(word.dtype))
    return info_nce(q, d, temperature)


class TokenStats(eqx.Module):
    """Per token row, from ``S`` minibatches at a fixed model (docs/theory.md §17.1).

    ``norm``: ``R_t``. ``p``: fraction of batches containing ``t``. ``w2``: ``E[|g_t|² | seen]``.
    ``mean``: ``E[g_t | seen]`` (``[V, d]``). ``radial``: ``D_t = E[x̂·(-g_t)]`` per step (zeros
    included), the first-order radial push a free row does not have. ``radial_sq``:
    ``E[(x̂·g_t)² | seen]``. ``w4``: ``E[|g_t|⁴ | seen]`` (the spread of a sighting's energy, for
    the noise ceiling of a per-row prediction, §17.3). ``steps``: ``S``.
    """

    norm: Float[Array, " V"]
    p: Float[Array, " V"]
    w2: Float[Array, " V"]
    mean: Float[Array, "V d"]
    radial: Float[Array, " V"]
    radial_sq: Float[Array, " V"]
    w4: Float[Array, " V"]
    steps: int = eqx.field(static=True)

    @property
    def v2(self) -> Float[Array, " V"]:
        """``V_t² = E|g - ḡ|²`` given seen (the variance part, paper Fig. 5's Ṽ² at radius R)."""
        return jnp.maximum(self.w2 - jnp.sum(self.mean**2, axis=-1), 0.0)

    @property
    def radial_fraction(self) -> Float[Array, " V"]:
        """``E(x̂·g)² / E|g|²``: the share of a sighting's gradient energy that is radial."""
        return self.radial_sq / jnp.where(self.w2 > 0, self.w2, 1.0)


@eqx.filter_jit
def _value_and_grad(model: Bert, word, batch, temperature):
    # compiled once per shape: shared by the statistics and every fine-tune (whatever its optimizer)
    return jax.value_and_grad(pair_loss)(word, model, *batch, temperature)


@eqx.filter_jit
def _accumulate(acc, g, batch, xhat):
    n, e2, m, r, r2, e4 = acc
    v = xhat.shape[0]
    seen = jnp.zeros(v, bool).at[batch.q_ids].max(batch.q_mask > 0).at[batch.d_ids].max(batch.d_mask > 0)
    rad = jnp.sum(xhat * g, axis=-1)
    energy = jnp.sum(g * g, axis=-1)
    return n + seen, e2 + energy, m + g, r - rad, r2 + rad**2, e4 + energy**2


def row_sightings(batches: PairBatches, vocab_size: int = 30522) -> np.ndarray:
    """``int[V]``: in how many of the batches each token row occurs (unmasked; a row counted
    once per batch however often it occurs there, as :class:`TokenStats`'s ``p``)."""
    steps = int(batches.q_ids.shape[0])
    seen = np.zeros((steps, vocab_size), bool)
    for ids, mask in ((batches.q_ids, batches.q_mask), (batches.d_ids, batches.d_mask)):
        ids, mask = np.asarray(ids).reshape(steps, -1), np.asarray(mask).reshape(steps, -1) > 0
        rows = np.broadcast_to(np.arange(steps)[:, None], ids.shape)
        seen[rows[mask], ids[mask]] = True
    return seen.sum(axis=0)


def rows_seen(batches: PairBatches, vocab_size: int = 30522) -> np.ndarray:
    """``bool[V]``: the token rows that occur (unmasked) in any of the batches."""
    return row_sightings(batches, vocab_size) > 0


def _batch(batches: PairBatches, k: int) -> PairBatches:
    return PairBatches(*(a[k] for a in batches))


def token_statistics(model: Bert, batches: PairBatches, *, temperature: float = MNRL_TEMPERATURE) -> TokenStats:
    """Gradient statistics of every token row over the minibatches (model fixed).

    **Arguments:**

    - `model`: the encoder; only its token table is differentiated.
    - `batches`: from :func:`pair_batches`.
    - `temperature`: the loss's (MNRL's 0.05 by default).

    **Returns:** :class:`TokenStats`. One compiled gradient serves every batch (and the fine-tunes).
    """
    steps = int(batches.q_ids.shape[0])
    word = model.word
    xhat = word / jnp.linalg.norm(word, axis=-1, keepdims=True)
    z = jnp.zeros(word.shape[0], word.dtype)
    acc = (z, z, jnp.zeros_like(word), z, z, z)
    for k in range(steps):
        b = _batch(batches, k)
        _, g = _value_and_grad(model, word, b, temperature)
        acc = _accumulate(acc, g, b, xhat)
    n, e2, m, r, r2, e4 = acc
    safe = jnp.where(n > 0, n, 1.0)
    return TokenStats(norm=jnp.linalg.norm(model.word, axis=-1), p=n / steps, w2=e2 / safe, mean=m / safe[:, None],
                      radial=r / steps, radial_sq=r2 / safe, w4=e4 / safe, steps=steps)


def source_energy_of(stats: TokenStats) -> dict[str, np.ndarray]:
    """The statistics at unit radius, as :class:`normflow.theory.Context` takes them:
    ``s = R·g``, so ``pW² = p R² E|g|²``, ``|s̄|² = R²|ḡ|²``, ``V² = R² V_g²`` (docs/theory.md §1)."""
    r2 = np.asarray(stats.norm, float) ** 2
    p = np.asarray(stats.p, float)
    ms = r2 * np.sum(np.asarray(stats.mean, float) ** 2, axis=-1)
    return {"p": p, "pw2": p * r2 * np.asarray(stats.w2, float), "mean_sq": ms, "var": r2 * np.asarray(stats.v2, float)}


class FineTune(NamedTuple):
    """A short fine-tune of the token table: norms at ``record_steps`` (``[K, V]``), the loss per
    step, and where it diverged (``diverged_step``/``diverged_concept`` = -1 if it did not; the
    run stops at the first step that makes a row NaN/Inf, as :func:`normflow.train` records)."""

    record_steps: np.ndarray
    norms: np.ndarray
    loss: np.ndarray
    diverged_step: int = -1
    diverged_concept: int = -1


@eqx.filter_jit
def _opt_step(opt: optax.GradientTransformation, g, state, w):
    u, state = opt.update(g, state, w)
    w = optax.apply_updates(w, u)
    r = jnp.linalg.norm(w, axis=-1)
    bad = ~jnp.isfinite(r)
    return w, state, r, jnp.where(jnp.any(bad), jnp.argmax(bad), -1)


def finetune_table(model: Bert, opt: optax.GradientTransformation, batches: PairBatches, *, record_every: int,
                   temperature: float = MNRL_TEMPERATURE) -> FineTune:
    """Train only the token table with ``opt`` on ``batches`` (one step per batch), recording
    every row's norm every ``record_every`` steps. A Python loop over one compiled gradient (the
    step costs ~0.1 s on a CPU, the loop nothing; a ``lax.scan`` would compile the network's
    backward pass again for every optimizer).

    **Arguments:**

    - `model`: the starting encoder (its other parameters stay fixed).
    - `opt`: any optax transformation (``optax.sgd``, ``optax.adamw``, …; decay inside it).
    - `batches`: ``S`` batches, ``S`` a multiple of ``record_every``.

    **Returns:** :class:`FineTune` with norms ``[S/record_every + 1, V]`` (row 0: the start).
    """
    s_steps = int(batches.q_ids.shape[0])
    if s_steps % record_every:
        raise ValueError(f"record_every: must divide the {s_steps} steps, got {record_every}")
    w, state = model.word, opt.init(model.word)
    norms, losses = [], []
    r = jnp.linalg.norm(w, axis=-1)
    for k in range(s_steps):
        if k % record_every == 0:
            norms.append(np.asarray(r))
        loss, g = _value_and_grad(model, w, _batch(batches, k), temperature)
        w, state, r, bad = _opt_step(opt, g, state, w)
        losses.append(loss)
        if int(bad) >= 0:
            return FineTune(np.arange(0, s_steps + 1, record_every)[: len(norms)], np.stack(norms),
                            np.asarray(jnp.stack(losses)), k, int(bad))
    norms.append(np.asarray(r))
    return FineTune(np.arange(0, s_steps + 1, record_every), np.stack(norms), np.asarray(jnp.stack(losses)))


def token_strings() -> list[str]:
    """The vocabulary's token strings in id order (``[PAD]``, …, ``##s``, …)."""
    from ._bert import load_tokenizer

    vocab = load_tokenizer().get_vocab()
    out = [""] * (max(vocab.values()) + 1)
    for w, i in vocab.items():
        out[i] = w
    return out


def token_frequencies(ids) -> np.ndarray:
    """wordfreq's English frequency of each token's string (0 for word pieces ``##…`` and the
    special tokens ``[…]``, which are not words)."""
    import wordfreq

    names = token_strings()
    return np.array([0.0 if names[i].startswith(("##", "[")) else wordfreq.word_frequency(names[i], "en")
                     for i in np.asarray(ids).tolist()])


class VocabularyFrequencies(NamedTuple):
    """Words with their measured frequencies (:func:`vocabulary_frequencies`), most frequent first.

    **Fields:** ``words`` (list of str); ``frequency`` float64[N] (wordfreq's English frequency,
    per word of running text, > 0); ``in_vocab`` bool[N] (a whole-word token of the real model's
    vocabulary; False for the words of wordfreq's own top list added beyond it); ``token_id``
    int[N] (the token id, −1 for the added words)."""

    words: list
    frequency: np.ndarray
    in_vocab: np.ndarray
    token_id: np.ndarray


def _whole_word(t: str) -> bool:
    return t.isascii() and t.isalpha()  # excludes "##…" pieces, "[…]" specials, digits, punctuation


def vocabulary_frequencies(min_words: int = 0) -> VocabularyFrequencies:
    """The whole-word tokens of all-MiniLM-L6-v2's vocabulary with their wordfreq frequencies.

    A whole word is a token of ASCII letters only (no ``##`` piece, no ``[…]`` special, no digit or
    punctuation); those wordfreq does not know (frequency 0) are dropped: 21,736 of the 30,522
    tokens remain. If that is fewer than ``min_words``, wordfreq's own most frequent English words
    (``wordfreq.top_n_list``, whole words as above, not already in the vocabulary) are added in
    their rank order until there are ``min_words``.

    **Arguments:**

    - `min_words`: the least number of words to return (0: the vocabulary's whole words only).

    **Returns:** a :class:`VocabularyFrequencies`, sorted by decreasing frequency (ties by word).
    """
    import wordfreq

    if min_words < 0:
        raise ValueError(f"min_words must be >= 0, got {min_words}")
    names = token_strings()
    words, ids = [], []
    for i, t in enumerate(names):
        if _whole_word(t):
            words.append(t)
            ids.append(i)
    freq = [wordfreq.word_frequency(w, "en") for w in words]
    keep = [k for k, f in enumerate(freq) if f > 0]
    words, ids, freq = [words[k] for k in keep], [ids[k] for k in keep], [freq[k] for k in keep]
    n_vocab = len(words)
    if len(words) < min_words:
        seen = set(words)
        n_top = 2 * min_words
        while len(words) < min_words:
            for w in wordfreq.top_n_list("en", n_top):
                if len(words) >= min_words:
                    break
                if _whole_word(w) and w not in seen and wordfreq.word_frequency(w, "en") > 0:
                    seen.add(w)
                    words.append(w)
                    ids.append(-1)
                    freq.append(wordfreq.word_frequency(w, "en"))
            if len(words) < min_words and n_top >= 10**6:
                raise ValueError(f"wordfreq has fewer than {min_words} English whole words")
            n_top *= 4
    f = np.asarray(freq, np.float64)
    order = sorted(range(len(words)), key=lambda k: (-f[k], words[k]))
    return VocabularyFrequencies([words[k] for k in order], f[order],
                                 np.asarray([k < n_vocab for k in order]), np.asarray([ids[k] for k in order], np.int64))


def gloss_lemma_pairs(*, max_pairs: int, key: PRNGKeyArray) -> list[tuple[str, str]]:
    """(gloss, lemma) pairs of WordNet noun synsets: ``max_pairs`` synsets drawn without
    replacement (``key``), each with its first lemma (underscores as spaces).

    The contrastive pairs of the real-model experiments (query = the definition, document = the
    word), as in sentence-transformers' (question, answer) training pairs.
    """
    from ._wordnet import load_wordnet

    wn = load_wordnet()
    offsets = sorted(wn.synsets)
    n = min(max_pairs, len(offsets))
    pick = np.asarray(jax.random.choice(key, len(offsets), (n,), replace=False))
    out = []
    for i in pick.tolist():
        s = wn.synsets[offsets[i]]
        out.append((s.gloss, s.lemmas[0].replace("_", " ")))
    return out
