"""mechcell: mechanistic reasoning about virtual cells.

Agents propose mechanistic action graphs (drug → target → activity → pathway/TF → expression change),
verifiers try to falsify every claim against a knowledge base and the expression data, and what survives
is stored as a trace.
"""

__version__ = "0.1.0"
