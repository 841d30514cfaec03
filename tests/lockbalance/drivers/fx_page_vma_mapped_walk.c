/* lockbalance: mm/fixture_handout.c: fx_check_pte fx_walk_done fx_map_pte fx_page_vma_mapped_walk */
/*
 * The walk returns true with pvmw->pte mapped and pvmw->ptl held (the
 * driver then writes the entry as try_to_unmap_one() would, so the pmd
 * must have been rechecked in that lock hold, and releases both), or
 * false with nothing mapped or held.  It retries (restart) when a mapping
 * or a recheck fails, so those scenarios must end as the normal path
 * does.  Scenarios:
 *  - found by fx_map_pte() (entry 0 matches): the lock is taken there;
 *  - found by the walk itself (entry 0 none, entry 1 matches): the walk
 *    takes the handed-out lock, "pvmw->ptl = ptl; spin_lock(pvmw->ptl)";
 *  - each of them with the first recheck failing (pmd now another table);
 *  - found by fx_map_pte() with the recheck failing because the pmd is now
 *    none: the walk must end (false) with nothing held: fx_walk_done()
 *    unlocks a non-NULL pvmw->ptl, so a stale one is unlocked twice.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void walk(unsigned long pfn)
{
	struct page_vma_mapped_walk pvmw = {
		.pfn = pfn, .vma = &lb_vma, .pmd = &lb_pmd[0], .address = 0,
	};
	bool ret = fx_page_vma_mapped_walk(&pvmw, 4 * PAGE_SIZE);

	lb_note("ret=%d address=%lu pvmw->ptl=%s", ret, pvmw.address / PAGE_SIZE,
		lb_lock_state(pvmw.ptl));
	if (ret) {
		set_pte_at(&lb_mm, pvmw.address, pvmw.pte, pte_mkold(ptep_get(pvmw.pte)));
		lb_handed_back_locked(pvmw.pte, pvmw.ptl);
	}
}

static void in_map_pte(enum lb_mode mode)
{
	(void)mode;
	walk(pte_pfn(*lb_pte(0, 0)));
}

static void in_walk(enum lb_mode mode)
{
	(void)mode;
	lb_pte(0, 0)->pte = 0;
	walk(pte_pfn(*lb_pte(0, 1)));
}

int main(void)
{
	lb_retries = true;
	char *a = lb_run("fx_page_vma_mapped_walk (lock taken in fx_map_pte)", in_map_pte, LB_NORMAL, 0);
	char *b = lb_run("fx_page_vma_mapped_walk (lock taken in fx_map_pte)", in_map_pte, LB_MAP_FAILS, 1);
	lb_same("fx_page_vma_mapped_walk (lock taken in fx_map_pte): a failed mapping is retried", b, a,
		"the normal path");
	b = lb_run("fx_page_vma_mapped_walk (lock taken in fx_map_pte)", in_map_pte, LB_RECHECK_FAILS, 1);
	lb_same("fx_page_vma_mapped_walk (lock taken in fx_map_pte): a failed recheck is retried", b, a,
		"the normal path");
	b = lb_run("fx_page_vma_mapped_walk (lock taken in fx_map_pte)", in_map_pte, LB_RECHECK_CLEARS, 1);
	lb_same("fx_page_vma_mapped_walk (lock taken in fx_map_pte): a recheck that finds no table ends the walk",
		b, "ret=0 address=0 pvmw->ptl=NULL", "a walk over no table");

	a = lb_run("fx_page_vma_mapped_walk (lock taken in the walk)", in_walk, LB_NORMAL, 0);
	b = lb_run("fx_page_vma_mapped_walk (lock taken in the walk)", in_walk, LB_RECHECK_FAILS, 1);
	lb_same("fx_page_vma_mapped_walk (lock taken in the walk): a failed recheck is retried", b, a,
		"the normal path");
	return lb_exit();
}
