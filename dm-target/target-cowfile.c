// SPDX-License-Identifier: GPL-2.0
/*
 * The "cowfile" target: stacked 1:1 over the origin.
 * Skeleton: a pass-through mapping until tracking lands.
 */
#include <linux/module.h>
#include <linux/bio.h>

#include "cowfile.h"

struct cowfile_c {
	struct dm_dev *origin;
};

static int cowfile_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct cowfile_c *cc;
	int r;

	if (argc != 1) {
		ti->error = "Invalid argument count: expected <origin_dev>";
		return -EINVAL;
	}
	cc = kzalloc(sizeof(*cc), GFP_KERNEL);
	if (!cc) {
		ti->error = "Cannot allocate context";
		return -ENOMEM;
	}
	r = dm_get_device(ti, argv[0], dm_table_get_mode(ti->table), &cc->origin);
	if (r) {
		ti->error = "Cannot open origin device";
		kfree(cc);
		return r;
	}
	ti->private = cc;
	ti->num_flush_bios = 1;
	ti->num_discard_bios = 1;
	ti->num_write_zeroes_bios = 1;
	return 0;
}

static void cowfile_dtr(struct dm_target *ti)
{
	struct cowfile_c *cc = ti->private;

	dm_put_device(ti, cc->origin);
	kfree(cc);
}

static int cowfile_map(struct dm_target *ti, struct bio *bio)
{
	struct cowfile_c *cc = ti->private;

	bio_set_dev(bio, cc->origin->bdev);
	bio->bi_iter.bi_sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	return DM_MAPIO_REMAPPED;
}

static void cowfile_status(struct dm_target *ti, status_type_t type,
			   unsigned int status_flags, char *result,
			   unsigned int maxlen)
{
	struct cowfile_c *cc = ti->private;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		DMEMIT("passthrough");
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", cc->origin->name);
		break;
	default:
		break;
	}
}

static int cowfile_iterate_devices(struct dm_target *ti,
				   iterate_devices_callout_fn fn, void *data)
{
	struct cowfile_c *cc = ti->private;

	return fn(ti, cc->origin, 0, ti->len, data);
}

static struct target_type cowfile_target = {
	.name = "cowfile",
	.version = {0, 1, 0},
	.module = THIS_MODULE,
	.ctr = cowfile_ctr,
	.dtr = cowfile_dtr,
	.map = cowfile_map,
	.status = cowfile_status,
	.iterate_devices = cowfile_iterate_devices,
};

int cowfile_target_init(void)
{
	return dm_register_target(&cowfile_target);
}

void cowfile_target_exit(void)
{
	dm_unregister_target(&cowfile_target);
}
