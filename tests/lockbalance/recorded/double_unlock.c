// SPDX-License-Identifier: GPL-2.0
/*
 * Recorded: fixture_decl_init_rw() from mm/fixture_basic.c as `rewriter
 * diff` of 33e2c49 converted it with a plan that sets
 *   on_recheck_fail = "pte_unmap_unlock(pte, ptl); return -EAGAIN;"
 * The tool puts its own release before the user's body, which releases
 * again: the lock is unlocked and the table unmapped twice.  The harness
 * must report UNLOCK-NOT-HELD and UNMAP-NOT-MAPPED.
 */

static int fixture_decl_init_rw(struct vm_area_struct *vma, pmd_t *pmd,
				unsigned long addr, pte_t newpte)
{
	struct mm_struct *mm = vma->vm_mm;
	spinlock_t *ptl;
	pmd_t pmdval;
	pte_t *pte =
		pte_offset_map_maywrite_nolock(mm, pmd, addr, &pmdval, &ptl);

	if (!pte)
		return -EAGAIN;
	spin_lock(ptl);
	if (unlikely(!pmd_same(pmdval, pmdp_get_lockless(pmd)))) {
		pte_unmap_unlock(pte, ptl);
		pte_unmap_unlock(pte, ptl);
		return -EAGAIN;
	}
	set_pte_at(mm, addr, pte, newpte);
	pte_unmap_unlock(pte, ptl);
	return 0;
}
