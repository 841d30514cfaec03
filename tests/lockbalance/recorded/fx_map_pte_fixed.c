// SPDX-License-Identifier: GPL-2.0
/*
 * Recorded: fx_map_pte_stale_ptl.c with fx_map_pte() corrected by hand:
 * the lock is taken through *ptlp, and pvmw->ptl is set only once the
 * recheck has passed, so a failed recheck leaves pvmw->pte and pvmw->ptl
 * as a failed mapping does (both NULL).  The walk is unchanged: it still
 * takes the handed-out lock itself without a recheck, which the harness
 * reports (WRITE-UNCHECKED) -- the part a person settles in the plan.
 */

static bool fx_check_pte(struct page_vma_mapped_walk *pvmw)
{
	pte_t ptent = ptep_get(pvmw->pte);

	return pte_present(ptent) && pte_pfn(ptent) == pvmw->pfn;
}

static void fx_walk_done(struct page_vma_mapped_walk *pvmw)
{
	if (pvmw->pte)
		pte_unmap(pvmw->pte);
	if (pvmw->ptl)
		spin_unlock(pvmw->ptl);
}

static bool fx_map_pte(struct page_vma_mapped_walk *pvmw, spinlock_t **ptlp)
{
	pte_t ptent;
	pmd_t pmdval;

	pvmw->pte = pte_offset_map_maywrite_nolock(pvmw->vma->vm_mm,
						   pvmw->pmd, pvmw->address,
						   &pmdval, ptlp);
	if (!pvmw->pte)
		return false;

	ptent = ptep_get(pvmw->pte);
	if (!pte_present(ptent))
		return false;

	spin_lock(*ptlp);
	if (unlikely(!pmd_same(pmdval, pmdp_get_lockless(pvmw->pmd)))) {
		pte_unmap_unlock(pvmw->pte, *ptlp);
		pvmw->pte = NULL;
		return false;
	}
	pvmw->ptl = *ptlp;
	return true;
}

/*
 * Returns true with pvmw->pte mapped and pvmw->ptl held when an entry
 * maps pvmw->pfn; the caller may then change the entry.  Returns false
 * with nothing mapped or held when there is none up to @end.
 */
static bool fx_page_vma_mapped_walk(struct page_vma_mapped_walk *pvmw,
				    unsigned long end)
{
	spinlock_t *ptl;

	if (pvmw->pte)
		goto next_pte;
restart:
	if (pmd_none(*pvmw->pmd)) {
		fx_walk_done(pvmw);
		return false;
	}
	if (!fx_map_pte(pvmw, &ptl)) {
		if (!pvmw->pte)
			goto restart;
		goto next_pte;
	}
this_pte:
	if (fx_check_pte(pvmw))
		return true;
next_pte:
	do {
		pvmw->address += PAGE_SIZE;
		if (pvmw->address >= end) {
			fx_walk_done(pvmw);
			return false;
		}
		pvmw->pte++;
	} while (pte_none(ptep_get(pvmw->pte)));

	if (!pvmw->ptl) {
		pvmw->ptl = ptl;
		spin_lock(pvmw->ptl);
	}
	goto this_pte;
}
