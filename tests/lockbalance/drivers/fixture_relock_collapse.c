/* lockbalance: mm/fixture_relock.c: fixture_relock_collapse */
/*
 * Two holds of the same lock: the first clears entries 0..3, the second
 * (after unlock and unmap) removes the table with pmdp_collapse_flush().
 * Each hold writes, so each needs its own recheck.  Normal path: returns
 * 0, the pmd is none.  Every path: nothing held or mapped after.  A failed
 * recheck in the first hold (call 1) and in the second hold (call 2)
 * must each return what a failed mapping returns (-EAGAIN), without
 * removing the table.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	int ret = fixture_relock_collapse(&lb_vma, &lb_pmd[0], 0, 4);

	lb_note("ret=%d pmd=%s", ret, pmd_none(lb_pmd[0]) ? "none" : "present");
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0 && pmd_none(lb_pmd[0]));
}

int main(void)
{
	lb_run("fixture_relock_collapse", run, LB_NORMAL, 0);
	char *failed = lb_run("fixture_relock_collapse", run, LB_MAP_FAILS, 1);
	char *first = lb_run("fixture_relock_collapse (first hold)", run, LB_RECHECK_FAILS, 1);
	lb_same("fixture_relock_collapse: a failed recheck in the first hold leaves what a failed mapping leaves",
		first, failed, "a failed mapping");
	lb_retries = true;	/* the first hold's writes are done when the second fails */
	char *second = lb_run("fixture_relock_collapse (second hold)", run, LB_RECHECK_FAILS, 2);
	lb_same("fixture_relock_collapse: a failed recheck in the second hold leaves what a failed mapping leaves",
		second, failed, "a failed mapping");
	return lb_exit();
}
