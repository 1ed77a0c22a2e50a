/* SPDX-License-Identifier: GPL-2.0 */
#ifndef DM_COWFILE_H
#define DM_COWFILE_H

#include <linux/device-mapper.h>

#define DM_MSG_PREFIX "cowfile"

int cowfile_target_init(void);
void cowfile_target_exit(void);
int cowfile_snap_target_init(void);
void cowfile_snap_target_exit(void);

#endif
