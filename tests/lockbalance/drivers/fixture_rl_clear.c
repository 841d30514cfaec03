/* lockbalance: mm/fixture_rule_readlock.c: fixture_rl_clear */
/*
 * pte_clear() under the lock; its only caller holds the mmap_lock for
 * read, so the conversion rechecks the pmd.  Normal path: the entry is
 * cleared.  Every path: nothing held or mapped after.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	fixture_rl_clear(&lb_mm, &lb_pmd[0], 0);
	if (mode == LB_NORMAL)
		LB_EXPECT(pte_none(*lb_pte(0, 0)));
}

LB_MAIN("fixture_rl_clear", run, 1)
