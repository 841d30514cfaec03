"""rewriter: split a kernel function's callers into read-only and may-write variants, by recipe
(the first: pte_offset_map_nolock())."""

__version__ = "0.1.0"
