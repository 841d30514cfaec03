/* lockbalance: mm/fixture_helpers.c: struct fixture_walk fixture_walk_clear fixture_walk_struct */
/*
 * Maps into walk->pte with the lock pointer in walk->ptl.  Normal path:
 * returns 1 (one entry cleared).  The caller sees the return value and
 * walk->pte: a failed recheck must leave them as a failed mapping does
 * (-EAGAIN, walk->pte == NULL).
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	struct fixture_walk walk = { .mm = &lb_mm, .addr = 0 };
	int ret = fixture_walk_struct(&walk, &lb_pmd[0]);

	lb_note("ret=%d walk->pte=%s", ret, walk.pte ? "set" : "NULL");
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 1 && pte_none(*lb_pte(0, 0)));
}

LB_MAIN("fixture_walk_struct", run, 1)
