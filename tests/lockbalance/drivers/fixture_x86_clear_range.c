/* lockbalance: arch/x86/mm/fixture_young.c: fixture_x86_clear_range */
/*
 * Clears entries 0..3 under the lock, unmapping through start_pte (the
 * loop moves pte).  Normal path: entries 0..3 none, entry 4 kept.  Every
 * path: nothing held or mapped after.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	fixture_x86_clear_range(&lb_mm, &lb_pmd[0], 0, 4 * PAGE_SIZE);
	if (mode == LB_NORMAL)
		LB_EXPECT(pte_none(*lb_pte(0, 3)) && !pte_none(*lb_pte(0, 4)));
}

LB_MAIN("fixture_x86_clear_range", run, 1)
