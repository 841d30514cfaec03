/* lockbalance: mm/fixture_helpers.c: zap_one fixture_zap_range fixture_zap_via_chain */
/*
 * The writes are two calls down (fixture_zap_range() -> zap_one()), over
 * three entries.  Normal path: entries 0..2 cleared, entry 3 kept.  Every
 * path: nothing held or mapped after.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	fixture_zap_via_chain(&lb_mm, &lb_pmd[0], 0, 3);
	if (mode == LB_NORMAL)
		LB_EXPECT(pte_none(*lb_pte(0, 2)) && !pte_none(*lb_pte(0, 3)));
}

LB_MAIN("fixture_zap_via_chain", run, 1)
