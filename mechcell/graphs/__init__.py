"""The language: action primitives, `ActionGraph`, the four-tag text format, claims and predicted signatures.

Imports nothing else of mechcell (the bottom layer).
"""

from mechcell.graphs.claims import Claim, ClaimKind, PredictedGene, main_entity
from mechcell.graphs.model import ActionGraph, Edge, GraphProblem, node_to_text, primitive_names
from mechcell.graphs.parse import ParsedExplanation, parse_text
from mechcell.graphs.primitives import ARGUMENTS, PRIMITIVES, Direction, Node, Primitive

__all__ = [
    "ARGUMENTS",
    "PRIMITIVES",
    "ActionGraph",
    "Claim",
    "ClaimKind",
    "Direction",
    "Edge",
    "GraphProblem",
    "Node",
    "ParsedExplanation",
    "PredictedGene",
    "Primitive",
    "main_entity",
    "node_to_text",
    "parse_text",
    "primitive_names",
]
