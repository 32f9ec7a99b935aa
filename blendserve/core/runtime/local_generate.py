"""One static batch through transformers' generate(): left padding, per-request max_new_tokens, EOS and stop
strings, optional logprobs. Runs in a worker thread."""

from __future__ import annotations

from blendserve.core.runtime.base import Choice, GenerateRequest, GenerateResult


def generate_batch(model, tokenizer, requests: list[GenerateRequest]) -> list[GenerateResult]:
    import torch

    rows = [(r, i) for r in requests for i in range(r.params.n)]
    width = max(len(r.input_ids) for r, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, (r, _) in enumerate(rows):
        ids[j, width - len(r.input_ids) :] = torch.tensor(list(r.input_ids))
        mask[j, width - len(r.input_ids) :] = 1
    p = requests[0].params
    if p.seed is not None:
        torch.manual_seed(p.seed)
    sample = p.temperature > 0
    kwargs = dict(
        do_sample=sample,
        max_new_tokens=max(r.params.max_new_tokens for r in requests),
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
        return_dict_in_generate=True,
        output_scores=p.logprobs,
    )
    if sample:
        kwargs.update(temperature=p.temperature, top_p=p.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    new = out.sequences[:, width:]
    logprobs = torch.stack(out.scores, dim=1).log_softmax(-1) if p.logprobs and out.scores else None
    choices: dict[str, list[Choice]] = {r.rid: [] for r in requests}
    for j, (r, _) in enumerate(rows):
        choices[r.rid].append(_choice(tokenizer, r, new[j], None if logprobs is None else logprobs[j]))
    return [GenerateResult(r.rid, tuple(choices[r.rid]), len(r.input_ids), 0) for r in requests]


def _choice(tokenizer, request: GenerateRequest, tokens, logprobs) -> Choice:
    limit = request.params.max_new_tokens
    kept, finish, eos_hit = [], "length", False
    for tok in tokens.tolist()[:limit]:
        if tok == tokenizer.eos_token_id:
            finish, eos_hit = "stop", True
            break
        kept.append(tok)
    text = tokenizer.decode(kept, skip_special_tokens=True)
    for stop in request.params.stop:
        cut = text.find(stop)
        if cut >= 0:
            text, finish = text[:cut], "stop"
    entries = None
    if logprobs is not None:
        entries = []
        for pos, tok in enumerate(kept):
            row = logprobs[pos]
            top = row.topk(max(1, request.params.top_logprobs)) if request.params.top_logprobs else None
            token_text = tokenizer.decode([tok])
            entries.append(
                {
                    "token": token_text,
                    "logprob": float(row[tok]),
                    "bytes": list(token_text.encode()),
                    "top_logprobs": []
                    if top is None
                    else [
                        {
                            "token": tokenizer.decode([int(t)]),
                            "logprob": float(v),
                            "bytes": list(tokenizer.decode([int(t)]).encode()),
                        }
                        for v, t in zip(top.values.tolist(), top.indices.tolist(), strict=True)
                    ],
                }
            )
    # completion_tokens counts what was generated (EOS included, as OpenAI does), not the stop-trimmed text
    return Choice(text, len(kept) + eos_hit, finish, entries)


def embed_batch(model, tokenizer, inputs: tuple[tuple[int, ...], ...]) -> tuple[tuple[float, ...], ...]:
    import torch

    width = max(len(ids) for ids in inputs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(inputs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for j, row in enumerate(inputs):
        ids[j, : len(row)] = torch.tensor(row)
        mask[j, : len(row)] = 1
    with torch.inference_mode():
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return tuple(tuple(float(x) for x in vec) for vec in pooled.tolist())
