"""mechcell: mechanistic reasoning about virtual cells.

Agents propose mechanistic action graphs (drug → target → activity → pathway/TF → expression change),
verifiers try to falsify every claim against a knowledge base and the expression data, and what survives
is stored as a trace.
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import mechcell` stays light; mechcell.explain pulls in the pipeline on use
    if name == "explain":
        from mechcell.agents.pipeline import explain

        return explain
    if name == "verify":
        from mechcell.verifiers.api import verify

        return verify
    raise AttributeError(f"module 'mechcell' has no attribute {name!r}")
