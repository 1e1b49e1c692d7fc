"""
A kappaGPT model as Hugging Face transformers sees it: the remote code of an exported directory.

export.py copies this file into the directory it writes, as modeling_kappagpt.py, beside copies of model.py,
geometry.py and fused_maps.py whose imports it makes relative (remote code is a package). So the directory runs the
repo's own model code, not a re-implementation that could drift from it:

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(DIR, trust_remote_code=True)

KappaGPTConfig holds GPTConfig's fields (`kappagpt`); KappaGPTForCausalLM wraps model.GPT (`model`) and returns the
logits of every position; KappaGPTTokenizer is the repo's character or byte vocabulary (GPT-2 BPE models get GPT-2's
own tokenizer files instead). What the wrapper does not do: a KV cache (generate recomputes the whole sequence at every
step, as sample.py without its cache), padding (an attention mask with zeros is refused: pad on the right, where a
causal model's real positions never see it, or batch equal lengths), and sequences longer than block_size when
positions are learned (n_positions says how long).
"""
import json
import os

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel, PreTrainedTokenizer
from transformers.modeling_outputs import CausalLMOutput

from model import GPT, GPTConfig
# model.py imports these two as modules; transformers copies a remote module's dependencies only where it finds a
# `from .name import ...` line, so the wrapper names one function of each
from fused_maps import prev_token_enter  # noqa: F401
from geometry import expmap0  # noqa: F401


class KappaGPTConfig(PretrainedConfig):
    """GPTConfig's fields under `kappagpt`, and what transformers and lm-evaluation-harness read (n_positions: the
    longest sequence; vocab_size; tie_word_embeddings)."""

    model_type = "kappagpt"

    def __init__(self, kappagpt=None, **kwargs):
        self.kappagpt = dict(kappagpt or {})
        kwargs.setdefault("vocab_size", self.kappagpt.get("vocab_size", 50304))
        kwargs.setdefault("n_positions", self.kappagpt.get("block_size", 1024))
        kwargs.setdefault("tie_word_embeddings", self.kappagpt.get("tie_embeddings", True))
        kwargs.setdefault("use_cache", False)
        super().__init__(**kwargs)


class KappaGPTForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = KappaGPTConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"

    def __init__(self, config):
        super().__init__(config)
        self.model = GPT(GPTConfig(**config.kappagpt))
        self.post_init()

    def _init_weights(self, module):
        """GPT initialises itself, and from_pretrained loads every tensor: nothing for transformers to do."""

    def get_input_embeddings(self):
        return self.model.transformer.wte

    def get_output_embeddings(self):
        return self.model.lm_head

    def forward(self, input_ids, labels=None, attention_mask=None, **kwargs):
        """Logits [B, T, V] at every position; with labels (input_ids' alignment, -100 ignored), the mean next-token
        loss, as transformers' causal LMs compute it."""
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("kappaGPT's export does not support padding: pad on the right, or pass equal lengths")
        # targets make GPT return every position's logits (without, only the last: sampling's need); its own loss on
        # these dummy targets is dropped
        logits, _ = self.model(input_ids, input_ids)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        """No cache: every step sees the whole sequence."""
        return {"input_ids": input_ids}


class KappaGPTTokenizer(PreTrainedTokenizer):
    """The repo's character or byte vocabulary (meta.pkl's itos, saved as kappagpt_vocab.json): a token is one
    character (Shakespeare-char) or one UTF-8 byte (pycode, enwik8), exactly as the prepare scripts encode."""

    vocab_files_names = {"vocab_file": "kappagpt_vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file, **kwargs):
        with open(vocab_file, encoding="utf-8") as f:
            vocab = json.load(f)
        self.encoding, self.itos = vocab.get("encoding", "chars"), vocab["itos"]
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        super().__init__(**kwargs)

    @property
    def vocab_size(self):
        return len(self.itos)

    def get_vocab(self):
        return dict(self.stoi)

    def _tokenize(self, text, **kwargs):
        # bytes: each UTF-8 byte is the token whose itos entry is its latin-1 character
        return list(text.encode("utf-8").decode("latin-1")) if self.encoding == "bytes" else list(text)

    def _convert_token_to_id(self, token):
        if token not in self.stoi:
            raise ValueError(f"character {token!r} is not in this model's vocabulary")
        return self.stoi[token]

    def _convert_id_to_token(self, index):
        return self.itos[index]

    def convert_tokens_to_string(self, tokens):
        text = "".join(tokens)
        return text.encode("latin-1").decode("utf-8", errors="replace") if self.encoding == "bytes" else text

    def save_vocabulary(self, save_directory, filename_prefix=None):
        path = os.path.join(save_directory, (filename_prefix or "") + "kappagpt_vocab.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"encoding": self.encoding, "itos": self.itos}, f)
        return (path,)


def tensors(model):
    """The wrapper's state dict of a model.GPT, as safetensors stores it: float32 on the CPU, every tensor its own
    copy (safetensors refuses shared memory; a tied head is loaded into the one shared parameter twice)."""
    return {f"model.{k}": v.detach().to("cpu", torch.float32).clone().contiguous()
            for k, v in model.state_dict().items()}
