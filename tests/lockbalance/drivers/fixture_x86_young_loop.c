/* lockbalance: arch/x86/mm/fixture_young.c: fixture_x86_young_loop */
/*
 * Clears the young bit of four entries in a loop under the lock.  Normal
 * path: returns 1 (some were young), entry 3 old, entry 4 untouched.  A
 * failed recheck returns 0, as a failed mapping does.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	int ret = fixture_x86_young_loop(&lb_vma, &lb_pmd[0], 0, 4);

	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 1 && !pte_young(*lb_pte(0, 3)) && pte_young(*lb_pte(0, 4)));
}

LB_MAIN("fixture_x86_young_loop", run, 1)
