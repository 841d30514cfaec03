/* lockbalance: mm/fixture_guard_none.c: fixture_gn_fill */
/*
 * Fills an entry that must be none, under the lock, after a pte_same()
 * check that cannot see a replaced table (both entries none): the
 * conversion rechecks the pmd.  Normal path: returns 0 with the entry
 * set.  A failed recheck returns -EAGAIN, as the failed pte_same() does,
 * with nothing written, held or mapped.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	pte_t entry = { LB_PRESENT | LB_PFN(0x42) };
	int ret;

	lb_pte(0, 0)->pte = 0;
	ret = fixture_gn_fill(&lb_mm, &lb_pmd[0], 0, entry);
	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0 && lb_pte(0, 0)->pte == entry.pte);
}

LB_MAIN("fixture_gn_fill", run, 1)
