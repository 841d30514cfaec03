/* lockbalance: mm/fixture_locks.c: fixture_lock_one_branch */
/*
 * Locks only in the branch that writes, and unmaps after the branch.
 * Normal path (entry present and dirty): returns 1, entry write-protected.
 * A failed recheck returns what a failed mapping returns (0), with the
 * table unmapped once and the lock released once.  Also: a clean entry
 * takes neither the lock nor the recheck.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	int ret = fixture_lock_one_branch(&lb_mm, &lb_pmd[0], 0);

	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 1 && !pte_write(*lb_pte(0, 0)));
}

static void clean(enum lb_mode mode)
{
	int ret;

	(void)mode;
	lb_pte(0, 0)->pte &= ~LB_DIRTY;
	ret = fixture_lock_one_branch(&lb_mm, &lb_pmd[0], 0);
	LB_EXPECT(ret == 0 && lb_writes == 0);
}

int main(void)
{
	lb_run("fixture_lock_one_branch", run, LB_NORMAL, 0);
	char *failed = lb_run("fixture_lock_one_branch", run, LB_MAP_FAILS, 1);
	char *rechecked = lb_run("fixture_lock_one_branch", run, LB_RECHECK_FAILS, 1);
	lb_same("fixture_lock_one_branch: a failed recheck leaves what a failed mapping leaves",
		rechecked, failed, "a failed mapping");
	lb_run("fixture_lock_one_branch (clean entry)", clean, LB_NORMAL, 0);
	return lb_exit();
}
