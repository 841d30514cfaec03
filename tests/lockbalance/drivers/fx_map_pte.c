/* lockbalance: mm/fixture_handout.c: fx_map_pte */
/*
 * fx_map_pte()'s contract, as page_vma_mapped_walk() relies on it:
 *  - true: pvmw->pte mapped, pvmw->ptl == *ptlp == the table's lock, held,
 *    and the pmd rechecked in that lock hold (the driver writes the entry
 *    as the walk's caller would, then releases both);
 *  - false with pvmw->pte set (entry not present): the table mapped, its
 *    lock in *ptlp and not held, pvmw->ptl untouched (NULL);
 *  - false with pvmw->pte NULL (a failed mapping): nothing mapped or held
 *    and pvmw->ptl untouched (NULL): the walk's end unlocks a non-NULL
 *    pvmw->ptl.
 * A failed recheck must leave what a failed mapping leaves; pvmw->ptl
 * must never name a lock that is not held (STALE-PTL).
 */
#include "stub.h"
#include LB_UNDER_TEST

static void map_once(enum lb_mode mode, bool expect_found)
{
	struct page_vma_mapped_walk pvmw = {
		.vma = &lb_vma, .pmd = &lb_pmd[0], .address = 0,
	};
	spinlock_t *ptl = NULL;
#ifdef LB_PMDVALP
	pmd_t pmdval;
	bool ret = fx_map_pte(&pvmw, &pmdval, &ptl);
#else
	bool ret = fx_map_pte(&pvmw, &ptl);
#endif

	lb_note("ret=%d pvmw->pte=%s pvmw->ptl=%s", ret, pvmw.pte ? "set" : "NULL",
		lb_lock_state(pvmw.ptl));
	lb_ptl_ok(pvmw.ptl, "pvmw->ptl");
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == expect_found);
	if (ret) {
		LB_EXPECT(pvmw.ptl == ptl);
		set_pte_at(&lb_mm, 0, pvmw.pte, pte_mkold(ptep_get(pvmw.pte)));
		lb_handed_back_locked(pvmw.pte, pvmw.ptl);
	} else if (pvmw.pte) {
		LB_EXPECT(pvmw.ptl == NULL);
		lb_handed_back_unlocked(pvmw.pte, ptl);
	}
}

static void run(enum lb_mode mode)
{
	map_once(mode, true);
}

static void not_present(enum lb_mode mode)
{
	lb_pte(0, 0)->pte = 0;
	map_once(mode, false);
	LB_EXPECT(lb_pmd_reads == 0);	/* no lock taken, nothing to recheck */
}

int main(void)
{
	lb_run("fx_map_pte", run, LB_NORMAL, 0);
	char *failed = lb_run("fx_map_pte", run, LB_MAP_FAILS, 1);
	char *rechecked = lb_run("fx_map_pte", run, LB_RECHECK_FAILS, 1);
	lb_same("fx_map_pte: a failed recheck leaves what a failed mapping leaves",
		rechecked, failed, "a failed mapping");
	lb_run("fx_map_pte (entry not present)", not_present, LB_NORMAL, 0);
	return lb_exit();
}
