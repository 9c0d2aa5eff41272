"""Tokenization and batching: dynamic padding, length grouping, length clamping."""

from __future__ import annotations

import random
from collections import Counter

from tunelab.collate import Collator, LengthGroupedBatches, effective_max_length, make_loader
from tunelab.tasks.texts import encode
from tunelab.modeling import load_tokenizer


def test_dynamic_padding_pads_each_batch_to_its_longest(tiny_bert):
    tokenizer = load_tokenizer(tiny_bert)
    texts = ["good", "good movie", "the movie was really very good and fun", "bad"]
    encoded = encode(tokenizer, texts, None, 64, labels=[1, 1, 1, 0])
    assert "token_type_ids" in encoded.features
    loader = make_loader(encoded, 2, Collator(tokenizer.pad_token_id), shuffle=False)
    batches = list(loader)
    assert [b["input_ids"].shape[1] for b in batches] == [10, 3]  # longest first: 8 words with "good movie"
    first = batches[0]
    # The longest row is not padded; the other row's padded positions hold the pad id with mask 0.
    assert first["attention_mask"][0].tolist() == [1] * 10
    assert first["attention_mask"][1].tolist() == [1] * 4 + [0] * 6
    assert first["input_ids"][1, 4:].tolist() == [tokenizer.pad_token_id] * 6
    assert first["token_type_ids"][1, 4:].tolist() == [0] * 6
    assert first["labels"].tolist() == [1, 1] and first["row_index"].tolist() == [2, 1]
    assert batches[1]["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 1]]
    # A tokenizer whose pad id is not 0 (RoBERTa, MPNet: 1): only input_ids take it; the mask and the segment
    # ids are padded with 0, or padding would be attended to.
    padded = Collator(7)([encoded[2], encoded[0]])
    assert padded["input_ids"][1, 3:].tolist() == [7] * 7
    assert padded["attention_mask"][1].tolist() == [1] * 3 + [0] * 7
    assert padded["token_type_ids"][1, 3:].tolist() == [0] * 7
    # Tokenizers without segment ids (RoBERTa, MPNet, Llama): the mask is still there.
    plain = Collator(7)([{"input_ids": [5, 6, 8], "attention_mask": [1, 1, 1]}, {"input_ids": [5], "attention_mask": [1]}])
    assert sorted(plain) == ["attention_mask", "input_ids"]
    assert plain["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_pairs_get_segment_ids_and_truncation(tiny_bert):
    tokenizer = load_tokenizer(tiny_bert)
    encoded = encode(tokenizer, ["good movie " * 20], ["bad plot"], 16)
    assert len(encoded.features["input_ids"][0]) == 16
    assert encoded.features["token_type_ids"][0][-1] == 1


def test_max_length_is_clamped_to_the_model(tiny_bert):
    from transformers import AutoConfig

    tokenizer = load_tokenizer(tiny_bert)
    assert effective_max_length(tokenizer, AutoConfig.from_pretrained(tiny_bert), 4096) == 64
    assert effective_max_length(tokenizer, AutoConfig.from_pretrained(tiny_bert), 32) == 32


def test_length_grouped_batches_cover_every_row_once_and_reshuffle():
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    sampler = LengthGroupedBatches(lengths, batch_size=8, seed=1, group=10)
    first = sampler.batches(0)
    assert Counter(i for b in first for i in b) == Counter(range(1000))
    assert first != sampler.batches(1) and first == sampler.batches(0)
    # Within a batch, lengths are close: far less spread than random batches.
    def spread(batches):
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    shuffled = list(range(1000))
    random.Random(0).shuffle(shuffled)
    random_batches = [shuffled[i : i + 8] for i in range(0, 1000, 8)]
    assert spread(first) < spread(random_batches) / 5


def test_prediction_batches_cover_every_row_once_with_little_padding():
    from tunelab.collate import prediction_batches

    lengths = [5, 40, 12, 38, 6, 30, 7, 41, 11, 8]
    batches = prediction_batches(lengths, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in batches)
    for batch in batches:
        widest = lengths[batch[0]]
        assert all(lengths[i] <= widest and lengths[i] >= widest * 2 / 3 for i in batch)
    # Longest first: [41, 40, 38] fill a batch; 30 starts one and 12 is under 2/3 of it.
    assert [[lengths[i] for i in b] for b in batches] == [[41, 40, 38], [30], [12, 11, 8], [7, 6, 5]]


def test_per_piece_labels_are_padded_with_minus_100():
    rows = [{"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "labels": [-100, 1, -100], "row_index": 0},
            {"input_ids": [2, 3], "attention_mask": [1, 1], "labels": [-100, -100], "row_index": 1}]
    batch = Collator(pad_token_id=0)(rows)
    assert batch["labels"].tolist() == [[-100, 1, -100], [-100, -100, -100]]
    assert batch["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]


def test_packing_lays_rows_end_to_end_with_their_own_positions_and_attention():
    import torch

    from tunelab.collate import PackingCollator

    def row(index, length):
        ids = [100 + 10 * index + k for k in range(length)]
        return {"input_ids": ids, "attention_mask": [1] * length, "token_type_ids": [0] * length,
                "labels": [index] * length, "row_index": 7 + index}

    rows = [row(0, 5), row(1, 2), row(2, 3), row(3, 1)]
    packer = PackingCollator(pad_token_id=0)
    # First fit, longest first, into rows as wide as the longest (5): [5], [3 + 2], [1].
    assert packer.layout([5, 2, 3, 1]) == [[0], [2, 1], [3]]
    batch = packer(rows)
    assert batch["input_ids"].tolist() == [[100, 101, 102, 103, 104], [120, 121, 122, 110, 111], [130, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 0, 1], [0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[0] * 5, [2, 2, 2, 1, 1], [3, -100, -100, -100, -100]]
    assert batch["token_type_ids"].tolist() == [[0] * 5] * 3
    assert batch["row_index"].tolist() == [7, 9, 8, 10]  # every row once, in packed order
    allowed = (batch["attention_mask"][:, 0] == 0).int().tolist()  # additive mask: 0 attends, -inf does not
    assert allowed[1] == [[1, 1, 1, 0, 0]] * 3 + [[0, 0, 0, 1, 1]] * 2  # each row attends within itself
    assert allowed[2] == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]
    assert batch["attention_mask"].min() == torch.finfo(torch.float32).min
    offset = PackingCollator(pad_token_id=1, position_offset=2)(rows)  # RoBERTa-style positions
    assert offset["position_ids"][1].tolist() == [2, 3, 4, 2, 3]
    alone = packer([row(4, 3)])  # the last batch of an epoch can hold a single row
    assert alone["input_ids"].tolist() == [[140, 141, 142]] and alone["row_index"].tolist() == [11]


def test_a_frame_of_pairs_encodes_both_texts_with_their_segments(tiny_bert):
    """Training and validation rows of sentence pairs are read as tokenizer(text, pair), labels beside them."""
    import pandas as pd

    from tunelab.tasks.texts import encode_frame

    tokenizer = load_tokenizer(tiny_bert)
    frame = pd.DataFrame({"text": ["good fun", "dull"], "text_pair": ["bad movie", "great film"], "label": [1, 0]})
    encoded = encode_frame(tokenizer, frame, 32)
    expected = tokenizer(["good fun", "dull"], ["bad movie", "great film"])
    assert encoded.features["input_ids"] == expected["input_ids"]
    assert encoded.features["token_type_ids"] == expected["token_type_ids"]
    assert set(encoded.features["token_type_ids"][0]) == {0, 1} and encoded.labels == [1, 0]
