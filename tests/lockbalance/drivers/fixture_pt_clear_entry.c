/* lockbalance: include/linux/fixture_pt.h: fixture_pt_clear_entry */
/*
 * A static inline in a header: ptep_clear() under the lock.  Normal path:
 * the entry is cleared.  Every path: nothing held or mapped after.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	fixture_pt_clear_entry(&lb_mm, &lb_pmd[0], 0);
	if (mode == LB_NORMAL)
		LB_EXPECT(pte_none(*lb_pte(0, 0)));
}

LB_MAIN("fixture_pt_clear_entry", run, 1)
