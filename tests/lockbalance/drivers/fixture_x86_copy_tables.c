/* lockbalance: arch/x86/mm/fixture_young.c: fixture_x86_copy_tables */
/*
 * Two tables: the source (lb_pmd[1]) read-only, the destination
 * (lb_pmd[0]) written, with both locks held.  Normal path: returns 0,
 * the destination entry is the source's, made old.  The failed mapping is
 * the destination's (the second map call): -EAGAIN with the source
 * unmapped.  A failed recheck of the destination pmd must leave the same:
 * -EAGAIN, both tables unmapped, neither lock held.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	int ret = fixture_x86_copy_tables(&lb_mm, &lb_mm, &lb_pmd[0], &lb_pmd[1], 0);

	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0 && lb_pte(0, 0)->pte == pte_mkold(*lb_pte(1, 0)).pte);
}

LB_MAIN("fixture_x86_copy_tables", run, 2)
