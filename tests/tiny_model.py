"""A tiny random Llama with a locally trained byte-level BPE tokenizer.

``build_tiny_llama(dir)`` writes a transformers folder that vLLM (CPU) and transformers both
load in seconds: hidden 64, 2 heads (head_dim 32, which the CPU attention kernels accept),
2 layers, ~1000-token vocabulary, ChatML chat template. Weights are random but fixed by the
seed, so outputs are deterministic gibberish. Shared by the test fixtures and benchmarks.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_PARAGRAPHS = [
    "The capital of France is Paris. Paris is a large city on the river Seine, and it is "
    "known for its museums, its cafes and the tall iron tower built for a world fair.",
    "Retrieval augmented generation puts documents in front of a language model so that the "
    "answer can cite the passages it used. Every sentence of the answer should point at a "
    "numbered document, and a verifier checks that the document supports the sentence.",
    "Water boils at one hundred degrees Celsius at sea level. At higher altitudes the air "
    "pressure is lower, so water boils at a lower temperature and cooking takes longer.",
    "The quick brown fox jumps over the lazy dog. A lazy dog sleeps in the sun while the fox "
    "runs through the field, past the farm and into the forest beyond the hill.",
    "Berlin is the capital of Germany, Madrid is the capital of Spain, and Rome is the "
    "capital of Italy. Each of these cities has a long history and many old buildings.",
    "A citation tells the reader where a claim comes from. Good citations are precise: they "
    "name the passage that supports the claim and nothing more. Bad citations point at "
    "documents that say something else, or at no document at all.",
    "The moon orbits the earth about once every twenty seven days. Its light is reflected "
    "sunlight, and its phases change as the angle between the sun, earth and moon changes.",
    "Question: What is the capital of France? Answer: Paris [1]. Question: Where does water "
    "boil at a lower temperature? Answer: At high altitude [2]. Question: Who wrote the "
    "report? Answer: The document does not say.",
    "Numbers and dates matter in many answers: 1889, 2024, 42, 3.14, 100 degrees, 27 days, "
    "the year 1066 and the first of May are all facts a model may need to copy exactly.",
    "Language models predict the next token from the tokens before it. A tokenizer splits "
    "text into pieces; byte level tokenizers can encode any string, including emoji, accents "
    "like cafe and naive, and symbols such as #, %, & and @.",
]


def training_text() -> list[str]:
    """A few KB of plain English for the tokenizer (written here: no downloads)."""
    return _PARAGRAPHS * 4


def build_tiny_llama(directory: str | Path, *, seed: int = 0, vocab_size: int = 1000) -> Path:
    """Write a tiny random ``LlamaForCausalLM`` plus tokenizer into ``directory``; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(training_text(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    tok.save_pretrained(str(out))

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=2048,
        # Larger than the usual 0.02 so next-token distributions are peaked, not near uniform:
        # greedy decoding then has clear winners and does not hinge on float rounding.
        initializer_range=0.5,
        bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.save_pretrained(str(out), safe_serialization=True)
    log.info("tiny llama (vocab %d) written to %s", len(tok), out)
    return out


def build_tiny_bert(directory: str | Path, words: list[str], labels: tuple[str, str], *, seed: int = 0) -> Path:
    """A random 2-layer BertForSequenceClassification with a WordPiece vocabulary of ``words``
    (plus the special tokens) and ``labels`` as its ids 0 and 1, for judge tests."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    d = Path(directory)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(d)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    BertForSequenceClassification(cfg).save_pretrained(d)
    return d
