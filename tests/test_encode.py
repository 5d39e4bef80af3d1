import json
import shutil

import numpy as np
import pytest

from xretrieve.config import EncodeConfig, parse_shard
from xretrieve.encode import Embeddings, encode_corpus, encode_texts, passage_text, shard_bounds
from xretrieve.errors import UserError
from xretrieve.formats import read_corpus
from xretrieve.model import BiEncoder, model_identity, read_identity


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


def test_killed_single_shard_resumes_from_its_last_checkpoint(corpus, tmp_path, fake_encoder, capsys):
    out = tmp_path / "emb"
    # one shard of 60, checkpoints every 16 (chunks 0-16, 16-32, 32-48, 48-60), batches of 8: die in chunk 2
    settings = {"batch_size": 8, "checkpoint_every": 16}
    with pytest.raises(Killed):
        encode_corpus(config(corpus, out, **settings), encoder=DiesAfter(fake_encoder, 5))
    assert not (out / "shard-00000.json").exists()
    assert sorted(p.name for p in (out / "shard-00000.chunks").iterdir()) == [
        "chunk-00000.json",
        "chunk-00000.npy",
        "chunk-00001.json",
        "chunk-00001.npy",
    ]
    capsys.readouterr()

    fake_encoder.calls = 0
    encode_corpus(config(corpus, out, **settings), encoder=fake_encoder)
    assert "resuming: 32 of 60 passages already encoded" in capsys.readouterr().err
    assert fake_encoder.calls == 4  # chunk 2 (2 batches) and chunk 3 (12 rows: 2 batches)
    assert not (out / "shard-00000.chunks").exists()
    docs = read_corpus(corpus)
    expected = np.stack([fake_encoder.vector(passage_text(d)) for d in docs])
    np.testing.assert_array_equal(Embeddings(out).vectors(0), expected)
    reference = tmp_path / "reference.npy"
    np.save(reference, expected)  # the joined chunks are the file np.save writes for the whole shard
    assert (out / "shard-00000.npy").read_bytes() == reference.read_bytes()
    Embeddings(out).verify()


def test_a_damaged_checkpoint_is_encoded_again(corpus, tmp_path, fake_encoder):
    out = tmp_path / "emb"
    with pytest.raises(Killed):
        encode_corpus(config(corpus, out, batch_size=8, checkpoint_every=16), encoder=DiesAfter(fake_encoder, 5))
    np.save(out / "shard-00000.chunks" / "chunk-00001.npy", np.zeros((16, 16), np.float32))
    fake_encoder.calls = 0
    encode_corpus(config(corpus, out, batch_size=8, checkpoint_every=16), encoder=fake_encoder)
    assert fake_encoder.calls == 6  # chunks 1, 2 and 3
    docs = read_corpus(corpus)
    np.testing.assert_array_equal(
        Embeddings(out).vectors(0), np.stack([fake_encoder.vector(passage_text(d)) for d in docs])
    )


def test_checkpoints_of_another_shard_count_are_refused_before_encoding(corpus, tmp_path, fake_encoder):
    out = tmp_path / "emb"
    with pytest.raises(Killed):
        encode_corpus(config(corpus, out, batch_size=8, checkpoint_every=16), encoder=DiesAfter(fake_encoder, 3))
    fake_encoder.calls = 0
    with pytest.raises(UserError, match=r"chunk-00000\.json: this folder holds work of a different run"):
        encode_corpus(config(corpus, out, num_shards=2), encoder=fake_encoder)
    assert fake_encoder.calls == 0


def test_too_little_disk_space_is_refused_before_encoding(corpus, tmp_path, fake_encoder, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    # 60 rows x 16 float32: 3,840 bytes for the shard and as much for its chunks
    with pytest.raises(UserError, match=r"emb: shard-00000 and its chunks needs about 0 MB but the disk has 0 MB free"):
        encode_corpus(config(corpus, tmp_path / "emb"), encoder=fake_encoder)
    assert fake_encoder.calls == 0


def test_an_output_folder_that_cannot_be_created_is_refused_before_the_model_loads(corpus, tmp_path, fake_encoder):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"a-file/emb: cannot be a folder: .*a-file is a file"):
        encode_corpus(config(corpus, blocker / "emb"), encoder=fake_encoder)
    assert fake_encoder.calls == 0


def test_a_failed_write_names_the_file(corpus, tmp_path, fake_encoder, monkeypatch):
    def full_disk(file, array):
        raise OSError("57600 requested and 25568 written")  # what numpy says when the disk fills up

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(OSError) as failure:
        encode_corpus(config(corpus, tmp_path / "emb"), encoder=fake_encoder)
    assert failure.value.filename == str(tmp_path / "emb" / "shard-00000.chunks" / "chunk-00000.npy")
    assert failure.value.strerror == "cannot write (57600 requested and 25568 written; is the disk full?)"
    assert not list((tmp_path / "emb").rglob("*.tmp"))


class RecordingBar:
    def __init__(self):
        self.updates = []

    def update(self, n):
        self.updates.append(n)


def test_progress_counts_tokens_read_so_the_first_batches_do_not_skew_the_eta(fake_encoder):
    texts = ["a " * 100, "b " * 3, "c " * 2, "d " * 700, "e", "f " * 4]  # words stand for tokens
    fake_encoder.passage_room = 510
    bar = RecordingBar()
    encode_texts(fake_encoder, texts, batch_size=2, bar=bar)
    # longest first; a passage weighs what the model reads of it: 700 words count 510
    assert bar.updates == [510 + 100, 4 + 3, 2 + 1]


def test_truncated_passages_are_counted_once_at_the_end(corpus, tmp_path, fake_encoder, capsys):
    fake_encoder.passage_room = 5
    docs = read_corpus(corpus)
    long = sum(len(passage_text(d).split()) > 5 for d in docs)
    assert 0 < long < len(docs)
    out = encode_corpus(config(corpus, tmp_path / "emb", num_shards=2, checkpoint_every=7), encoder=fake_encoder)
    err = capsys.readouterr().err
    assert f"xretrieve: {long} passages truncated to 512 tokens" in err and err.count("truncated") == 1
    assert sum(json.loads((out / f"shard-0000{i}.json").read_text())["truncated"] for i in range(2)) == long


def test_counting_tokens_of_a_long_passage_warns_about_nothing(tiny_model, capfd):
    encoder = BiEncoder(str(tiny_model))  # a fresh tokenizer: its one-time warning has not been spent
    lengths = encoder.token_lengths(["the quick brown fox " * 40])
    # the model reads 64 tokens; this word-level tokenizer adds no special tokens, the prompt takes one. Counts
    # stop at what the model reads (160 words count 64), still more than the passage's room: one truncation
    assert lengths == [64] and encoder.max_seq_length == 64 and encoder.passage_room == 63
    assert "Token indices sequence length" not in capfd.readouterr().err


def test_the_identity_is_read_from_the_folder_without_the_weights(tiny_model, tmp_path, monkeypatch):
    """What the Ray driver and `index --corpus` read instead of loading the model: the identity the loaded
    model reports, for a sentence-transformers folder; None where only loading can tell (no modules.json)."""
    loaded = BiEncoder(str(tiny_model)).identity
    monkeypatch.setattr("xretrieve.model.BiEncoder", None)  # reading must not load the model
    assert read_identity(str(tiny_model)) == model_identity(str(tiny_model)) == loaded
    assert read_identity(str(tiny_model.parent / "hf")) is None
    unknown = tmp_path / "custom"
    shutil.copytree(tiny_model, unknown)
    modules = json.loads((unknown / "modules.json").read_text())
    modules[1]["type"] = "somewhere.CustomPooling"
    (unknown / "modules.json").write_text(json.dumps(modules))
    assert read_identity(str(unknown)) is None
