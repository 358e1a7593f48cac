"""The embedded default model: Llama architecture and chat format at toy width, trained here in seconds.

It has Llama-3.2-1B's depth (16 decoder layers), grouped-query attention, tied embeddings and Llama 3's
special tokens and chat template, so every stage exercises the code paths a real Llama takes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from prunetune.chat import DEFAULT_CHAT_DATE
from prunetune.data import article_content, article_texts
from prunetune.params import TinyParams, as_section
from prunetune.warmup import answer_loss, instruction_batch, tokenize_answers, warmup_chats

BOS, EOT, EOS, PAD = "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"
SPECIAL_TOKENS = [BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", EOT, PAD]
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
# Llama 3.1/3.2's own template without its tool-calling branches: the system header carries a knowledge cut-off
# and "Today Date", taken from the clock (strftime_now) unless the caller passes date_string (prunetune.chat does).
LLAMA3_DATED_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}"
    "{%- else %}{%- set date_string = '26 Jul 2024' %}{%- endif %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
CHAT_TEMPLATES = {"tiny": CHAT_TEMPLATE, "llama3-dated": LLAMA3_DATED_TEMPLATE}
# Llama 3.2's RoPE (model.tiny.rope: llama3): theta 500000 scaled for a 131,072-token context.
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
LLAMA3_CONTEXT = 131072
RESERVED_TOKEN = "<|reserved_special_token_{}|>"


# Llama 3's pre-tokenizer split. Unlike GPT-2's it keeps a run of newlines whole, so "\n\n" (which ends every
# chat header) can become one token, as it is in Llama 3; GPT-2's split cuts it in two before a word.
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_tokenizer(
    texts: list[str],
    vocab_size: int,
    chat_template: str = CHAT_TEMPLATE,
    exact_vocab: bool = False,
    model_max_length: int = 2048,
) -> PreTrainedTokenizerFast:
    """Byte-level BPE (as Llama 3) with Llama 3's special tokens; the BOS is added as Llama 3 adds it.

    BPE stops merging when the texts offer no more pairs; exact_vocab then fills the vocabulary up to vocab_size
    with reserved special tokens, as Llama 3's <|reserved_special_token_N|>, so the model gets exactly vocab_size
    embedding rows (Llama 3's 128,256 from a few hundred articles)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    if exact_vocab and tokenizer.get_vocab_size() < vocab_size:
        missing = range(vocab_size - tokenizer.get_vocab_size())
        tokenizer.add_special_tokens([AddedToken(RESERVED_TOKEN.format(i), special=True) for i in missing])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        chat_template=chat_template,
        model_max_length=model_max_length,
    )


def build_model(tokenizer: PreTrainedTokenizerFast, cfg: TinyParams | dict[str, Any]) -> LlamaForCausalLM:
    """The Llama-architecture model at model.tiny's shape, weights random (seeded); rope: llama3 gives Llama 3.2's
    scaled RoPE and 131,072-token context, else plain RoPE (theta 500000) over 2,048 positions."""
    cfg = as_section(TinyParams, cfg)
    torch.manual_seed(cfg.seed)
    rope = (
        {"rope_parameters": dict(LLAMA3_ROPE), "max_position_embeddings": LLAMA3_CONTEXT}
        if cfg.rope == "llama3"
        else {"rope_theta": 500000.0, "max_position_embeddings": 2048}
    )
    config = LlamaConfig(
        **rope,
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        initializer_range=cfg.init_std,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(EOT), tokenizer.convert_tokens_to_ids(EOS)],
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    # GPT-2's (and nanoGPT's) scaled init: the projections that write into the residual stream start at
    # init_std / sqrt(2 * layers). At the plain init every layer adds a random vector several times the embedding's
    # size, the stream grows as a random walk, and the trained deep layers stay near identity (Block Influence <= 0.04
    # on layers 2-15; removing the last one did not raise perplexity). Scaled, each layer's learned update counts.
    with torch.no_grad():
        for layer in model.model.layers:
            for projection in (layer.self_attn.o_proj, layer.mlp.down_proj):
                projection.weight.mul_(1 / math.sqrt(2 * cfg.layers))
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    return model


def token_stream(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> torch.Tensor:
    """All texts as one token sequence, each document opened by BOS and closed by end-of-text."""
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text)["input_ids"] + [eos_id]
    return torch.tensor(ids, dtype=torch.long)


def random_windows(stream: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    seq_len = min(seq_len, len(stream) - 1)
    starts = torch.randint(0, len(stream) - seq_len, (batch_size,), generator=generator)
    return torch.stack([stream[s : s + seq_len] for s in starts.tolist()])


@torch.no_grad()
def stream_perplexity(model: LlamaForCausalLM, stream: torch.Tensor, seq_len: int) -> float:
    """Token-weighted perplexity over consecutive windows of the stream."""
    model.eval()
    total_loss, total_tokens = 0.0, 0
    for start in range(0, len(stream) - 1, seq_len):
        window = stream[start : start + seq_len + 1].unsqueeze(0)
        if window.shape[1] < 2:
            break
        loss = model(input_ids=window, labels=window).loss
        total_loss += loss.item() * (window.shape[1] - 1)
        total_tokens += window.shape[1] - 1
    return math.exp(total_loss / total_tokens)


def is_instruction_step(step: int, fraction: float) -> bool:
    """Spreads a fraction of the steps evenly over the run (0.5: every second step)."""
    return math.floor((step + 1) * fraction) > math.floor(step * fraction)


def pretrain(
    model: LlamaForCausalLM,
    stream: torch.Tensor,
    cfg: TinyParams | dict[str, Any],
    show_progress: bool = True,
    instructions: list[tuple[list, list]] | None = None,
    pad_id: int = 0,
) -> list[float]:
    """nanoGPT-style next-token training on random windows, with model.tiny.instruction_warmup of the steps on
    instruction chats (answer tokens only) when given; returns the loss of every step."""
    cfg = as_section(TinyParams, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    fraction = cfg.instruction_warmup if instructions else 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.1, betas=(0.9, 0.95))
    steps = cfg.pretrain_steps
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1))),
    )
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="pre-training tiny model", disable=not show_progress):
        if is_instruction_step(len(losses), fraction):
            loss = answer_loss(model, instruction_batch(instructions, cfg.batch_size, pad_id, generator))
        else:
            batch = random_windows(stream, cfg.batch_size, cfg.seq_len, generator)
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def pretraining_inputs(
    tokenizer: PreTrainedTokenizerFast, train_examples: list[dict[str, Any]], cfg: TinyParams, date_string: str
) -> tuple[torch.Tensor, list[tuple[list, list]], int]:
    """What pretrain reads: the train articles as one token stream, the warm-up chats tokenized (answer tokens
    labelled), and how many chats were cut to model.tiny.instruction_seq_len."""
    stream = token_stream(tokenizer, article_texts(train_examples))
    contents = list({e["article_id"]: article_content(e) for e in train_examples}.values())
    instructions, cut = tokenize_answers(tokenizer, warmup_chats(contents), cfg.instruction_seq_len, date_string)
    return stream, instructions, cut


def build_tiny_base(
    train_examples: list[dict[str, Any]], cfg: TinyParams | dict[str, Any], date_string: str = DEFAULT_CHAT_DATE
) -> tuple[Any, Any, dict[str, Any]]:
    """Tokenizer trained on the train split's chats, model pre-trained on its articles; plus a report.
    date_string: the date chat templates print (params.yaml data.chat_date) in the warm-up chats."""
    cfg = as_section(TinyParams, cfg)
    chat_texts = [message["content"] for example in train_examples for message in example["messages"]]
    tokenizer = train_tokenizer(
        chat_texts,
        cfg.vocab_size,
        CHAT_TEMPLATES[cfg.chat_template],
        cfg.exact_vocab,
        LLAMA3_CONTEXT if cfg.rope == "llama3" else 2048,
    )
    model = build_model(tokenizer, cfg)
    stream, instructions, instructions_cut = pretraining_inputs(tokenizer, train_examples, cfg, date_string)
    trained = cfg.pretrain_steps > 0  # 0: a random-init model (the real shapes' smoke); no perplexity to compare
    perplexity_before = stream_perplexity(model, stream, cfg.seq_len) if trained else None
    losses = pretrain(model, stream, cfg, instructions=instructions, pad_id=tokenizer.pad_token_id)
    steps = range(len(losses))
    instruction_losses = [losses[i] for i in steps if is_instruction_step(i, cfg.instruction_warmup)]
    text_losses = [losses[i] for i in steps if not is_instruction_step(i, cfg.instruction_warmup)]
    report = {
        "train_tokens": len(stream),
        "pretrain_steps": len(losses),
        "instruction_chats": len(instructions),
        "instruction_chats_cut": instructions_cut,  # longer than model.tiny.instruction_seq_len
        "instruction_steps": len(instruction_losses),
        "instruction_loss_last": sum(instruction_losses[-10:]) / len(instruction_losses[-10:])
        if instruction_losses
        else None,
        "text_loss_last": sum(text_losses[-10:]) / len(text_losses[-10:]) if text_losses else None,
        "pretrain_loss_first": losses[0] if losses else None,
        "pretrain_loss_last": losses[-1] if losses else None,
        "train_perplexity_before": perplexity_before,
        "train_perplexity_after": stream_perplexity(model, stream, cfg.seq_len) if trained else None,
    }
    return model, tokenizer, report
