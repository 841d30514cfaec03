/* lockbalance: mm/fixture_locks.c: fixture_collapse_retract */
/*
 * Holds the pmd lock (pmd_lock()) around the PTE table lock and removes
 * the table with pmdp_collapse_flush().  Normal path: returns 0 and the
 * pmd is none.  Every path: neither lock held and nothing mapped after.
 * A failed recheck returns -EAGAIN, as a failed mapping does, and leaves
 * the (new) pmd in place.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	int ret = fixture_collapse_retract(&lb_vma, &lb_pmd[0], 0);

	lb_note("ret=%d pmd=%s", ret, pmd_none(lb_pmd[0]) ? "none" : "present");
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0 && pmd_none(lb_pmd[0]));
}

LB_MAIN("fixture_collapse_retract", run, 1)
