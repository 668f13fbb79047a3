"""Generation for evaluation and ``predict``: ``model.generate`` with the spec's decoding
parameters, and contrastive search, which transformers 5 no longer ships (it loads it from the
hub with remote code, which offline nodes cannot do)."""

from __future__ import annotations

import torch

from workflow.spec import GenerateSpec

_TRIES: dict = {}


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], gen: GenerateSpec, max_source_length: int) -> list[list[str]]:
    """``gen.n_samples`` outputs per prompt."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                       max_length=max_source_length).to(model.device)
    if gen.penalty_alpha is not None:
        out = contrastive_search(model, inputs["input_ids"], inputs["attention_mask"], gen.top_k,
                                 gen.penalty_alpha, gen.max_new_tokens)
    elif gen.allowed_outputs is not None:
        kwargs = {**gen.generation_kwargs(), "num_beams": max(gen.num_beams, gen.n_samples)}
        key = (id(tokenizer), repr(gen.allowed_outputs))
        if key not in _TRIES:  # built once per tokenizer and label set, not per batch
            _TRIES[key] = allowed_tokens(tokenizer, gen.allowed_outputs)
        out = model.generate(**inputs, **kwargs, prefix_allowed_tokens_fn=_TRIES[key])
    else:
        out = model.generate(**inputs, **gen.generation_kwargs())
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    n = gen.n_samples
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def allowed_tokens(tokenizer, allowed: str | list[str]):
    """``prefix_allowed_tokens_fn`` over a prefix trie of the allowed strings' token ids: each step
    may only continue one of them, and a complete one may only end. No output falls outside."""
    from workflow.data import load_labels

    trie: dict[tuple, set] = {}
    for text in load_labels(allowed):
        ids = tokenizer(text_target=text).input_ids  # ends with </s>
        for i, token in enumerate(ids):
            trie.setdefault(tuple(ids[:i]), set()).add(token)
    allowed_next = {prefix: sorted(tokens) for prefix, tokens in trie.items()}
    end = [tokenizer.eos_token_id]

    def next_tokens(batch_id: int, so_far: torch.Tensor) -> list[int]:
        return allowed_next.get(tuple(so_far[1:].tolist()), end)  # so_far starts with the decoder start token

    return next_tokens


@torch.no_grad()
def contrastive_search(model, input_ids, attention_mask, top_k: int, alpha: float, max_new_tokens: int):
    """Su et al. 2022 for encoder-decoder models: at each step, of the ``top_k`` most likely tokens
    take the one maximising (1 - alpha) * p(token) - alpha * (its hidden state's largest cosine
    similarity to the hidden states of the tokens so far). Without a cache: for evaluation sizes."""
    config = model.config
    batch = input_ids.shape[0]
    encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    wide = encoded.repeat_interleave(top_k, 0), attention_mask.repeat_interleave(top_k, 0)
    tokens = torch.full((batch, 1), config.decoder_start_token_id, dtype=torch.long, device=input_ids.device)
    done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    rows = torch.arange(batch, device=input_ids.device)
    for _ in range(max_new_tokens):
        now = model(encoder_outputs=(encoded,), attention_mask=attention_mask, decoder_input_ids=tokens,
                    output_hidden_states=True)
        probs, candidates = now.logits[:, -1].float().softmax(-1).topk(top_k)            # (batch, k)
        context = now.decoder_hidden_states[-1].float()                                  # (batch, t, hidden)
        grown = torch.cat([tokens.repeat_interleave(top_k, 0), candidates.reshape(-1, 1)], dim=1)
        ahead = model(encoder_outputs=(wide[0],), attention_mask=wide[1], decoder_input_ids=grown,
                      output_hidden_states=True).decoder_hidden_states[-1][:, -1].float()  # (batch*k, hidden)
        similarity = torch.nn.functional.cosine_similarity(
            ahead.unsqueeze(1), context.repeat_interleave(top_k, 0), dim=-1).max(dim=1).values
        score = (1 - alpha) * probs - alpha * similarity.view(batch, top_k)
        chosen = candidates[rows, score.argmax(dim=-1)]
        chosen = torch.where(done, torch.full_like(chosen, config.pad_token_id), chosen)
        tokens = torch.cat([tokens, chosen.unsqueeze(1)], dim=1)
        done |= chosen == config.eos_token_id
        if done.all():
            break
    return tokens


@torch.no_grad()
def sequence_log_probs(model, tokenizer, prompts: list[str], outputs: list[str], max_source_length: int) -> list[float]:
    """log p(output | prompt) under the model, teacher-forced: the score of each returned sequence,
    the same for every decoding method."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                       max_length=max_source_length).to(model.device)
    labels = tokenizer(text_target=outputs, return_tensors="pt", padding=True).input_ids.to(model.device)
    labels[labels == tokenizer.pad_token_id] = -100
    logits = model(**inputs, labels=labels).logits.float()
    picked = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (labels != -100)).sum(-1).tolist()
