"""Text: seeded sentences to send, and a WordPiece tokenizer trained here to turn them into
the token ids and attention mask a BERT-like model takes.

No vocabulary can be downloaded, so the words are made from seeded syllables and used with
Zipf-like frequencies (a few common words, a long tail), and the tokenizer is trained on a
seeded corpus of them with the `tokenizers` library (WordPiece, lower-cased, BERT's
pre-tokenizer, [CLS] ... [SEP], padded with [PAD] = id 0 and masked). The same seed gives
the same words, but training may order tokens of equal frequency differently from one run
to the next, so a run trains its tokenizer once and saves it as one JSON file that client
and server both load (processing/client.py `tokenizer_file`): they cut text the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] first: id 0
_ONSETS = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "st",
           "tr", "pl", "gr", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "nd", "st"]


def make_words(n: int, seed: int) -> list[str]:
    """`n` distinct pronounceable pseudo-words of one to four syllables."""
    rng = np.random.default_rng(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        syllables = rng.integers(1, 5)
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                       for _ in range(syllables))
        words[word] = None
    return list(words)


def make_texts(n: int, words_min: int, words_max: int, seed: int,
               vocabulary: int = 3000) -> list[str]:
    """`n` seeded texts of words_min..words_max words, drawn Zipf-like from the words."""
    rng = np.random.default_rng(seed)
    words = make_words(vocabulary, seed)
    weights = 1.0 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    texts = []
    for _ in range(n):
        count = int(rng.integers(words_min, words_max + 1))
        picked = rng.choice(len(words), size=count, p=weights)
        texts.append(" ".join(words[i] for i in picked) + ".")
    return texts


def train_tokenizer(path: Path, vocab_size: int, seed: int):
    """Train the WordPiece tokenizer on a seeded corpus and save it to `path` (JSON)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                        show_progress=False)
    tokenizer.train_from_iterator(make_texts(2000, 20, 60, seed), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")),
                        ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return tokenizer


def load_tokenizer(path: Path, sequence: int):
    """The saved tokenizer, cutting and padding every text to `sequence` tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=sequence)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=sequence)
    return tokenizer


def preprocess_texts(texts, tokenizer) -> dict[str, np.ndarray]:
    """A batch of texts as int64 input_ids and attention_mask [n, sequence]."""
    encodings = tokenizer.encode_batch([t.decode() if isinstance(t, bytes) else t
                                        for t in texts])
    return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}
