// SPDX-License-Identifier: GPL-2.0
/*
 * The "cowfile-snap" target: the read-only image of a held snapshot.
 * Skeleton: a read-only view of the origin until snapshots land.
 */
#include <linux/module.h>
#include <linux/bio.h>

#include "cowfile.h"

struct snap_c {
	struct dm_dev *origin;
};

static int snap_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct snap_c *sc;
	int r;

	if (argc != 1) {
		ti->error = "Invalid argument count: expected <origin_dev>";
		return -EINVAL;
	}
	sc = kzalloc(sizeof(*sc), GFP_KERNEL);
	if (!sc) {
		ti->error = "Cannot allocate context";
		return -ENOMEM;
	}
	r = dm_get_device(ti, argv[0], FMODE_READ, &sc->origin);
	if (r) {
		ti->error = "Cannot open origin device";
		kfree(sc);
		return r;
	}
	ti->private = sc;
	return 0;
}

static void snap_dtr(struct dm_target *ti)
{
	struct snap_c *sc = ti->private;

	dm_put_device(ti, sc->origin);
	kfree(sc);
}

static int snap_map(struct dm_target *ti, struct bio *bio)
{
	struct snap_c *sc = ti->private;

	if (bio_data_dir(bio) == WRITE)
		return DM_MAPIO_KILL;
	bio_set_dev(bio, sc->origin->bdev);
	bio->bi_iter.bi_sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	return DM_MAPIO_REMAPPED;
}

static int snap_iterate_devices(struct dm_target *ti,
				iterate_devices_callout_fn fn, void *data)
{
	struct snap_c *sc = ti->private;

	return fn(ti, sc->origin, 0, ti->len, data);
}

static struct target_type snap_target = {
	.name = "cowfile-snap",
	.version = {0, 1, 0},
	.module = THIS_MODULE,
	.ctr = snap_ctr,
	.dtr = snap_dtr,
	.map = snap_map,
	.iterate_devices = snap_iterate_devices,
};

int cowfile_snap_target_init(void)
{
	return dm_register_target(&snap_target);
}

void cowfile_snap_target_exit(void)
{
	dm_unregister_target(&snap_target);
}
