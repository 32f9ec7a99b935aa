from __future__ import annotations

import json

import pytest

from blendserve.core.sim.suites import MULTIBATCH
from blendserve.core.sim.trace_file import TraceError, load_trace, save_trace
from blendserve.core.sim.workloads import generate, unique_prompt_tokens


def test_round_trip_keeps_sharing_and_lengths(tmp_path):
    reqs = generate(list(MULTIBATCH[3].jobs), 300, seed=1)
    path = tmp_path / "t.jsonl"
    save_trace(reqs, path)
    back = load_trace(path)
    assert [(r.output_len, r.max_tokens, r.job, r.arrival_s, r.prompt_len) for r in back] == [
        (r.output_len, r.max_tokens, r.job, r.arrival_s, r.prompt_len) for r in reqs
    ]
    assert unique_prompt_tokens(back) == unique_prompt_tokens(reqs)


def test_prompt_tokens_become_shared_segments(tmp_path):
    lines = [
        {"batch": "a", "prompt_tokens": [1, 2, 3, 4, 5], "output_len": 3},
        {"batch": "a", "prompt_tokens": [1, 2, 3, 9], "output_len": 4, "max_tokens": 8},
        {"batch": "b", "arrival_s": 2.5, "segments": [["sys", 10], ["q1", 3]], "output_len": 2},
        {"batch": "b", "segments": [["sys", 10], ["q2", 4]], "output_len": 2},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    reqs = load_trace(path)
    assert [r.prompt_len for r in reqs] == [5, 4, 13, 14]
    assert reqs[0].segments[0] == reqs[1].segments[0] and reqs[0].segments[0][1] == 3  # [1, 2, 3] shared
    assert reqs[2].segments[0] == reqs[3].segments[0] and reqs[2].segments[1] != reqs[3].segments[1]
    assert reqs[1].max_tokens == 8 and reqs[0].max_tokens == 3 and reqs[2].arrival_s == 2.5
    assert unique_prompt_tokens(reqs) == 3 + 2 + 1 + 10 + 3 + 4


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "line 1: not JSON"),
        ("[1]", "expected a JSON object"),
        ('{"segments": [["a", 3]]}', "output_len"),
        ('{"segments": [["a", 0]], "output_len": 1}', "segment tokens"),
        ('{"segments": [[1, 3]], "output_len": 1}', "segment"),
        ('{"prompt_tokens": [], "output_len": 1}', "prompt_tokens"),
        ('{"prompt_tokens": [1], "output_len": 1, "arrival_s": -1}', "arrival_s"),
        ('{"prompt_tokens": [1], "output_len": 1, "batch": 3}', "batch"),
    ],
)
def test_bad_lines_name_the_line(tmp_path, line, message):
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n")
    with pytest.raises(TraceError):
        load_trace(path)
