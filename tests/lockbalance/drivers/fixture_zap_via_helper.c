/* lockbalance: mm/fixture_helpers.c: zap_one fixture_zap_via_helper */
/*
 * The write is in zap_one(), a helper in the same file.  Normal path: the
 * entry is cleared.  Every path: nothing held or mapped after, the write
 * only after the recheck.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	fixture_zap_via_helper(&lb_mm, &lb_pmd[0], 0);
	if (mode == LB_NORMAL)
		LB_EXPECT(pte_none(*lb_pte(0, 0)));
}

LB_MAIN("fixture_zap_via_helper", run, 1)
