"""What is known: a KnowledgeBase store (DuckDB + networkx views), importers for real resources, entity
resolution and retrieval of the knowledge relevant to one perturbation condition.

    from mechcell.knowledge import load_kb, Retriever
    kb = load_kb()                       # the starter KB shipped in the package
    kb = load_kb("../shared/kb")         # built from real tables on first use, cached by content hash
    kb.drug_targets("Trametinib")        # [Relation(Trametinib inhibits MAP2K1 ...), ...]
    Retriever(kb).context(condition, signature)
"""

from mechcell.knowledge.models import (
    ActivityScore,
    BuildSummary,
    Coverage,
    Driver,
    PathHit,
    Relation,
    Resolution,
    RetrievedContext,
    SignedPath,
    SourceInfo,
    TargetHit,
)
from mechcell.knowledge.retrieve import Retriever
from mechcell.knowledge.store import KnowledgeBase, load_kb, starter_kb

__all__ = [
    "ActivityScore",
    "BuildSummary",
    "Coverage",
    "Driver",
    "KnowledgeBase",
    "PathHit",
    "Relation",
    "Resolution",
    "RetrievedContext",
    "Retriever",
    "SignedPath",
    "SourceInfo",
    "TargetHit",
    "load_kb",
    "starter_kb",
]
