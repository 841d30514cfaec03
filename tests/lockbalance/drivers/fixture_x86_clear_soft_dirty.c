/* lockbalance: arch/x86/mm/fixture_young.c: fixture_x86_clear_soft_dirty */
/*
 * ptep_clear_flush_young() under the lock.  Normal path: returns true,
 * the entry is old.  A failed recheck returns false, as a failed mapping
 * does.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	bool ret = fixture_x86_clear_soft_dirty(&lb_vma, &lb_pmd[0], 0);

	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret && !pte_young(*lb_pte(0, 0)));
}

LB_MAIN("fixture_x86_clear_soft_dirty", run, 1)
