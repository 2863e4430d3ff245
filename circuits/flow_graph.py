"""Flow graphs: a feature followed forward and backward through the layers.

From a seed feature of a residual SAE, each step crosses one block. Backward, the step
from a feature g of the outgoing residual SAE takes g's best predecessor f in the incoming
residual SAE; forward, it takes the outgoing feature g most similar to f. The chain goes
on while that residual similarity is at least ``chain_threshold`` and is cut below it.
At every step g's best attention and MLP predecessors join the graph when their
similarity is at least ``module_threshold``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import Tensor

from activations.errors import ToolkitError
from circuits.flow import SOURCES, Dictionary, FlowLayer


@dataclass(frozen=True)
class Node:
    hook: str
    feature: int
    x: float
    """Position along the model: residual boundary b at b, block L's attn at L+1/3, MLP at L+2/3."""

    @property
    def id(self) -> str:
        return f"{self.hook}:{self.feature}"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str
    """``resid``, ``attn`` or ``mlp``: which predecessor dictionary the source is in."""
    similarity: float


@dataclass
class FlowGraph:
    seed: Node
    chain_threshold: float
    module_threshold: float
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def add(self, source: Node, target: Node, kind: str, similarity: float) -> None:
        self.nodes.setdefault(source.id, source)
        self.nodes.setdefault(target.id, target)
        self.edges.append(Edge(source.id, target.id, kind, similarity))

    def residual_chain(self) -> list[Node]:
        """The residual-stream nodes, in layer order (what multi-layer steering uses)."""
        resid = [n for n in self.nodes.values() if float(n.x).is_integer()]
        return sorted(resid, key=lambda n: n.x)

    def to_json(self) -> dict:
        return {"seed": self.seed.id, "chain_threshold": self.chain_threshold,
                "module_threshold": self.module_threshold,
                "nodes": [{"id": n.id, **asdict(n)} for n in self.nodes.values()],
                "edges": [asdict(e) for e in self.edges]}


def _node(d: Dictionary, feature: int, layer: int) -> Node:
    x = {"attn": layer + 1 / 3, "mlp": layer + 2 / 3}.get(d.role, d.boundary)
    return Node(d.hook, int(feature), float(x))


def _best(direction: Tensor, d: Dictionary) -> tuple[int, float]:
    """The feature of ``d`` whose unit direction is most similar to direction [d_in]."""
    sims = d.directions @ direction
    i = int(sims.argmax())
    return i, float(sims[i])


def _step(graph: FlowGraph, block: FlowLayer, g: int, f: int, resid_sim: float) -> None:
    """Join f (incoming residual) -> g (outgoing residual) and g's module predecessors."""
    target = _node(block.resid_out, g, block.layer)
    graph.add(_node(block.resid_in, f, block.layer), target, "resid", resid_sim)
    direction = block.resid_out.directions[g]
    for kind, d in zip(SOURCES[1:], (block.attn, block.mlp)):
        i, sim = _best(direction, d)
        if sim >= graph.module_threshold:
            graph.add(_node(d, i, block.layer), target, kind, sim)


def _contiguous(stack: list[FlowLayer], start: int | None, step: int) -> list[FlowLayer]:
    """Blocks from ``stack[start]`` walking by ``step`` while the layers stay consecutive."""
    if start is None:
        return []
    blocks = [stack[start]]
    while 0 <= start + step < len(stack) and stack[start + step].layer == blocks[-1].layer + step:
        start += step
        blocks.append(stack[start])
    return blocks


def flow_graph(stack: list[FlowLayer], hook: str, feature: int, chain_threshold: float = 0.5,
               module_threshold: float = 0.35) -> FlowGraph:
    """The flow graph through ``stack`` (consecutive blocks) of residual feature ``hook:feature``."""
    starts = {b.resid_in.hook: i for i, b in enumerate(stack)}
    ends = {b.resid_out.hook: i for i, b in enumerate(stack)}
    if hook not in starts and hook not in ends:
        raise ToolkitError(f"no residual SAE on {hook} among the flow SAEs; seed hooks: "
                           f"{', '.join(sorted(set(starts) | set(ends)))}")
    d_sae = (stack[starts[hook]].resid_in if hook in starts else stack[ends[hook]].resid_out).d_sae
    if not 0 <= feature < d_sae:
        raise ToolkitError(f"feature {feature} is out of range for {hook} (d_sae {d_sae})")
    seed_dict = stack[ends[hook]].resid_out if hook in ends else stack[starts[hook]].resid_in
    graph = FlowGraph(_node(seed_dict, feature, 0), chain_threshold, module_threshold)
    graph.nodes[graph.seed.id] = graph.seed
    g = feature
    for block in _contiguous(stack, ends.get(hook), -1):
        f, sim = _best(block.resid_out.directions[g], block.resid_in)
        if sim < chain_threshold:
            break
        _step(graph, block, g, f, sim)
        g = f
    f = feature
    for block in _contiguous(stack, starts.get(hook), +1):
        g, sim = _best(block.resid_in.directions[f], block.resid_out)
        if sim < chain_threshold:
            break
        _step(graph, block, g, f, sim)
        f = g
    return graph


def chain_directions(graph: FlowGraph, stack: list[FlowLayer]) -> list[tuple[str, Tensor]]:
    """(hook, unit decoder direction [d_in]) of each residual-chain node, in layer order, for
    ``circuits.interventions.chain_steering``."""
    dicts = {d.hook: d for block in stack for d in (block.resid_in, block.resid_out)}
    return [(n.hook, dicts[n.hook].directions[n.feature]) for n in graph.residual_chain()]
