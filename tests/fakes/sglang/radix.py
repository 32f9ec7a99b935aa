"""A radix cache over token pages with LRU eviction under a KV cap, reporting cached_tokens as SGLang does.

SGLang matches at most input_len - 1 tokens (one token must be computed to get logits) and, with page_size > 1,
whole pages only (srt/mem_cache/radix_cache.py:281). Finished requests insert prompt + output. When the pool
is over capacity, least-recently used leaves that no running request holds are evicted first."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Node:
    parent: _Node | None
    key: tuple[int, ...]
    children: dict[tuple[int, ...], _Node] = field(default_factory=dict)
    last_used: int = 0
    locks: int = 0


class RadixCache:
    def __init__(self, capacity_tokens: int, page_size: int = 1) -> None:
        self.capacity, self.page = capacity_tokens, page_size
        self.root = _Node(None, ())
        self.size = 0
        self.evicted = 0
        self._clock = itertools.count(1)

    def _pages(self, ids: list[int]) -> list[tuple[int, ...]]:
        whole = len(ids) - len(ids) % self.page
        return [tuple(ids[i : i + self.page]) for i in range(0, whole, self.page)]

    def match(self, ids: list[int]) -> tuple[int, list[_Node]]:
        """Cached prefix length of a new request's prompt, and the nodes it holds while running."""
        node, path, now = self.root, [], next(self._clock)
        for key in self._pages(ids[: max(0, len(ids) - 1)]):
            child = node.children.get(key)
            if child is None:
                break
            child.last_used, child.locks = now, child.locks + 1
            path.append(child)
            node = child
        return len(path) * self.page, path

    def release(self, path: list[_Node]) -> None:
        for node in path:
            node.locks -= 1

    def insert(self, ids: list[int]) -> None:
        node, now = self.root, next(self._clock)
        for key in self._pages(ids):
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Node(node, key)
                self.size += self.page
            child.last_used = now
            node = child
        self._evict()

    def _evict(self) -> None:
        """Oldest unlocked leaf first; a parent left childless joins the heap (as SGLang's evict does)."""
        if self.size <= self.capacity:
            return
        heap = [(n.last_used, id(n), n) for n in self._walk() if not n.children and not n.locks]
        heapq.heapify(heap)
        while self.size > self.capacity and heap:
            _, _, victim = heapq.heappop(heap)
            parent = victim.parent
            del parent.children[victim.key]
            self.size -= self.page
            self.evicted += self.page
            if parent is not self.root and not parent.children and not parent.locks:
                heapq.heappush(heap, (parent.last_used, id(parent), parent))

    def _walk(self):
        stack = list(self.root.children.values())
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())
