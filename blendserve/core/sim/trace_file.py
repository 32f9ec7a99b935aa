"""Trace files: replay a workload in the simulator (`blendserve bench schedule --trace-file F.jsonl`).

One request a line, in submission order:
  {"batch": "<job>", "arrival_s": 0.0, "segments": [["<id>", <tokens>], ...], "output_len": <int>, "max_tokens": <int>}
A prompt is its segments in order; two requests share exactly their common leading segments with equal ids (so a
system prompt, a few-shot prefix or a document is one segment id used by many lines). `arrival_s` is optional
(default 0), `max_tokens` too (default output_len). `"prompt_tokens": [ints]` may stand in place of `segments`:
the prompts are then laid in a radix tree and each edge becomes a segment.
"""

from __future__ import annotations

import json
from pathlib import Path

from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.prefix_tree import PrefixTree, TreeRequest
from blendserve.core.sim.request import SimRequest


class TraceError(ValueError):
    """A trace file line is malformed; the message names the line."""


def _positive_int(value: object, what: str, line: int, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TraceError(f"line {line}: {what} must be an integer >= {minimum}")
    return value


def load_trace(path: str | Path) -> list[SimRequest]:
    """Parse a trace file. Raises TraceError (a ValueError) naming the first bad line."""
    seg_ids: dict[str, int] = {}
    rows: list[tuple[str, float, object, int, int]] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise TraceError(f"line {line_no}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise TraceError(f"line {line_no}: expected a JSON object")
            rows.append(_parse_row(obj, line_no, seg_ids))
    if not rows:
        raise TraceError("the trace file has no requests")
    token_rows = [i for i, row in enumerate(rows) if isinstance(row[2], list) and row[2] and isinstance(row[2][0], int)]
    token_segments = _segments_from_tokens([rows[i][2] for i in token_rows], offset=len(seg_ids) + 1)  # type: ignore[misc]
    by_row = dict(zip(token_rows, token_segments, strict=True))
    out = []
    for i, (job, arrival, segments, output_len, max_tokens) in enumerate(rows):
        segs = by_row.get(i, segments)
        out.append(SimRequest(i, tuple(segs), output_len, max_tokens, job, arrival))  # type: ignore[arg-type]
    return out


def _parse_row(obj: dict, line: int, seg_ids: dict[str, int]) -> tuple[str, float, object, int, int]:
    job = obj.get("batch", "")
    if not isinstance(job, str):
        raise TraceError(f"line {line}: batch must be a string")
    arrival = obj.get("arrival_s", 0.0)
    if not isinstance(arrival, int | float) or isinstance(arrival, bool) or arrival < 0:
        raise TraceError(f"line {line}: arrival_s must be a number >= 0")
    output_len = _positive_int(obj.get("output_len"), "output_len", line)
    max_tokens = _positive_int(obj.get("max_tokens", output_len), "max_tokens", line)
    if "segments" in obj:
        segs = obj["segments"]
        if not isinstance(segs, list) or not segs:
            raise TraceError(f"line {line}: segments must be a non-empty list of [id, tokens]")
        parsed = []
        for seg in segs:
            if not (isinstance(seg, list) and len(seg) == 2 and isinstance(seg[0], str)):
                raise TraceError(f'line {line}: each segment is ["<id>", <tokens>]')
            parsed.append((seg_ids.setdefault(seg[0], len(seg_ids) + 1), _positive_int(seg[1], "segment tokens", line)))
        return job, float(arrival), parsed, output_len, max_tokens
    tokens = obj.get("prompt_tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, int) for t in tokens):
        raise TraceError(f"line {line}: give segments or a non-empty prompt_tokens list of integers")
    return job, float(arrival), tokens, output_len, max_tokens


def _segments_from_tokens(prompts: list[list[int]], offset: int) -> list[list[tuple[int, int]]]:
    """Each prompt as the edges of its path in a radix tree over all prompts: shared prefixes become shared
    segments, cut exactly where prompts diverge."""
    tree = PrefixTree(PerfModel.preset())
    reqs = [TreeRequest(i, p, 1) for i, p in enumerate(prompts)]
    for req in reqs:
        tree.insert(req)
    node_ids: dict[int, int] = {}
    out = []
    for req in reqs:
        path = []
        node = req.node
        while node is not None and node is not tree.root:
            path.append((node_ids.setdefault(id(node), offset + len(node_ids)), node.edge_len()))
            node = node.parent
        out.append(path[::-1])
    return out


def save_trace(requests: list[SimRequest], path: str | Path) -> None:
    """Write requests in the trace format (segment ids as strings)."""
    with open(path, "w", encoding="utf-8") as fh:
        for r in requests:
            row = {
                "batch": r.job,
                "arrival_s": r.arrival_s,
                "segments": [[str(seg_id), length] for seg_id, length in r.segments],
                "output_len": r.output_len,
                "max_tokens": r.max_tokens,
            }
            fh.write(json.dumps(row) + "\n")
