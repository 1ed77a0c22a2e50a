// SPDX-License-Identifier: GPL-2.0
/*
 * The "cowfile" target: stacked 1:1 over the origin. Reads go straight
 * down; a write to a chunk already marked in the open epoch goes straight
 * down (while a snapshot is held, if its 4 KiB blocks are copied); any
 * other write waits in cow.c until its chunks are marked and its blocks
 * copied.
 *
 *   cowfile <origin_dev> <store_dev> <sb_sector> [<#feature_args> <arg>...]
 */
#include <linux/module.h>
#include <linux/bio.h>

#include "cowfile.h"

struct cowfile_c {
	struct dm_dev *origin;
	struct dm_dev *store;		/* claimed like the origin, or */
	struct cowfile_shared_bdev shared_store; /* on a mounted filesystem */
	struct block_device *store_bdev;
	char store_name[16];
	sector_t sb_sector;
	unsigned int low_water;	/* 0: not given in the table */
	struct cowfile_volume *volume;
};

static int parse_features(struct dm_arg_set *as, struct cowfile_c *cc,
			  struct dm_target *ti)
{
	static const struct dm_arg feature_count = {0, 2, "Invalid number of feature arguments"};
	static const struct dm_arg low_water = {1, 100, "low_water must be a percentage 1-100"};
	unsigned int argc;
	int r;

	if (!as->argc)
		return 0;
	r = dm_read_arg_group(&feature_count, as, &argc, &ti->error);
	if (r)
		return r;
	while (argc) {
		const char *name = dm_shift_arg(as);

		argc--;
		if (!strcasecmp(name, COWFILE_FEATURE_LOW_WATER) && argc) {
			r = dm_read_arg(&low_water, as, &cc->low_water, &ti->error);
			if (r)
				return r;
			argc--;
			continue;
		}
		ti->error = "Unknown feature argument";
		return -EINVAL;
	}
	if (as->argc) {
		ti->error = "Too many arguments";
		return -EINVAL;
	}
	return 0;
}

/*
 * The store device is claimed like the origin when it is free (or is the
 * origin). A store file on a filesystem mounted from another device is
 * reached without a claim: that filesystem holds the device, and the
 * store's blocks are pinned in it.
 */
static int open_store(struct dm_target *ti, struct cowfile_c *cc, const char *path)
{
	int r;

	r = dm_get_device(ti, path, dm_table_get_mode(ti->table), &cc->store);
	if (!r) {
		cc->store_bdev = cc->store->bdev;
	} else if (r == -EBUSY) {
		r = cowfile_open_shared(path, &cc->shared_store);
		if (r) {
			ti->error = "Cannot open store device";
			return r;
		}
		cc->store_bdev = cc->shared_store.bdev;
	} else {
		ti->error = "Cannot open store device";
		return r;
	}
	snprintf(cc->store_name, sizeof(cc->store_name), "%u:%u",
		 MAJOR(cc->store_bdev->bd_dev), MINOR(cc->store_bdev->bd_dev));
	return 0;
}

static void close_store(struct dm_target *ti, struct cowfile_c *cc)
{
	if (cc->store)
		dm_put_device(ti, cc->store);
	else
		cowfile_close_shared(&cc->shared_store);
}

static int cowfile_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	unsigned long long sb_sector;
	struct cowfile_c *cc;
	char dummy;
	int r;

	if (argc < 3) {
		ti->error = "Invalid argument count: <origin_dev> <store_dev> <sb_sector> [<#features> <arg>...]";
		return -EINVAL;
	}
	cc = kzalloc(sizeof(*cc), GFP_KERNEL);
	if (!cc) {
		ti->error = "Cannot allocate context";
		return -ENOMEM;
	}
	if (sscanf(argv[2], "%llu%c", &sb_sector, &dummy) != 1) {
		ti->error = "Invalid store superblock sector";
		r = -EINVAL;
		goto bad;
	}
	cc->sb_sector = sb_sector;
	dm_consume_args(&as, 3);
	r = parse_features(&as, cc, ti);
	if (r)
		goto bad;

	/* The store is written at every load, commit and state change. */
	if (!(dm_table_get_mode(ti->table) & COWFILE_MODE_WRITE)) {
		ti->error = "cowfile needs a writable table";
		r = -EROFS;
		goto bad;
	}
	r = dm_get_device(ti, argv[0], dm_table_get_mode(ti->table), &cc->origin);
	if (r) {
		ti->error = "Cannot open origin device";
		goto bad;
	}
	if (bdev_read_only(cc->origin->bdev)) {
		ti->error = "Origin device is read-only";
		r = -EROFS;
		goto bad_origin;
	}
	if (ti->begin + ti->len > bdev_nr_sectors(cc->origin->bdev) ||
	    ti->begin) {
		ti->error = "Target must start at sector 0 and fit the origin device";
		r = -EINVAL;
		goto bad_origin;
	}
	r = open_store(ti, cc, argv[1]);
	if (r)
		goto bad_origin;
	if (bdev_read_only(cc->store_bdev)) {
		ti->error = "Store device is read-only";
		r = -EROFS;
		goto bad_store;
	}
	/* Image reads of copied chunks go to the store as the origin takes them. */
	if (bdev_logical_block_size(cc->store_bdev) >
	    bdev_logical_block_size(cc->origin->bdev)) {
		ti->error = "Store device's logical block size exceeds the origin's";
		r = -EINVAL;
		goto bad_store;
	}
	cc->volume = volume_get(ti, cc->origin->bdev, cc->store_bdev,
				cc->sb_sector, &ti->error);
	if (IS_ERR(cc->volume)) {
		r = PTR_ERR(cc->volume);
		goto bad_store;
	}
	if (cc->low_water) {
		mutex_lock(&cc->volume->state_lock);
		cc->volume->low_water = cc->low_water;
		mutex_unlock(&cc->volume->state_lock);
	}

	ti->private = cc;
	ti->num_flush_bios = 1;
	ti->num_discard_bios = 1;
	ti->num_write_zeroes_bios = 1;
	return 0;

bad_store:
	close_store(ti, cc);
bad_origin:
	dm_put_device(ti, cc->origin);
bad:
	kfree(cc);
	return r;
}

static void cowfile_dtr(struct dm_target *ti)
{
	struct cowfile_c *cc = ti->private;
	struct cowfile_volume *v = cc->volume;

	mutex_lock(&v->state_lock);
	if (v->live_ti == ti)
		v->live_ti = NULL;
	mutex_unlock(&v->state_lock);
	volume_put(v);
	close_store(ti, cc);
	dm_put_device(ti, cc->origin);
	kfree(cc);
}

static int cowfile_map(struct dm_target *ti, struct bio *bio)
{
	struct cowfile_c *cc = ti->private;
	struct cowfile_volume *v = cc->volume;
	sector_t sector, len = bio_sectors(bio);
	u64 first, last;
	bool store_io;

	bio_set_dev(bio, v->origin_bdev);
	if (!len)
		return DM_MAPIO_REMAPPED;	/* a flush */
	sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	bio->bi_iter.bi_sector = sector;

	if (bio_op(bio) == REQ_OP_READ || READ_ONCE(v->mode) == COWFILE_MODE_LOST)
		return DM_MAPIO_REMAPPED;

	/*
	 * While a snapshot is held a discard would drop data the image still
	 * needs; discard is advisory, so complete it without passing it down.
	 * The data does not change, so there is nothing to track either.
	 */
	if (bio_op(bio) == REQ_OP_DISCARD &&
	    READ_ONCE(v->snap_state) == COWFILE_SNAP_ACTIVE) {
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}

	/* The store's own blocks are neither tracked nor copied. */
	if (v->store.on_origin) {
		rcu_read_lock();
		store_io = store_ranges_cover(rcu_dereference(v->store.layout), sector, len);
		rcu_read_unlock();
		if (store_io)
			return DM_MAPIO_REMAPPED;
	}

	/*
	 * Marked chunks go straight down, unless still pending (an image read
	 * that found a block uncopied may still be in flight) or, while a
	 * snapshot is held, a block the write covers is not copied yet.
	 */
	first = chunk_of(v, sector);
	last = chunk_of(v, sector + len - 1);
	if (find_next_zero_bit(v->marked, last + 1, first) > last) {
		smp_rmb();	/* pairs with commit_batch(): pending, then marked */
		if (find_next_bit(v->pending, last + 1, first) > last &&
		    (READ_ONCE(v->snap_state) != COWFILE_SNAP_ACTIVE ||
		     cow_blocks_copied(v, sector, len)))
			return DM_MAPIO_REMAPPED;
	}

	cow_defer_write(v, bio);
	return DM_MAPIO_SUBMITTED;
}

static void cowfile_status(struct dm_target *ti, status_type_t type,
			   unsigned int status_flags, char *result,
			   unsigned int maxlen)
{
	struct cowfile_c *cc = ti->private;
	struct cowfile_volume *v = cc->volume;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		mutex_lock(&v->state_lock);
		DMEMIT("%s %pUb %llu %llu %llu %llu/%llu %llu/%llu ",
		       v->mode == COWFILE_MODE_LOST ? "lost" : "tracking",
		       &v->generation,
		       (unsigned long long)v->generation_epoch,
		       (unsigned long long)v->epoch,
		       (unsigned long long)v->chunk_sectors,
		       (unsigned long long)v->nr_marked,
		       (unsigned long long)v->nr_chunks,
		       (unsigned long long)v->log_end,
		       (unsigned long long)v->store.total_slots);
		if (v->snap_state == COWFILE_SNAP_NONE)
			DMEMIT("none - -");
		else
			DMEMIT("%s %llu %s",
			       v->snap_state == COWFILE_SNAP_ACTIVE ? "active" : "invalid",
			       (unsigned long long)v->snap_epoch,
			       volume_invalid_reason(v->invalid_reason));
		DMEMIT(" %zu %llu", volume_core_bytes(v), (unsigned long long)v->nr_copied);
		mutex_unlock(&v->state_lock);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s %s %llu", cc->origin->name, cc->store_name,
		       (unsigned long long)cc->sb_sector);
		if (cc->low_water)
			DMEMIT(" 2 %s %u", COWFILE_FEATURE_LOW_WATER, cc->low_water);
		break;
	default:
		if (cowfile_status_is_ima(type))
			DMEMIT("target_name=%s,target_version=%u.%u.%u,origin=%s,store=%s,sb_sector=%llu;",
			       ti->type->name, ti->type->version[0], ti->type->version[1],
			       ti->type->version[2], cc->origin->name, cc->store_name,
			       (unsigned long long)cc->sb_sector);
		break;
	}
}

static int cowfile_message(struct dm_target *ti, unsigned int argc, char **argv,
			   char *result, unsigned int maxlen)
{
	struct cowfile_c *cc = ti->private;
	struct cowfile_volume *v = cc->volume;
	char *error = NULL;
	int r;

	if (!strcasecmp(argv[0], COWFILE_MSG_SNAPSHOT) ||
	    !strcasecmp(argv[0], COWFILE_MSG_NEW_GENERATION)) {
		if (argc != 1) {
			DMWARN("%s takes no arguments", argv[0]);
			return -EINVAL;
		}
		/* Only while suspended: nothing in flight, the filesystem frozen. */
		if (!strcasecmp(argv[0], COWFILE_MSG_SNAPSHOT))
			return volume_snapshot(v);
		return volume_new_generation(v);
	}
	if (!strcasecmp(argv[0], COWFILE_MSG_RELEASE)) {
		if (argc != 1) {
			DMWARN("release takes no arguments");
			return -EINVAL;
		}
		return volume_release(v);
	}
	if (!strcasecmp(argv[0], COWFILE_MSG_GROW)) {
		r = volume_grow(v, argc - 1, argv + 1, &error);
		if (r)
			DMWARN("grow refused: %s", error);
		return r;
	}
	DMWARN("unknown message '%s'", argv[0]);
	return -EINVAL;
}

/*
 * The first resume takes the store over (load-time checks, the store no
 * longer clean): a table that is loaded and never resumed changes nothing
 * (but for the index area, scratch space the load may fill: index.c),
 * and with live insertion the old table is quiesced by now.
 */
static int cowfile_preresume(struct dm_target *ti)
{
	struct cowfile_c *cc = ti->private;

	return volume_activate(cc->volume);
}

static void cowfile_resume(struct dm_target *ti)
{
	struct cowfile_c *cc = ti->private;
	struct cowfile_volume *v = cc->volume;

	mutex_lock(&v->state_lock);
	v->live_ti = ti;
	v->suspended = false;
	mutex_unlock(&v->state_lock);
}

static void cowfile_postsuspend(struct dm_target *ti)
{
	struct cowfile_c *cc = ti->private;
	struct cowfile_volume *v = cc->volume;

	/* Held writes count as in flight, so none is left; be sure of it. */
	flush_workqueue(v->wq);
	volume_suspended(v, true);
}

static int cowfile_iterate_devices(struct dm_target *ti,
				   iterate_devices_callout_fn fn, void *data)
{
	struct cowfile_c *cc = ti->private;

	return fn(ti, cc->origin, 0, ti->len, data);
}

static struct target_type cowfile_target = {
	.name = COWFILE_TARGET_NAME,
	.version = {1, 0, 0},
	.module = THIS_MODULE,
	.ctr = cowfile_ctr,
	.dtr = cowfile_dtr,
	.map = cowfile_map,
	.postsuspend = cowfile_postsuspend,
	.preresume = cowfile_preresume,
	.resume = cowfile_resume,
	.status = cowfile_status,
	.message = cowfile_message,
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
