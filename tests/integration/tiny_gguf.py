"""Write a tiny, deterministic llama-architecture GGUF for llama-server.

Two layers, embedding 64, feed-forward 128, four heads, trained context 512,
seeded random F32 weights (about 0.5 MB). The tokenizer is SentencePiece-style
(``llama``): ``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens ``<0x00>`` to
``<0xFF>`` typed as bytes, and a few dozen pieces. The output is random text,
often invalid UTF-8 that the server sends as U+FFFD, but every protocol path
of the server is real.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

N_EMBD = 64
N_FF = 128
N_HEAD = 4
N_LAYER = 2
N_CTX_TRAIN = 512
PIECES = [
    "▁",
    *"abcdefghijklmnopqrstuvwxyz",
    *(
        "▁" + word
        for word in (
            "the a and of to in is it you that hello world user assistant "
            "system say once twice count one two three yes no"
        ).split()
    ),
]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += PIECES
    types += [gguf.TokenType.NORMAL] * len(PIECES)
    # SentencePiece prefers pieces with higher scores: longer pieces win.
    scores = [0.0] * (3 + 256) + [float(len(piece)) for piece in PIECES]
    return tokens, scores, [int(kind) for kind in types]


def write(path: Path, seed: int = 0) -> Path:
    """Write the model to ``path``; the same seed gives the same bytes."""
    tokens, scores, types = vocabulary()
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("provider-agent tiny test model")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    n_vocab = len(tokens)
    writer.add_tensor("token_embd.weight", weights(n_vocab, N_EMBD))
    for layer in range(N_LAYER):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(N_EMBD, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", weights(N_EMBD, N_EMBD))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(N_EMBD, np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_up.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_down.weight", weights(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    writer.add_tensor("output.weight", weights(n_vocab, N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    import sys

    print(write(Path(sys.argv[1])))
