/* lockbalance: mm/fixture_return.c: fixture_ptlp_write */
/*
 * The lock pointer goes to the caller's *ptlp; the function locks and
 * unlocks *ptlp itself.  Normal path: returns 0, entry young and dirty.
 * Every path: nothing held or mapped after.  A failed recheck returns
 * what a failed mapping returns (-EAGAIN).  *ptlp is not part of the
 * result: the normal path too leaves it naming the released lock.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	spinlock_t *ptl = NULL;
	int ret;

	lb_pte(0, 0)->pte &= ~(LB_YOUNG | LB_DIRTY);
	ret = fixture_ptlp_write(&lb_vma, &lb_pmd[0], 0, &ptl);
	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0 && pte_young(*lb_pte(0, 0)) && pte_dirty(*lb_pte(0, 0)));
}

LB_MAIN("fixture_ptlp_write", run, 1)
