"""LongestFirst (longest.py) pops what the heap of (-d_est, filing number, line) it replaces pops."""

from __future__ import annotations

import heapq
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from blendserve.core.sched.longest import LongestFirst
from blendserve.core.sched.prefix_tree import TreeRequest

# pushes (an estimate from few values: many ties) and pops, interleaved
ops = st.lists(st.one_of(st.sampled_from([1.0, 2.0, 2.5, 300.0, 4096.0]), st.none()), max_size=200)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_pops_in_the_heap_order(ops):
    queue, heap, seq = LongestFirst(), [], itertools.count()
    for i, d in enumerate(ops):
        if d is not None:
            line = TreeRequest(i, [1], 1)
            queue.push(d, line)
            heapq.heappush(heap, (-d, next(seq), line))
        elif heap:
            assert queue.peek() == (-heap[0][0], heap[0][2])
            assert queue.pop() == heapq.heappop(heap)[2]
        assert len(queue) == len(heap) and bool(queue) == bool(heap)
        assert queue.top() == (-heap[0][0] if heap else 0.0)
    while heap:
        assert queue.pop() == heapq.heappop(heap)[2]
    assert not queue
