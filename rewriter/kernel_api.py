"""What the kernel's page-table API does with its arguments.

This is the one place that knows which kernel helpers write a page table,
take or drop a page-table lock, or only read an entry.  The analysis never
names the callers it classifies; it only knows this API.  The lists were
completed from include/linux/pgtable.h, include/linux/mmu_notifier.h,
include/linux/mm.h and include/linux/spinlock.h of Linux 6.12.

Each table maps a function (or function-like macro) to the 0-based index of
the argument that matters: the pte pointer for writers and readers, the lock
for lock operations, the pmd pointer for table removal.
"""

from __future__ import annotations

# Change an entry of the mapped table through the pte pointer argument.
PTE_WRITERS: dict[str, int] = {
    "set_pte": 0,
    "set_pte_at": 2,
    "set_ptes": 2,
    "pte_clear": 2,
    "ptep_clear": 2,
    "pte_clear_not_present_full": 2,
    "clear_not_present_full_ptes": 2,
    "ptep_get_and_clear": 2,
    "ptep_get_and_clear_full": 2,
    "get_and_clear_full_ptes": 2,
    "clear_full_ptes": 2,
    "ptep_set_access_flags": 2,
    "ptep_set_wrprotect": 2,
    "wrprotect_ptes": 2,
    "ptep_test_and_clear_young": 2,
    "ptep_clear_young_notify": 2,
    "ptep_clear_flush_young": 2,
    "ptep_clear_flush_young_notify": 2,
    "clear_young_dirty_ptes": 2,
    "ptep_clear_flush": 2,
    "ptep_modify_prot_start": 2,
    "ptep_modify_prot_commit": 2,
    "modify_prot_commit_ptes": 2,
    "ptep_set_numa": 2,
    "ptep_test_and_clear_dirty": 2,
}

# Remove or replace the page table itself through the pmd pointer argument.
TABLE_REMOVERS: dict[str, int] = {
    "pmdp_collapse_flush": 2,
    "pmdp_huge_clear_flush": 2,
    "pmdp_huge_get_and_clear": 2,
    "pmdp_invalidate": 2,
    "pmd_clear": 0,
    "pmd_populate": 1,
    "set_pmd_at": 2,
}

# Only read an entry, or map/unmap/flush without changing an entry.
PTE_READERS: dict[str, int] = {
    "ptep_get": 0,
    "ptep_get_lockless": 0,
    "pte_unmap": 0,
    "pte_unmap_unlock": 0,
    "update_mmu_cache": 2,
    "update_mmu_cache_range": 3,
    "update_mmu_tlb": 2,
    "update_mmu_tlb_range": 2,
    "flush_tlb_fix_spurious_fault": 2,
    "arch_check_zapped_pte": 1,
}

# Take the lock passed as this argument.
LOCKERS: dict[str, int] = {
    "spin_lock": 0,
    "spin_lock_nested": 0,
    "spin_lock_irq": 0,
    "spin_lock_irqsave": 0,
    "spin_lock_bh": 0,
    "spin_trylock": 0,
}

# Drop the lock passed as this argument.
UNLOCKERS: dict[str, int] = {
    "spin_unlock": 0,
    "spin_unlock_irq": 0,
    "spin_unlock_irqrestore": 0,
    "spin_unlock_bh": 0,
    "pte_unmap_unlock": 1,
}

# Functions whose conditions compare an entry read under the lock with one
# read earlier: a write guarded by one of these cannot act on a table that
# changed under us.
ENTRY_COMPARATORS: tuple[str, ...] = ("pte_same",)

# Lock checks that neither take nor drop the lock.
LOCK_ASSERTIONS: dict[str, int] = {
    "assert_spin_locked": 0,
    "lockdep_assert_held": 0,
    "spin_is_locked": 0,
    "spin_needbreak": 0,
}


# Compiler hints and plain evaluations: the value passes through unchanged.
TRANSPARENT: frozenset[str] = frozenset({
    "likely", "unlikely", "READ_ONCE", "IS_ERR", "IS_ERR_OR_NULL", "PTR_ERR",
    "ERR_CAST", "data_race",
})


def is_debug_macro(name: str) -> bool:
    """BUG_ON(), WARN_ON_ONCE(), VM_BUG_ON() ... evaluate, never write."""
    return name.isupper() and any(w in name for w in ("BUG", "WARN"))


# Take the mm's mmap_lock for write (a call in a condition counts on the
# path where it succeeded), or assert that it is held for write.
MMAP_WRITE_TAKERS: tuple[str, ...] = (
    "mmap_write_lock", "mmap_write_lock_killable", "mmap_write_lock_nested",
    "mmap_write_trylock", "mmap_assert_write_locked",
)

# Drop the write hold of the mmap_lock.
MMAP_WRITE_DROPPERS: tuple[str, ...] = ("mmap_write_unlock", "mmap_write_downgrade")

# Make a function callable from outside the tree (modules): its callers
# there cannot be walked.
EXPORTERS: tuple[str, ...] = (
    "EXPORT_SYMBOL", "EXPORT_SYMBOL_GPL", "EXPORT_SYMBOL_NS", "EXPORT_SYMBOL_NS_GPL",
)

# Tests of an entry read earlier.  A test that is true when the entry is
# none (pte_none) or false only for a none entry (pte_present,
# is_swap_pte: both false for a none entry), whose branch leaves the
# function, proves that the entry is not none after it.
NONE_IF_TRUE: tuple[str, ...] = ("pte_none",)
NOT_NONE_IF_TRUE: tuple[str, ...] = ("pte_present", "is_swap_pte")

# Read an entry of the table (the fresh side of a pte_same() comparison).
ENTRY_READERS: tuple[str, ...] = ("ptep_get", "ptep_get_lockless")
