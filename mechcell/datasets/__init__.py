"""The observations: conditions, signatures, readers, pseudobulk + DE, synthetic worlds, the trace store."""

from mechcell.datasets.schemas import Condition, Signature

__all__ = ["Condition", "Signature"]
