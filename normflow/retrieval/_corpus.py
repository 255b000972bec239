"""A synthetic norm-aware retrieval benchmark on a concept tree (docs/theory.md §10, issue 7).

Queries are the concepts of a :class:`~normflow.tasks.HierarchicalTask`, at every depth.
Documents are a fixed set of contexts attached to tree nodes: ``docs_per_leaf`` per leaf and
``docs_per_node`` per internal node (the *generic* documents). A document attached to node
``v`` has the context vector ``normalize(dir(v) + context_noise · g/√dim)``, ``g ~ N(0, I)``,
where ``dir(v)`` is the normalised mean direction of ``v``'s leaves (for a leaf: its centre), as
in :meth:`HierarchicalTask.sample`.

Relevance (binary, trec_eval grade 1 / 0)
-----------------------------------------
Document ``j`` is relevant to query ``q`` iff its node lies *below or at* ``q`` in the tree:
``leaf_lo[q] <= leaf_lo[v_j]`` and ``leaf_lo[v_j] + leaf_count[v_j] <= leaf_lo[q] + leaf_count[q]``
(nested leaf ranges). So a root query is answered by every document of its subtree; a leaf
query only by its own leaf's documents. Every query has at least one relevant document when
``docs_per_leaf >= 1``.

Training pairs (co-occurrence, not relevance)
---------------------------------------------
The encoder is trained contrastively on (concept, document) pairs. A document co-occurs with
every concept on the root-to-leaf paths through its node: its node's ancestors-or-self (the
concepts it is relevant to) **and**, with ``hubs=True``, every concept below its node. So a
generic document co-occurs with many, spread-out specific concepts without being relevant to
them -- a *hub*, like a generic sentence that appears in texts about many specific topics. A
leaf document co-occurs only with its ancestors-or-self (co-occurrence = relevance). With
``hubs=False`` co-occurrence equals relevance for every document.

Sampling (``sample``): a document ``j`` uniformly from the corpus, then a concept among those
that co-occur with ``j``, in proportion to the task's concept ``weights``. Every document
therefore has the same frequency ``p`` (docs/theory.md §1), so whatever differs between documents'
norms is not frequency; the sources differ in their variance (a hub is pulled towards
concepts all over its subtree).

Encodings
---------
``encoding="table"``: a batch's contexts are one-hot document indicators and the model is
:class:`DocumentTables` -- a free row per concept *and per document*, the setting of
docs/theory.md §5-§8, so each document's norm is its own degree of freedom. ``encoding="context"``:
the contexts are the documents' context vectors, for a network context tower such as
:class:`~normflow.models.DualEncoder` (document norms are then set by shared weights acting on
fixed inputs).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ..losses import get_loss
from ._metrics import NDCGCurve, has_relevant, ndcg_curve, norm_weighted_scores, rank
from ..models import AbstractEmbeddingModel
from ..tasks import AbstractTask, Batch

__all__ = [
    "below_matrix",
    "RetrievalCorpus",
    "DocumentTables",
    "document_embeddings",
    "DocumentSource",
    "document_source_energy",
    "RetrievalEval",
    "evaluate",
    "best_alpha",
    "alpha_grid",
    "shuffled_norm_gains",
    "cosine_false_positives",
]


def _unit(v: Float[Array, "... d"]) -> Float[Array, "... d"]:
    return v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True))


def below_matrix(task) -> np.ndarray:
    """``below[u, v]`` = node ``v`` lies below or at node ``u`` (v's leaf range ⊆ u's), bool [N, N].

    Exact for :class:`~normflow.tasks.HierarchicalTask`, whose nodes' leaf ranges are nested.
    """
    lo = np.asarray(task.leaf_lo)
    hi = lo + np.asarray(task.leaf_count)
    return (lo[None, :] >= lo[:, None]) & (hi[None, :] <= hi[:, None])


class RetrievalCorpus(AbstractTask):
    """The benchmark: documents attached to tree nodes, relevance, training co-occurrence.

    It is also a task for :func:`normflow.train` / :func:`normflow.sweep`: ``sample(key, B)``
    draws (concept, document) training pairs (see the module docstring).

    Attributes:
        doc_node: [D] tree node (concept id) each document is attached to.
        doc_depth: [D] depth of that node (0 = most generic).
        query_depth: [Q] depth of each query concept (queries are all concepts, Q = N).
        contexts: [D, dim] unit context vector of each document.
        relevance: [Q, D] int 0/1, 1 iff the document's node is below or at the query.
        cooccur: [Q, D] bool, the (concept, document) pairs that occur in training.
        weights: [Q] the task's concept sampling weights.
        temperature: the task's temperature (a 0-d array).
        encoding: ``"table"`` (one-hot document inputs) or ``"context"`` (context vectors).
    """

    doc_node: Int[Array, " D"]
    doc_depth: Int[Array, " D"]
    query_depth: Int[Array, " Q"]
    contexts: Float[Array, "D dim"]
    relevance: Int[Array, "Q D"]
    cooccur: Bool[Array, "Q D"]
    weights: Float[Array, " Q"]
    temperature: Float[Array, ""]
    encoding: str = eqx.field(static=True)

    def __init__(
        self,
        task,
        *,
        key: PRNGKeyArray,
        docs_per_leaf: int = 3,
        docs_per_node: int = 4,
        hubs: bool = True,
        encoding: Literal["table", "context"] = "table",
        context_noise: float | None = None,
    ):
        if docs_per_leaf < 1 or docs_per_node < 0:
            raise ValueError(f"need docs_per_leaf >= 1 and docs_per_node >= 0, got {docs_per_leaf}, {docs_per_node}")
        if encoding not in ("table", "context"):
            raise ValueError(f'encoding must be "table" or "context", got {encoding!r}')
        depth = np.asarray(task.depth)
        leaf_level = int(depth.max())
        per_node = np.where(depth == leaf_level, docs_per_leaf, docs_per_node)
        doc_node = np.repeat(np.arange(depth.shape[0]), per_node)
        below = below_matrix(task)
        rel = below[:, doc_node]  # [Q, D]: doc node below-or-at query
        co = rel | below[doc_node, :].T if hubs else rel  # also: query below the doc's node
        dtype = task.dtype
        noise = task.context_noise if context_noise is None else context_noise
        node_dir = _unit(task.context_mean())
        g = jax.random.normal(key, (doc_node.shape[0], task.dim), dtype=dtype)
        self.contexts = _unit(node_dir[doc_node] + jnp.asarray(noise, dtype) * g / math.sqrt(task.dim))
        self.doc_node = jnp.asarray(doc_node, jnp.int32)
        self.doc_depth = jnp.asarray(depth[doc_node], jnp.int32)
        self.query_depth = jnp.asarray(depth, jnp.int32)
        self.relevance = jnp.asarray(rel, jnp.int32)
        self.cooccur = jnp.asarray(co)
        self.weights = jnp.asarray(task.weights, dtype)
        self.temperature = jnp.asarray(task.temperature, dtype)
        self.encoding = encoding

    @property
    def num_concepts(self) -> int:
        return self.relevance.shape[0]

    @property
    def num_docs(self) -> int:
        return self.relevance.shape[1]

    @property
    def dim(self) -> int:
        return self.contexts.shape[1]

    @property
    def dtype(self):
        return self.contexts.dtype

    def sample_ids(self, key: PRNGKeyArray, batch_size: int) -> tuple[Int[Array, " B"], Int[Array, " B"]]:
        """(concepts, documents) of ``batch_size`` training pairs: a document uniformly, then
        a co-occurring concept in proportion to ``weights``. Deterministic given ``key``."""
        k_doc, k_con = jax.random.split(key)
        docs = jax.random.randint(k_doc, (batch_size,), 0, self.num_docs)
        logits = jnp.where(self.cooccur[:, docs].T, jnp.log(self.weights)[None, :], -jnp.inf)
        concepts = jax.random.categorical(k_con, logits, axis=-1)
        return concepts.astype(jnp.int32), docs.astype(jnp.int32)

    def inputs(self, docs: Int[Array, " B"]) -> Float[Array, "B c"]:
        """The context-tower inputs of documents: one-hot [B, D] (table) or vectors [B, dim]."""
        if self.encoding == "table":
            return jax.nn.one_hot(docs, self.num_docs, dtype=self.dtype)
        return self.contexts[docs]

    def sample(self, key: PRNGKeyArray, batch_size: int) -> Batch:
        concepts, docs = self.sample_ids(key, batch_size)
        return Batch(concepts=concepts, contexts=self.inputs(docs))


class DocumentTables(AbstractEmbeddingModel):
    """A free row per concept and per document (docs/theory.md §2-§8 on both sides).

    ``embed_contexts`` takes one-hot document indicators (``RetrievalCorpus(encoding="table")``)
    and returns ``onehot @ docs``, i.e. the documents' rows: each document's embedding is its
    own parameter, so its norm follows the theory's per-embedding formulas.
    """

    concepts: Float[Array, "N d"]
    docs: Float[Array, "D d"]

    def __init__(self, num_concepts: int, num_docs: int, dim: int, *, key: PRNGKeyArray, init_norm: float = 1.0,
                 dtype=jnp.float32):
        k_c, k_d = jax.random.split(key)
        self.concepts = init_norm * _unit(jax.random.normal(k_c, (num_concepts, dim), dtype))
        self.docs = init_norm * _unit(jax.random.normal(k_d, (num_docs, dim), dtype))

    def embed_concepts(self, ids: Int[Array, " B"]) -> Float[Array, "B d"]:
        return self.concepts[ids]

    def concept_embeddings(self) -> Float[Array, "N d"]:
        return self.concepts

    def embed_contexts(self, contexts: Float[Array, "B D"]) -> Float[Array, "B d"]:
        return jnp.matmul(contexts, self.docs, precision=jax.lax.Precision.HIGHEST)

    def doc_embeddings(self) -> Float[Array, "D d"]:
        return self.docs


def document_embeddings(model, corpus: RetrievalCorpus) -> Float[Array, "D d"]:
    """Un-normalised embeddings of every document of ``corpus`` under ``model``."""
    if isinstance(model, DocumentTables):
        return model.doc_embeddings()
    return model.embed_contexts(corpus.inputs(jnp.arange(corpus.num_docs)))


class DocumentSource(NamedTuple):
    """Per-document source statistics at unit radius (docs/theory.md §1, document side).

    ``p``: fraction of minibatches containing the document; conditional on presence the source
    ``s = R ∇_y L`` has mean ``s̄`` (``mean_sq = |s̄|²``) and covariance trace ``var = V²``;
    ``pw2 = p(|s̄|² + V²)`` is the per-step energy of docs/theory.md §5-§8; ``source_norm = sqrt(E|s|²)``.
    """

    p: Float[Array, " D"]
    pw2: Float[Array, " D"]
    mean_sq: Float[Array, " D"]
    var: Float[Array, " D"]
    source_norm: Float[Array, " D"]


@eqx.filter_jit
def _doc_source_stats(model, corpus, keys, batch_size, loss_fn):
    y_all = document_embeddings(model, corpus)
    x_all = model.concept_embeddings()
    r = jnp.sqrt(jnp.sum(y_all * y_all, axis=-1))

    def one(k):
        concepts, docs = corpus.sample_ids(k, batch_size)
        g = jax.grad(lambda y: loss_fn(x_all[concepts], y[docs], corpus.temperature))(y_all)
        present = jnp.zeros(corpus.num_docs, bool).at[docs].set(True)
        return r[:, None] * g, present  # s = R ∇_y L (∇_y L ∝ 1/R): the source at unit radius

    s, present = jax.lax.map(one, keys)
    k_present = jnp.sum(present, axis=0)
    p = k_present / keys.shape[0]
    n = jnp.maximum(k_present, 1)
    mean = jnp.sum(s, axis=0) / n[:, None]
    sq = jnp.sum(jnp.sum(s * s, axis=-1), axis=0) / n
    mean_sq = jnp.sum(mean * mean, axis=-1)
    var = jnp.maximum(sq - mean_sq, 0.0) * (k_present / jnp.maximum(k_present - 1, 1))
    return DocumentSource(p=p, pw2=p * (mean_sq + var), mean_sq=mean_sq, var=var, source_norm=jnp.sqrt(sq))


def document_source_energy(model, corpus: RetrievalCorpus, *, key: PRNGKeyArray, batch_size: int,
                           num_batches: int = 128, loss="symmetric_info_nce") -> DocumentSource:
    """docs/theory.md §1's source statistics on the *document* side, per document, from
    ``num_batches`` minibatches of ``corpus.sample``: ``p`` (fraction of batches containing the
    document), ``pW² = p(|s̄|² + V²)`` with ``s = R ∇_y L`` the per-step gradient on the
    document embedding ``y`` at unit radius (summed over the document's slots in the batch),
    ``V²`` its conditional (unbiased) variance: the estimator of :func:`normflow.source_energy`
    applied to documents.
    """
    if num_batches < 2:
        raise ValueError(f"num_batches must be >= 2, got {num_batches}")
    keys = jax.random.split(key, num_batches)
    return _doc_source_stats(model, corpus, keys, batch_size, get_loss(loss))


class RetrievalEval(NamedTuple):
    """NDCG@k of ``cos · |d|^α`` along an α grid, overall and per query depth.

    Attributes:
        curve: the :class:`~normflow.retrieval.NDCGCurve` (``ndcg`` averaged over answerable
            queries, ``per_query`` [A, Q]).
        depths: [L] the query depths present.
        per_depth: [L, A] mean NDCG@k over the answerable queries of each depth.
    """

    curve: NDCGCurve
    depths: Int[Array, " L"]
    per_depth: Float[Array, "L A"]


def evaluate(model, corpus: RetrievalCorpus, alphas: Float[Array, " A"], k: int = 10) -> RetrievalEval:
    """Score every query (all concepts) against every document with ``cos(q, d)·|d|^α``
    (:func:`normflow.retrieval.ndcg_curve`, ``weight="doc"``) for each α; NDCG@k overall and
    per query depth (queries without a relevant document are excluded from the means)."""
    q = model.concept_embeddings()
    d = document_embeddings(model, corpus)
    curve = ndcg_curve(q, d, corpus.relevance, jnp.asarray(alphas, q.dtype), k=k, weight="doc")
    answerable = np.asarray(has_relevant(corpus.relevance))
    qd = np.asarray(corpus.query_depth)
    depths = np.unique(qd)
    pq = np.asarray(curve.per_query)
    rows = []
    for lvl in depths:
        m = (qd == lvl) & answerable
        rows.append(pq[:, m].mean(axis=1) if m.any() else np.full(pq.shape[0], np.nan))
    return RetrievalEval(curve=curve, depths=jnp.asarray(depths), per_depth=jnp.asarray(np.stack(rows)))


def alpha_grid(lo: float, hi: float, step: float) -> np.ndarray:
    """``k · step`` for integers k from ``round(lo/step)`` to ``round(hi/step)``: α = 0 is
    exactly on the grid (``0 · step = 0.0``) whenever ``lo <= 0 <= hi``."""
    if not step > 0:
        raise ValueError(f"alpha step must be > 0, got {step}")
    if not lo < hi:
        raise ValueError(f"need alpha min < alpha max, got {lo}, {hi}")
    return np.arange(round(lo / step), round(hi / step) + 1, dtype=np.float64) * step


def best_alpha(alphas, ndcg) -> tuple[np.ndarray, float, float]:
    """Normalise an NDCG curve to its α = 0 value and pick the best α.

    Returns ``(normalised, best_alpha, gain)``: ``normalised = ndcg / ndcg(α=0)`` (exactly 1.0
    at α = 0), ``best_alpha`` the α of its maximum (ties, e.g. plateaus: the α closest to 0),
    ``gain = max(normalised) - 1`` (the relative NDCG@k gain over cosine). ``α = 0`` must be on
    the grid; a zero cosine NDCG gives NaNs.
    """
    a = np.asarray(alphas, np.float64)
    v = np.asarray(ndcg, np.float64)
    zero = np.flatnonzero(a == 0.0)
    if zero.size != 1:
        raise ValueError("the alpha grid must contain 0.0 exactly once")
    base = v[zero[0]]
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = v / base
    if not np.all(np.isfinite(norm)):
        return norm, float("nan"), float("nan")
    top = np.flatnonzero(norm == norm.max())
    i = top[np.argmin(np.abs(a[top]))]
    return norm, float(a[i]), float(norm[i] - 1.0)


def shuffled_norm_gains(model, corpus: RetrievalCorpus, alphas, *, key: PRNGKeyArray, k: int = 10,
                        num: int = 20) -> np.ndarray:
    """The null control: best NDCG@k gain over cosine (:func:`best_alpha` on the overall curve)
    when the documents' norms are randomly permuted among the documents, directions kept.

    The norms then carry nothing about which document is which, yet the best gain over an α
    grid is biased upwards (a maximum over α of random re-rankings). A measured gain inside
    this null distribution is not evidence that the norms carry relevance. Returns [num] gains.
    """
    q = model.concept_embeddings()
    d = document_embeddings(model, corpus)
    r = jnp.sqrt(jnp.sum(d * d, axis=-1))
    d_hat = d / r[:, None]
    a = jnp.asarray(alphas, q.dtype)
    out = []
    for kk in jax.random.split(key, num):
        perm = jax.random.permutation(kk, r.shape[0])
        curve = ndcg_curve(q, d_hat * r[perm][:, None], corpus.relevance, a, k=k, weight="doc")
        out.append(best_alpha(alphas, np.asarray(curve.ndcg))[2])
    return np.asarray(out)


def cosine_false_positives(model, corpus: RetrievalCorpus, k: int = 10) -> Int[Array, " D"]:
    """Per document: for how many queries it is in the cosine top-``k`` without being relevant
    (its "hubness" as a false positive; the documents a norm discount should push down)."""
    q = model.concept_embeddings()
    d = document_embeddings(model, corpus)
    top = rank(norm_weighted_scores(q, d), k)  # [Q, k]
    wrong = jnp.take_along_axis(corpus.relevance, top, axis=-1) <= 0
    return jnp.zeros(corpus.num_docs, jnp.int32).at[top.ravel()].add(wrong.ravel().astype(jnp.int32))
