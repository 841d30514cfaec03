/* lockbalance: mm/fixture_locks.c: fixture_clear_some_paths */
/*
 * Clears the entry only when cond is set (here it is).  Normal path: the
 * entry is cleared.  Every path: nothing held or mapped after.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	fixture_clear_some_paths(&lb_mm, &lb_pmd[0], 0, true);
	if (mode == LB_NORMAL)
		LB_EXPECT(pte_none(*lb_pte(0, 0)));
}

LB_MAIN("fixture_clear_some_paths", run, 1)
