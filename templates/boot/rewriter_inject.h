/* SPDX-License-Identifier: GPL-2.0 */
/*
 * rewriter check --boot: hooks of the test build.  Never part of a patch.
 *
 * rwi_recheck(site, failed) stands for the condition of a pmd_same()
 * recheck: it returns true when the recheck really failed, and also on
 * every Nth evaluation of the site (rewriter_inject.every=N), so that the
 * failure path runs.  rwi_call(site) counts a call of the new functions.
 */
#ifndef _LINUX_REWRITER_INJECT_H
#define _LINUX_REWRITER_INJECT_H

#include <linux/types.h>

bool rwi_recheck(int site, bool failed);
void rwi_call(int site);

#endif /* _LINUX_REWRITER_INJECT_H */
