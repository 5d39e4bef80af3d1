import json

import numpy as np
import pytest

from xretrieve.config import EncodeConfig, parse_shard
from xretrieve.encode import Embeddings, encode_corpus, passage_text, shard_bounds
from xretrieve.errors import UserError
from xretrieve.formats import read_corpus
from xretrieve.model import BiEncoder


def config(corpus, out, **kw) -> EncodeConfig:
    return EncodeConfig(corpus=str(corpus), out=str(out), progress=False, **kw)


def test_shards_partition_the_corpus_in_order():
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(2, 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]


@pytest.mark.parametrize("text", ["4/4", "-1/2", "1", "a/b", "0/0"])
def test_shard_out_of_range_or_malformed(text):
    with pytest.raises(UserError, match="--shard"):
        parse_shard(text)


def test_encodes_all_shards_aligned_with_ids_and_langs(corpus, tmp_path, fake_encoder):
    out = encode_corpus(config(corpus, tmp_path / "emb", num_shards=3), encoder=fake_encoder)
    emb = Embeddings(out)
    emb.verify()
    docs = read_corpus(corpus)
    assert emb.manifest["rows"] == len(docs) == sum(s["rows"] for s in emb.shards)
    ids = [i for s in range(3) for i in emb.ids(s)]
    langs = [lang for s in range(3) for lang in emb.langs(s)]
    assert ids == [d.id for d in docs]
    assert langs == [d.lang for d in docs]
    vectors = np.concatenate([emb.vectors(s) for s in range(3)])
    expected = np.stack([fake_encoder.vector(passage_text(d)) for d in docs])
    np.testing.assert_array_equal(vectors, expected)
    assert emb.manifest["model"] == fake_encoder.identity


def test_length_sorted_batches_give_the_same_rows_as_one_by_one(corpus, tmp_path, tiny_model):
    encoder = BiEncoder(str(tiny_model))
    out = encode_corpus(config(corpus, tmp_path / "emb", batch_size=7), encoder=encoder)
    docs = read_corpus(corpus)
    one_by_one = np.concatenate([encoder.encode_passages([passage_text(d)]) for d in docs])
    np.testing.assert_allclose(Embeddings(out).vectors(0), one_by_one, atol=1e-5)


def test_float16_storage(corpus, tmp_path, fake_encoder):
    out = encode_corpus(config(corpus, tmp_path / "emb", dtype="float16"), encoder=fake_encoder)
    emb = Embeddings(out)
    assert emb.vectors(0).dtype == np.float16
    assert emb.manifest["dtype"] == "float16"


def test_single_shard_runs_complete_the_folder_only_when_all_are_done(corpus, tmp_path, fake_encoder):
    out = tmp_path / "emb"
    encode_corpus(config(corpus, out, shard=(1, 2)), encoder=fake_encoder)
    assert not (out / "manifest.json").exists()
    with pytest.raises(UserError, match="incomplete"):
        Embeddings(out)
    encode_corpus(config(corpus, out, shard=(0, 2)), encoder=fake_encoder)
    assert Embeddings(out).manifest["rows"] == 60


class Killed(BaseException):
    pass


class DiesAfter:
    """Wraps an encoder and dies (like a SIGKILL'd run would stop) after `batches` batches."""

    def __init__(self, encoder, batches):
        self.encoder, self.left = encoder, batches

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode_passages(self, texts, **kw):
        if self.left == 0:
            raise Killed()
        self.left -= 1
        return self.encoder.encode_passages(texts, **kw)


def test_killed_run_resumes_skipping_finished_shards(corpus, tmp_path, fake_encoder):
    out = tmp_path / "emb"
    # 60 docs, 3 shards of 20, batches of 8 -> 3 batches per shard: die in the middle of shard 1
    with pytest.raises(Killed):
        encode_corpus(config(corpus, out, num_shards=3, batch_size=8), encoder=DiesAfter(fake_encoder, 4))
    assert (out / "shard-00000.json").exists()
    assert not (out / "shard-00001.json").exists()
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))

    fake_encoder.calls = 0
    encode_corpus(config(corpus, out, num_shards=3, batch_size=8), encoder=fake_encoder)
    assert fake_encoder.calls == 6  # shards 1 and 2 only
    reference = encode_corpus(config(corpus, tmp_path / "ref", num_shards=3, batch_size=8), encoder=fake_encoder)
    for s in range(3):
        np.testing.assert_array_equal(Embeddings(out).vectors(s), Embeddings(reference).vectors(s))


def test_a_damaged_shard_is_encoded_again(corpus, tmp_path, fake_encoder):
    out = tmp_path / "emb"
    encode_corpus(config(corpus, out, num_shards=2), encoder=fake_encoder)
    np.save(out / "shard-00001.npy", np.zeros((30, 16), np.float32))
    fake_encoder.calls = 0
    encode_corpus(config(corpus, out, num_shards=2), encoder=fake_encoder)
    assert fake_encoder.calls == 1
    Embeddings(out).verify()


def test_output_folder_of_another_corpus_is_refused(corpus, tmp_path, fake_encoder):
    out = tmp_path / "emb"
    encode_corpus(config(corpus, out), encoder=fake_encoder)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "z", "text": "zzz"}) + "\n")
    with pytest.raises(UserError, match="different run"):
        encode_corpus(config(other, out), encoder=fake_encoder)


def test_checksum_mismatch_is_reported_when_reading(corpus, tmp_path, fake_encoder):
    out = encode_corpus(config(corpus, tmp_path / "emb"), encoder=fake_encoder)
    (out / "shard-00000.ids.txt").write_text("tampered\n")
    with pytest.raises(UserError, match=r"shard-00000\.ids\.txt: checksum mismatch"):
        Embeddings(out).verify()


def test_plain_hugging_face_folder_loads_with_its_own_settings(tiny_model):
    """A folder with only a transformers model (no sentence-transformers config): mean pooling, no prompts,
    no normalisation -- nothing is guessed from the name."""
    encoder = BiEncoder(str(tiny_model.parent / "hf"))
    identity = encoder.identity
    assert identity["dim"] == 32
    assert (identity["query_prompt"], identity["passage_prompt"], identity["normalized"]) == ("", "", False)
    vectors = encoder.encode_passages(["the quick brown fox", "water river sea"])
    assert vectors.shape == (2, 32) and not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_sentence_transformers_folder_uses_its_saved_prompts(tiny_model):
    encoder = BiEncoder(str(tiny_model))
    assert (encoder.identity["query_prompt"], encoder.identity["passage_prompt"]) == ("query: ", "passage: ")
    assert encoder.identity["normalized"] is True
    plain = encoder.model.encode(["the dog"], convert_to_numpy=True)
    assert not np.allclose(encoder.encode_queries(["the dog"]), plain)
    np.testing.assert_allclose(encoder.encode_queries(["the dog"]), encoder.model.encode(["query: the dog"]), atol=1e-6)


def test_unreachable_hub_name_is_a_user_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, as with no network
    with pytest.raises(UserError, match="cannot load model 'nobody/no-such-model'.*pass a local model folder"):
        BiEncoder("nobody/no-such-model")


def test_missing_model_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such model folder"):
        BiEncoder(str(tmp_path / "absent"))


def test_save_model_with_cls_pooling_matches_the_first_token_state(tiny_model, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from xretrieve.cli import main

    hf = tiny_model.parent / "hf"
    out = tmp_path / "cls-model"
    assert (
        main(
            [
                "save-model",
                "--model",
                str(hf),
                "--out",
                str(out),
                "--pooling",
                "cls",
                "--max-seq-length",
                "16",
                "--query-prompt",
                "query: ",
            ]
        )
        == 0
    )
    encoder = BiEncoder(str(out))
    assert encoder.identity["query_prompt"] == "query: " and encoder.model.max_seq_length == 16
    tokenizer, model = AutoTokenizer.from_pretrained(hf), AutoModel.from_pretrained(hf)
    with torch.no_grad():
        first = model(**tokenizer(["the lazy dog"], return_tensors="pt")).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(encoder.encode_passages(["the lazy dog"]), first, atol=1e-5)
    with pytest.raises(UserError, match="already exists"):
        from xretrieve.model import save_model

        save_model(str(hf), str(out))
