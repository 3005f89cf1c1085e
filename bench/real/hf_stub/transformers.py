"""A stand-in for the two `transformers` classes that llama.cpp's convert_hf_to_gguf.py touches when it
converts a Llama directory whose tokenizer.json is a byte-fallback BPE (its LlamaHfVocab path):
AutoConfig (config.json as a dict) and AutoTokenizer (the vocabulary listing only: no encoding). Used
only where the real package cannot be installed (this machine reaches no Python package index); put this
folder first on PYTHONPATH for the converter alone. Anything else the converter asks of it fails loudly.
"""
import json
from pathlib import Path


class _Config:
    def __init__(self, d):
        self._d = d

    def to_dict(self):
        return dict(self._d)


class AutoConfig:
    @staticmethod
    def from_pretrained(path, **_):
        with open(Path(path) / "config.json", encoding="utf-8") as f:
            return _Config(json.load(f))


class _Tokenizer:
    is_fast = True

    def __init__(self, path):
        with open(Path(path) / "tokenizer.json", encoding="utf-8") as f:
            tj = json.load(f)
        cfg = {}
        if (Path(path) / "tokenizer_config.json").is_file():
            with open(Path(path) / "tokenizer_config.json", encoding="utf-8") as f:
                cfg = json.load(f)
        if tj["model"]["type"] != "BPE":
            raise NotImplementedError("stand-in tokenizer: only a BPE tokenizer.json is listed")
        self.vocab = dict(tj["model"]["vocab"])
        self.vocab_size = len(self.vocab)  # the base vocabulary, without added tokens (as HF's fast tokenizers)
        self._added = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
        names = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
        special = []
        for k in names:
            v = cfg.get(k)
            if isinstance(v, dict):
                v = v.get("content")
            if isinstance(v, str) and v not in special:
                special.append(v)
        self.all_special_tokens = special
        full = self.get_vocab()
        self.all_special_ids = [full[t] for t in special]

    def get_vocab(self):
        v = dict(self.vocab)
        v.update(self._added)
        return v

    def get_added_vocab(self):
        return dict(self._added)


class AutoTokenizer:
    @staticmethod
    def from_pretrained(path, **_):
        return _Tokenizer(path)
