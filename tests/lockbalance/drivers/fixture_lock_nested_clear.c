/* lockbalance: mm/fixture_locks.c: fixture_lock_nested_clear */
/*
 * spin_lock_nested() then ptep_clear().  Normal path: the entry is
 * cleared.  Every path: nothing held or mapped after.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	fixture_lock_nested_clear(&lb_mm, &lb_pmd[0], 0);
	if (mode == LB_NORMAL)
		LB_EXPECT(pte_none(*lb_pte(0, 0)));
}

LB_MAIN("fixture_lock_nested_clear", run, 1)
