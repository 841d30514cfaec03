/* lockbalance: mm/fixture_return.c: fixture_map_out_param */
/*
 * Returns 0 with the mapped entry in *ptepp and its held lock in *ptlp,
 * or -EINVAL with nothing held or mapped.  Normal path: the driver checks
 * the hand-back, writes the entry as a caller would and releases both.  A
 * failed recheck returns -EINVAL, as a failed mapping does.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	spinlock_t *ptl = NULL;
	pte_t *pte = NULL;
	int ret = fixture_map_out_param(&lb_mm, &lb_pmd[0], 0, &pte, &ptl);

	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0);
	if (ret == 0) {
		set_pte_at(&lb_mm, 0, pte, pte_mkold(ptep_get(pte)));
		lb_handed_back_locked(pte, ptl);
	}
}

LB_MAIN("fixture_map_out_param", run, 1)
