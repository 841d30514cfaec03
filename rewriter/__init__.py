"""rewriter: split pte_offset_map_nolock() callers into read-only and may-write variants."""

__version__ = "0.1.0"
