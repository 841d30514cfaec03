/* lockbalance: mm/fixture_locks.c: fixture_trylock_wrprotect */
/*
 * spin_trylock(); when it fails the function unmaps and returns false.
 * Normal path: returns true with the entry write-protected.  A failed
 * recheck returns false, as a failed mapping does.  Also: the lock is
 * busy (taken by someone else), so the trylock fails: false, nothing
 * mapped after, the other holder's lock untouched.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	bool ret = fixture_trylock_wrprotect(&lb_mm, &lb_pmd[0], 0);

	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret && !pte_write(*lb_pte(0, 0)));
}

static void busy(enum lb_mode mode)
{
	bool ret;

	(void)mode;
	lb_table[0].ptl.held = 1;	/* another CPU holds it */
	ret = fixture_trylock_wrprotect(&lb_mm, &lb_pmd[0], 0);
	LB_EXPECT(!ret && lb_table[0].ptl.held && lb_writes == 0);
	lb_table[0].ptl.held = 0;
}

int main(void)
{
	lb_run("fixture_trylock_wrprotect", run, LB_NORMAL, 0);
	char *failed = lb_run("fixture_trylock_wrprotect", run, LB_MAP_FAILS, 1);
	char *rechecked = lb_run("fixture_trylock_wrprotect", run, LB_RECHECK_FAILS, 1);
	lb_same("fixture_trylock_wrprotect: a failed recheck leaves what a failed mapping leaves",
		rechecked, failed, "a failed mapping");
	lb_run("fixture_trylock_wrprotect (lock busy)", busy, LB_NORMAL, 0);
	return lb_exit();
}
