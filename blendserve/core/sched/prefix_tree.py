"""Resource-aware radix tree over token-id sequences (BlendServe paper §5.1). Pure, no I/O.

Every node keeps aggregates over its subtree so that any subtree's density is a ratio of sums:
  n      requests below (a request sits on the node where its prompt ends)
  tok    prompt tokens of all edges below, each edge once: shared prefixes are computed once
  d_sum  estimated output tokens of the requests below
  mem    sum of mem(r) (KV bytes read while decoding, as time)
  comp   = (tok + d_sum) * 2P/FLOPS              (shared-discounted compute)
Output-length estimates (d_est, and mem with E[d^2]) come from estimates.OutputLengths: known length, the
request's batch job, its subtree, then max_tokens.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence

from blendserve.core.sched.estimates import OutputLengths, reestimate
from blendserve.core.sched.perf_model import PerfModel
from blendserve.core.sched.radix_match import edge_of as _edge_of
from blendserve.core.sched.radix_match import match_len as _match_len


class TreeRequest:
    """A request as the scheduler sees it. `key` is the caller's id; `payload` rides along untouched; `group` is
    its batch job (lines of one job are alike: estimates learn per job); `known` an output length known upfront."""

    __slots__ = ("key", "tokens", "max_tokens", "d_est", "mem", "node", "payload", "footprint", "group", "known")

    def __init__(
        self,
        key: object,
        tokens: Sequence[int],
        max_tokens: int,
        payload: object = None,
        group: object = None,
        known: int | None = None,
    ) -> None:
        self.key = key
        self.group = group
        self.known = known
        self.tokens = tokens if isinstance(tokens, array) else array("i", tokens)
        self.max_tokens = max(1, int(max_tokens))
        self.d_est = float(self.max_tokens)
        self.mem = 0.0
        self.node: Node | None = None
        self.payload = payload
        self.footprint = 0.0  # KV tokens the scanner charged its side when it was taken

    @property
    def prompt_len(self) -> int:
        return len(self.tokens)


class Node:
    __slots__ = ("key", "src", "off", "children", "parent", "requests", "n", "tok", "d_sum", "mem", "obs_n", "obs_sum")

    def __init__(self, key: array | None, parent: Node | None, src: array | None = None, off: int = 0) -> None:
        # A new leaf's edge is the tail of its request's token array: kept as (src, off) and copied only if the
        # edge is ever compared or split (most unique suffixes never are). Copying every tail cost ~4 us per
        # insert at 1M requests (fresh memory), about a fifth of the build.
        self.key = key
        self.src = src
        self.off = off
        self.children: dict[int, Node] = {}
        self.parent = parent
        self.requests: list[TreeRequest] = []
        self.n = 0
        self.tok = 0
        self.d_sum = 0.0
        self.mem = 0.0
        self.obs_n = 0
        self.obs_sum = 0.0

    def edge(self) -> array:
        if self.key is None:
            self.key = self.src[self.off :]  # type: ignore[index]
            self.src = None
        return self.key

    def edge_len(self) -> int:
        return len(self.key) if self.key is not None else len(self.src) - self.off  # type: ignore[arg-type]

    def first(self) -> int:
        return self.key[0] if self.key is not None else self.src[self.off]  # type: ignore[index]

    def depth_tokens(self) -> int:
        total, node = 0, self  # type: int, Node | None
        while node is not None:
            total += node.edge_len()
            node = node.parent
        return total


class PrefixTree:
    def __init__(self, perf: PerfModel) -> None:
        self.perf = perf
        # the perf model's per-token constants, read once: rho() and _estimate() run millions of times
        self.comp_per_token = perf.comp_per_token
        self.mem_per_token = perf.mem_per_token_read
        self.lengths = OutputLengths(self.mem_per_token)
        self.root = Node(array("i"), None)
        self.prompt_tokens = 0  # sum of prompt lengths of the requests in the tree
        # Bumped on insert only: a scanner rebuilds its order when requests arrive; removals (dispatch,
        # cancel) need no rebuild because a removed request has node None and is skipped where it stands.
        self.inserts = 0

    def __len__(self) -> int:
        return self.root.n

    # ---- insert / remove --------------------------------------------------------------------------

    def insert(self, req: TreeRequest) -> None:
        if req.node is not None:
            raise ValueError(f"request {req.key!r} is already in the tree")
        tokens = req.tokens
        end = len(tokens)
        node, pos, added = self.root, 0, 0
        while pos < end:
            first = tokens[pos]
            child = node.children.get(first)
            if child is None:
                leaf = Node(None, node, tokens, pos)
                node.children[first] = leaf
                node, added = leaf, end - pos
                break
            key = child.key
            if key is not None and len(key) <= end - pos and key == tokens[pos : pos + len(key)]:
                node, pos = child, pos + len(key)  # a shared edge matched whole: the common case
                continue
            edge, off, width = _edge_of(child)
            common = _match_len(edge, off, width, tokens, pos)
            if common < width:
                child = self._split(child, common)
            node, pos = child, pos + common
        self.lengths.estimate(req, node, self.root)
        node.requests.append(req)
        req.node = node
        d, mem = req.d_est, req.mem
        probe: Node | None = node
        while probe is not None:  # aggregates up the path, inlined: this is the 1M-request hot loop
            probe.n += 1
            probe.tok += added
            probe.d_sum += d
            probe.mem += mem
            probe = probe.parent
        self.prompt_tokens += end
        self.inserts += 1

    def _split(self, child: Node, at: int) -> Node:
        """child(key=K) -> mid(key=K[:at]) -> child(key=K[at:]); mid carries child's aggregates."""
        parent = child.parent
        assert parent is not None
        if child.key is None:  # a lazy leaf stays lazy: only the short shared head is copied
            mid = Node(child.src[child.off : child.off + at], parent)  # type: ignore[index]
            child.off += at
        else:
            mid = Node(child.key[:at], parent)
            child.key = child.key[at:]
        parent.children[mid.edge()[0]] = mid
        child.parent = mid
        mid.children[child.first()] = child
        mid.n, mid.tok, mid.d_sum, mid.mem = child.n, child.tok, child.d_sum, child.mem
        mid.obs_n, mid.obs_sum = child.obs_n, child.obs_sum
        child.tok -= at
        return mid

    def remove(self, req: TreeRequest) -> None:
        node = req.node
        if node is None:
            raise ValueError(f"request {req.key!r} is not in the tree")
        node.requests.remove(req)
        req.node = None
        d, mem = req.d_est, req.mem
        probe: Node | None = node
        while probe is not None:  # aggregates up the path, less this line's (inlined)
            probe.n -= 1
            probe.d_sum -= d
            probe.mem -= mem
            probe = probe.parent
        self.prompt_tokens -= len(req.tokens)
        self._prune(node)

    def _prune(self, node: Node) -> None:
        """Drop empty leaves and merge a request-less node into its only child (path compression)."""
        while node is not self.root and node.n == 0:
            parent = node.parent
            assert parent is not None
            del parent.children[node.first()]
            width = node.edge_len()
            probe: Node | None = parent
            while probe is not None:  # the leaf's edge leaves every ancestor's token count
                probe.tok -= width
                probe = probe.parent
            node = parent
        if node is not self.root and not node.requests and len(node.children) == 1:
            (only,) = node.children.values()
            width = node.edge_len()
            only.tok += width
            if only.key is None:  # a lazy leaf stays lazy: its source spells its whole path, this edge included
                only.off -= width  # (most merges follow an admission: no copy of the leaf's tail, no concatenation)
            else:
                only.key = node.edge() + only.key
            only.parent = node.parent
            if node.obs_n > only.obs_n:  # the merged node's samples cover the child's subtree
                only.obs_n, only.obs_sum = node.obs_n, node.obs_sum
            assert node.parent is not None  # the root is never merged away
            node.parent.children[only.first()] = only

    # ---- output-length learning (estimates.py) ----------------------------------------------------

    def observe(self, tokens: Sequence[int], output_tokens: int, group: object = None) -> None:
        """A request with this prompt (of this job) finished, or a sample came back, with `output_tokens`. Its job
        and its subtree learn; pending requests of a job or subtree whose sample count reached a power of two
        are re-estimated (amortised O(n log n)). Works whether or not the request is still in the tree."""
        if self.lengths.observe_job(group, output_tokens):
            self.reestimate_job(group)
        for node in self.lengths.observe_subtree(self, tokens, output_tokens):
            self.reestimate(node)

    def reestimate_job(self, group: object) -> None:
        """Re-estimate the pending requests of one job (a linear scan; callers that index jobs do better)."""
        reestimate(self, (r for r in self.iter_subtree(self.root) if r.group == group))

    def locate(self, tokens: array) -> Node:
        """The deepest node whose path is a prefix of `tokens` (or the node `tokens` end inside of)."""
        node, pos, end = self.root, 0, len(tokens)
        while pos < end:
            child = node.children.get(tokens[pos])
            if child is None:
                return node
            key = child.key
            if key is not None and len(key) <= end - pos and key == tokens[pos : pos + len(key)]:
                node, pos = child, pos + len(key)  # a whole edge matched (the request's own path): one compare
                continue
            # The edge and the rest of the prompt differ within both (then `node`), or the prompt ends inside the
            # edge (then `child`): one compare of what both hold tells which, where is no matter (no match_len).
            edge, off, width = _edge_of(child)
            n = min(width, end - pos)
            if edge[off : off + n] != tokens[pos : pos + n]:
                return node
            if n < width:
                return child
            node, pos = child, pos + n
        return node

    def reestimate(self, node: Node) -> None:
        reestimate(self, self.iter_subtree(node))

    # ---- reading ----------------------------------------------------------------------------------

    def comp(self, node: Node) -> float:
        return (node.tok + node.d_sum) * self.comp_per_token

    def rho(self, node: Node) -> float:
        mem = node.mem
        return (node.tok + node.d_sum) * self.comp_per_token / mem if mem > 0 else float("inf")

    def iter_subtree(self, node: Node) -> Iterator[TreeRequest]:
        stack = [node]
        while stack:
            cur = stack.pop()
            yield from cur.requests
            stack.extend(cur.children.values())

    def sharing_saved_tokens(self) -> int:
        """Prompt tokens that need no prefill when every shared prefix is computed once."""
        return self.prompt_tokens - self.root.tok

    def check_integrity(self) -> None:
        """Recompute every aggregate from scratch and compare; check radix invariants. Raises AssertionError."""
        self._check(self.root)

    def _check(self, node: Node) -> tuple[int, int, float, float]:
        n, tok, d, mem = len(node.requests), node.edge_len(), 0.0, 0.0
        for req in node.requests:
            assert req.node is node, "request points at another node"
            d += req.d_est
            mem += req.mem
        for first, child in node.children.items():
            assert child.parent is node, "child's parent link is wrong"
            assert child.edge_len() > 0 and child.first() == first, "child keyed by a token it does not start with"
            cn, ct, cd, cm = self._check(child)
            n, tok, d, mem = n + cn, tok + ct, d + cd, mem + cm
        if node is not self.root:
            assert n > 0, "empty node left in the tree"
            assert node.requests or len(node.children) != 1, "uncompressed chain node"
        assert node.n == n and node.tok == tok, f"count/token aggregate drift at node ({node.n},{node.tok})"
        assert abs(node.d_sum - d) <= 1e-6 * max(1.0, d), "d_sum drift"
        assert abs(node.mem - mem) <= 1e-6 * mem + 1e-12, "mem drift"  # float sums: relative + tiny slack
        return n, tok, d, mem
