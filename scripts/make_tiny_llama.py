"""Write a tiny random-weight Llama with a word-level tokenizer for vLLM.

Runs inside the vLLM virtualenv (it needs torch, transformers, tokenizers):

    python make_tiny_llama.py DIR

Hidden size 128 with 4 heads gives a head size of 32, the smallest vLLM's CPU
attention accepts. 4,096 positions let a generation run for seconds even at the
tiny model's speed, long enough for a deadline or a cancel to cut it. The
weights are seeded, so the model is the same on every machine. Word-level
output is plain ASCII words.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

POSITIONS = 4096
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]
WORDS = """
the a an and or but if then so of to in on at by for with from up down over
under is are was were be been being have has had do does did say says said
go goes went make made know knew think thought see saw come came want look
use find give tell work call try ask need feel become leave put mean keep let
begin seem help talk turn start show hear play run move like live believe
hello world hi there yes no maybe please thanks good bad new old big small
time year people way day man woman child thing life hand part place case week
system program question number night point home water room mother area money
user assistant system one two three four five six seven eight nine ten
. , : ; ! ? ' " ( ) -
""".split()
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ message['role'] }} : {{ message['content'] }} \n"
    "{% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"
)


def main(target: Path) -> None:
    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=POSITIONS,
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=POSITIONS,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    fast.save_pretrained(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
