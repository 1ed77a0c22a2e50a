// SPDX-License-Identifier: GPL-2.0
/*
 * dm-cowfile: change-block tracking and snapshots into a pinned store file.
 *
 * Module glue: registers the "cowfile" and "cowfile-snap" targets and
 * instantiates the tracepoints.
 */
#include <linux/module.h>

#include "cowfile.h"

#define CREATE_TRACE_POINTS
#include "trace.h"

static int __init dm_cowfile_init(void)
{
	int r;

	r = cowfile_target_init();
	if (r)
		return r;
	r = cowfile_snap_target_init();
	if (r) {
		cowfile_target_exit();
		return r;
	}
	return 0;
}

static void __exit dm_cowfile_exit(void)
{
	cowfile_snap_target_exit();
	cowfile_target_exit();
	rcu_barrier();	/* store layouts replaced by grow are freed by RCU callbacks */
}

module_init(dm_cowfile_init);
module_exit(dm_cowfile_exit);

MODULE_DESCRIPTION(DM_NAME " change tracking and snapshots into a store file");
MODULE_AUTHOR("snapmgr developers");
MODULE_LICENSE("GPL");
