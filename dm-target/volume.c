// SPDX-License-Identifier: GPL-2.0
/*
 * Tracked volumes: loading a store's state, the registry that lets table
 * reloads and image devices share it, and the state changes a monitor sees
 * (snapshot held, released, invalidated; tracking lost; new generation).
 */
#include <linux/slab.h>
#include <linux/bitmap.h>
#include <linux/crc32c.h>

#include "cowfile.h"
#include "trace.h"

static LIST_HEAD(volumes);
static DEFINE_MUTEX(volumes_lock);

/* Copies the volume's state into the in-core superblock and writes it. */
static int volume_write_sb(struct cowfile_volume *v)
{
	struct cowfile_superblock *sb = v->store.sb;

	lockdep_assert_held(&v->state_lock);
	if (v->mode == COWFILE_MODE_LOST)
		sb->flags |= cpu_to_le32(COWFILE_SB_TRACKING_LOST);
	else
		sb->flags &= ~cpu_to_le32(COWFILE_SB_TRACKING_LOST);
	export_uuid(sb->generation_uuid, &v->generation);
	sb->epoch = cpu_to_le64(v->epoch);
	sb->generation_epoch = cpu_to_le64(v->generation_epoch);
	sb->snap_state = cpu_to_le32(v->snap_state);
	sb->snap_invalid_reason = cpu_to_le32(v->invalid_reason);
	sb->snap_epoch = cpu_to_le64(v->snap_epoch);
	sb->data_slots_used = cpu_to_le64(v->slots_used);
	return store_write_sb(&v->store);
}

void volume_event(struct cowfile_volume *v)
{
	lockdep_assert_held(&v->state_lock);
	trace_cowfile_snapshot_state(v);
	if (v->live_ti)
		dm_table_event(v->live_ti->table);
}

static const char *const invalid_reasons[] = {
	[COWFILE_INVALID_NONE] = "-",
	[COWFILE_INVALID_STORE_FULL] = "store_full",
	[COWFILE_INVALID_STORE_IO] = "store_io_error",
	[COWFILE_INVALID_METADATA] = "metadata_error",
	[COWFILE_INVALID_ORIGIN_IO] = "origin_io_error",
	[COWFILE_INVALID_ORIGIN_CHANGED] = "origin_changed",
};

const char *volume_invalid_reason(unsigned int reason)
{
	return reason < ARRAY_SIZE(invalid_reasons) ? invalid_reasons[reason] : "unknown";
}

/*
 * The held snapshot can no longer show its instant. The volume keeps
 * working; image reads fail from now on.
 */
void volume_invalidate(struct cowfile_volume *v, unsigned int reason)
{
	lockdep_assert_held(&v->state_lock);
	if (v->snap_state != COWFILE_SNAP_ACTIVE)
		return;
	DMWARN("snapshot of epoch %llu invalidated: %s",
	       (unsigned long long)v->snap_epoch, volume_invalid_reason(reason));
	WRITE_ONCE(v->snap_state, COWFILE_SNAP_INVALID);
	v->invalid_reason = reason;
	if (v->mode != COWFILE_MODE_LOST && volume_write_sb(v))
		DMERR("cannot record the invalid snapshot in the store superblock");
	volume_event(v);
}

/*
 * A change may have been missed (the chunk map could not be written): stop
 * tracking, let the volume run, and make the next load start a new
 * generation so the next backup is full.
 */
void volume_tracking_lost(struct cowfile_volume *v)
{
	lockdep_assert_held(&v->state_lock);
	if (v->mode == COWFILE_MODE_LOST)
		return;
	DMERR("chunk map write failed: change tracking lost, next backup must be full");
	if (v->snap_state == COWFILE_SNAP_ACTIVE) {
		WRITE_ONCE(v->snap_state, COWFILE_SNAP_INVALID);
		v->invalid_reason = COWFILE_INVALID_METADATA;
	}
	WRITE_ONCE(v->mode, COWFILE_MODE_LOST);
	if (volume_write_sb(v))
		DMERR("cannot record lost tracking in the store superblock");
	volume_event(v);
}

/*
 * crc32c of the origin's first chunk, where ext4 and xfs keep their
 * superblock: a read-write mount changes it. Recorded at a clean unload and
 * compared at the next load, it tells that the origin was written while it
 * was not tracked. Blocks of a store on the origin are left out: the kernel
 * writes those itself.
 */
static int origin_first_chunk_sum(struct cowfile_volume *v, u32 *sum)
{
	sector_t len = min(v->chunk_sectors, v->origin_sectors);
	sector_t s;
	void *buf;
	int r = 0;

	buf = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	*sum = ~0U;
	for (s = 0; s + COWFILE_BLOCK_SECTORS <= len && !r; s += COWFILE_BLOCK_SECTORS) {
		if (v->store_on_origin &&
		    store_ranges_overlap(v->store_ranges, v->store.nr_extents, s,
					 COWFILE_BLOCK_SECTORS))
			continue;
		r = cowfile_block_io(v->origin_bdev, s, buf, REQ_OP_READ);
		if (!r)
			*sum = crc32c(*sum, buf, COWFILE_BLOCK_SIZE);
	}
	kfree(buf);
	return r;
}

static void start_generation(struct cowfile_volume *v)
{
	uuid_gen(&v->generation);
	v->epoch++;
	v->generation_epoch = v->epoch;
	bitmap_zero(v->marked, v->nr_chunks);
	v->nr_marked = 0;
	WRITE_ONCE(v->mode, COWFILE_MODE_TRACKING);
}

/*
 * At load, when the origin may hold a change the store does not show: the
 * held snapshot cannot be trusted and the next backup must be full.
 */
static void restart_generation(struct cowfile_volume *v, unsigned int reason)
{
	if (v->snap_state == COWFILE_SNAP_ACTIVE) {
		v->snap_state = COWFILE_SNAP_INVALID;
		v->invalid_reason = reason;
	}
	start_generation(v);
}

/* Device suspended. Closes the open epoch and holds its image. */
int volume_snapshot(struct cowfile_volume *v)
{
	int r;

	mutex_lock(&v->state_lock);
	if (v->mode == COWFILE_MODE_LOST) {
		DMWARN("snapshot refused: tracking lost, send new_generation first");
		r = -EIO;
		goto out;
	}
	if (v->snap_state != COWFILE_SNAP_NONE) {
		DMWARN("snapshot refused: a snapshot is already held, release it first");
		r = -EBUSY;
		goto out;
	}
	if (v->epoch + 1 >= U32_MAX) {
		DMWARN("snapshot refused: epoch counter exhausted, create a new store");
		r = -EOVERFLOW;
		goto out;
	}
	v->snap_epoch = v->epoch;
	v->epoch++;
	v->snap_state = COWFILE_SNAP_ACTIVE;
	v->invalid_reason = COWFILE_INVALID_NONE;
	v->slots_used = 0;
	v->low_water_signalled = false;
	r = volume_write_sb(v);
	if (r) {
		DMERR("snapshot failed: cannot write the store superblock");
		v->epoch--;
		v->snap_state = COWFILE_SNAP_NONE;
		goto out;
	}
	/* Nothing is written in the new epoch yet, and so nothing copied. */
	bitmap_zero(v->marked, v->nr_chunks);
	v->nr_marked = 0;
	volume_event(v);
out:
	mutex_unlock(&v->state_lock);
	return r;
}

int volume_release(struct cowfile_volume *v)
{
	unsigned int old_state, old_reason;
	int r;

	mutex_lock(&v->state_lock);
	if (v->snap_state == COWFILE_SNAP_NONE) {
		DMWARN("release refused: no snapshot held");
		r = -EINVAL;
		goto out;
	}
	if (atomic_read(&v->images)) {
		DMWARN("release refused: a cowfile-snap image device still exists");
		r = -EBUSY;
		goto out;
	}
	old_state = v->snap_state;
	old_reason = v->invalid_reason;
	WRITE_ONCE(v->snap_state, COWFILE_SNAP_NONE);
	v->invalid_reason = COWFILE_INVALID_NONE;
	v->slots_used = 0;
	r = volume_write_sb(v);
	if (r) {
		DMERR("release failed: cannot write the store superblock");
		v->snap_state = old_state;
		v->invalid_reason = old_reason;
		goto out;
	}
	volume_event(v);
out:
	mutex_unlock(&v->state_lock);
	return r;
}

/* Device suspended, no valid snapshot held. */
int volume_new_generation(struct cowfile_volume *v)
{
	uuid_t old_generation;
	u64 old_epoch, old_generation_epoch;
	enum cowfile_mode old_mode;
	int r;

	mutex_lock(&v->state_lock);
	if (v->snap_state == COWFILE_SNAP_ACTIVE) {
		DMWARN("new_generation refused: release the held snapshot first");
		r = -EBUSY;
		goto out;
	}
	old_generation = v->generation;
	old_epoch = v->epoch;
	old_generation_epoch = v->generation_epoch;
	old_mode = v->mode;
	start_generation(v);
	r = volume_write_sb(v);
	if (r) {
		DMERR("new_generation failed: cannot write the store superblock");
		v->generation = old_generation;
		v->epoch = old_epoch;
		v->generation_epoch = old_generation_epoch;
		v->mode = old_mode;
		/* The marks are gone: chunks get marked again on their next write. */
		goto out;
	}
	DMINFO("new generation %pUb from epoch %llu", &v->generation,
	       (unsigned long long)v->epoch);
	volume_event(v);
out:
	mutex_unlock(&v->state_lock);
	return r;
}

/* grow <sector>:<blocks>...: append extents user space allocated. */
int volume_grow(struct cowfile_volume *v, unsigned int argc, char **argv,
		char **error)
{
	struct store_extent *ext;
	unsigned int i;
	int r;

	if (!argc) {
		*error = "grow needs <sector>:<blocks> arguments";
		return -EINVAL;
	}
	ext = kcalloc(argc, sizeof(*ext), GFP_KERNEL);
	if (!ext)
		return -ENOMEM;
	for (i = 0; i < argc; i++) {
		unsigned long long sector, blocks;
		char dummy;

		if (sscanf(argv[i], "%llu:%llu%c", &sector, &blocks, &dummy) != 2) {
			*error = "grow argument is not <sector>:<blocks>";
			r = -EINVAL;
			goto out;
		}
		ext[i].sector = sector;
		ext[i].blocks = blocks;
	}
	mutex_lock(&v->state_lock);
	r = store_append_extents(&v->store, ext, argc, error);
	if (!r) {
		r = volume_write_sb(v);
		if (r)
			*error = "Cannot write the store superblock";
		if (v->store.total_slots &&
		    v->slots_used * 100 < v->low_water * v->store.total_slots)
			v->low_water_signalled = false;
		volume_event(v);
	}
	mutex_unlock(&v->state_lock);
out:
	kfree(ext);
	return r;
}

size_t volume_core_bytes(struct cowfile_volume *v)
{
	size_t bitmap = BITS_TO_LONGS(v->nr_chunks) * sizeof(long);

	return sizeof(*v) + 2 * bitmap + COWFILE_BLOCK_SIZE +
	       v->store.table_blocks * COWFILE_EXTENTS_PER_BLOCK * sizeof(struct store_extent) +
	       v->store.nr_extents * (sizeof(struct slot_run) +
				      (v->store_ranges ? sizeof(struct store_extent) : 0));
}

/*
 * Rebuilds the in-core state from the chunk map: which chunks are marked in
 * the open epoch (and so copied, while a snapshot is held), and how many
 * copy slots are taken. A block that cannot be trusted is replaced; the
 * changes it recorded are lost, so a new generation starts.
 */
static int scan_chunk_map(struct cowfile_volume *v, char **error)
{
	struct cowfile_store *s = &v->store;
	u32 epoch = v->epoch;
	bool holding = v->snap_state == COWFILE_SNAP_ACTIVE;
	u64 bad_blocks = 0, bad_entries = 0, idx;

	store_prefetch_map(s);
	for (idx = 0; idx < s->map_blocks; idx++) {
		struct cowfile_map_block *mb;
		struct dm_buffer *b;
		unsigned int j;

		mb = store_map_block(s, idx, &b);
		if (PTR_ERR_OR_ZERO(mb) == -EILSEQ) {
			bad_blocks++;
			mb = store_reset_map_block(s, idx, &b);
		}
		if (IS_ERR(mb)) {
			*error = "Cannot read the store's chunk map";
			return PTR_ERR(mb);
		}
		for (j = 0; j < COWFILE_MAP_ENTRIES_PER_BLOCK; j++) {
			u64 chunk = idx * COWFILE_MAP_ENTRIES_PER_BLOCK + j;
			u32 last = le32_to_cpu(mb->entries[j].last_epoch);
			u32 slot = le32_to_cpu(mb->entries[j].slot);

			if (chunk >= v->nr_chunks)
				break;
			if (last > epoch) {
				bad_entries++;
				continue;
			}
			if (last != epoch)
				continue;
			__set_bit(chunk, v->marked);
			v->nr_marked++;
			if (holding)
				v->slots_used = max_t(u64, v->slots_used, slot);
		}
		dm_bufio_release(b);
		cond_resched();
	}
	if (holding && v->slots_used > s->total_slots)
		bad_entries++;
	if (bad_blocks || bad_entries) {
		DMWARN("store chunk map: %llu blocks and %llu entries could not be trusted: new generation",
		       (unsigned long long)bad_blocks, (unsigned long long)bad_entries);
		restart_generation(v, COWFILE_INVALID_METADATA);
		if (store_commit_map(s)) {
			*error = "Cannot rewrite the store's chunk map";
			return -EIO;
		}
	}
	return 0;
}

/*
 * At load: tracking lost before, or (after a clean unload) the origin
 * written while it was not tracked.
 */
static int check_unrecorded_changes(struct cowfile_volume *v, u32 flags,
				    char **error)
{
	u32 sum;
	int r;

	if (flags & COWFILE_SB_TRACKING_LOST) {
		DMWARN("store records lost tracking: starting a new generation");
		restart_generation(v, COWFILE_INVALID_METADATA);
		return 0;
	}
	if (!(flags & COWFILE_SB_CLEAN) || !(flags & COWFILE_SB_ORIGIN_SUM))
		return 0;
	r = origin_first_chunk_sum(v, &sum);
	if (r) {
		*error = "Cannot read the origin's first chunk";
		return r;
	}
	if (sum != le32_to_cpu(v->store.sb->origin_sum)) {
		DMWARN("origin written while not tracked (its first chunk changed since the clean unload): starting a new generation");
		restart_generation(v, COWFILE_INVALID_ORIGIN_CHANGED);
	}
	return 0;
}

static struct cowfile_volume *volume_create(struct block_device *origin,
					    sector_t origin_sectors,
					    struct block_device *store_bdev,
					    sector_t sb_sector, char **error)
{
	struct cowfile_volume *v;
	struct cowfile_superblock *sb;
	unsigned int i;
	u32 flags;
	int r;

	v = kzalloc(sizeof(*v), GFP_KERNEL);
	if (!v) {
		*error = "Cannot allocate volume";
		return ERR_PTR(-ENOMEM);
	}
	refcount_set(&v->refs, 1);
	atomic_set(&v->images, 0);
	mutex_init(&v->state_lock);
	spin_lock_init(&v->lock);
	bio_list_init(&v->deferred_writes);
	bio_list_init(&v->deferred_reads);
	INIT_WORK(&v->write_work, cow_write_worker);
	INIT_WORK(&v->read_work, cow_read_worker);
	init_waitqueue_head(&v->reads_wait);
	for (i = 0; i < COWFILE_READ_BUCKETS; i++)
		atomic_set(&v->reads_inflight[i], 0);
	v->origin_bdev = origin;
	v->origin_devt = origin->bd_dev;
	v->origin_sectors = origin_sectors;
	v->low_water = COWFILE_DEFAULT_LOW_WATER;

	r = store_open(&v->store, store_bdev, sb_sector, error);
	if (r)
		goto bad_store;
	sb = v->store.sb;
	if (le64_to_cpu(sb->origin_sectors) != origin_sectors) {
		DMERR("store made for an origin of %llu sectors, table is %llu",
		      (unsigned long long)le64_to_cpu(sb->origin_sectors),
		      (unsigned long long)origin_sectors);
		*error = "Store belongs to an origin of another size";
		r = -EINVAL;
		goto bad;
	}
	v->chunk_sectors = le32_to_cpu(sb->chunk_sectors);
	v->chunk_shift = __ffs(v->chunk_sectors);
	v->nr_chunks = DIV_ROUND_UP_ULL(origin_sectors, v->chunk_sectors);
	if (v->store.map_blocks * COWFILE_MAP_ENTRIES_PER_BLOCK < v->nr_chunks) {
		*error = "Store chunk map too small for the origin";
		r = -EINVAL;
		goto bad;
	}

	import_uuid(&v->generation, sb->generation_uuid);
	v->epoch = le64_to_cpu(sb->epoch);
	v->generation_epoch = le64_to_cpu(sb->generation_epoch);
	v->snap_state = le32_to_cpu(sb->snap_state);
	v->invalid_reason = le32_to_cpu(sb->snap_invalid_reason);
	v->snap_epoch = le64_to_cpu(sb->snap_epoch);
	v->slots_used = le64_to_cpu(sb->data_slots_used);
	flags = le32_to_cpu(sb->flags);
	if (!v->epoch || v->epoch >= U32_MAX || v->generation_epoch > v->epoch ||
	    (v->snap_state == COWFILE_SNAP_ACTIVE && v->snap_epoch + 1 != v->epoch)) {
		*error = "Inconsistent epochs in store superblock";
		r = -EINVAL;
		goto bad;
	}
	if (v->snap_state != COWFILE_SNAP_ACTIVE)
		v->slots_used = 0;

	v->marked = bitmap_zalloc(v->nr_chunks, GFP_KERNEL);
	v->pending = bitmap_zalloc(v->nr_chunks, GFP_KERNEL);
	if (!v->marked || !v->pending) {
		*error = "Cannot allocate change bitmaps";
		r = -ENOMEM;
		goto bad;
	}
	r = scan_chunk_map(v, error);
	if (r)
		goto bad;
	if (store_bdev == origin) {
		v->store_on_origin = true;
		v->store_ranges = store_sorted_ranges(&v->store);
		if (!v->store_ranges) {
			*error = "Cannot allocate store ranges";
			r = -ENOMEM;
			goto bad;
		}
	}
	r = check_unrecorded_changes(v, flags, error);
	if (r)
		goto bad;

	v->kcopyd = dm_kcopyd_client_create(NULL);
	if (IS_ERR(v->kcopyd)) {
		r = PTR_ERR(v->kcopyd);
		v->kcopyd = NULL;
		*error = "Cannot create kcopyd client";
		goto bad;
	}
	v->batch = cow_batch_alloc(v);
	if (!v->batch) {
		*error = "Cannot allocate copy batch";
		r = -ENOMEM;
		goto bad;
	}
	v->wq = alloc_workqueue("kcowfiled", WQ_MEM_RECLAIM | COWFILE_WQ_PERCPU, 0);
	if (!v->wq) {
		*error = "Cannot create workqueue";
		r = -ENOMEM;
		goto bad;
	}

	/* The store is in use from now on: not clean until unloaded. */
	sb->flags &= ~cpu_to_le32(COWFILE_SB_CLEAN | COWFILE_SB_ORIGIN_SUM);
	mutex_lock(&v->state_lock);
	r = volume_write_sb(v);
	mutex_unlock(&v->state_lock);
	if (r) {
		*error = "Cannot write the store superblock";
		goto bad;
	}
	return v;

bad:
	store_close(&v->store);
bad_store:
	if (v->wq)
		destroy_workqueue(v->wq);
	if (v->kcopyd)
		dm_kcopyd_client_destroy(v->kcopyd);
	kfree(v->batch);
	kvfree(v->store_ranges);
	bitmap_free(v->marked);
	bitmap_free(v->pending);
	kfree(v);
	return ERR_PTR(r);
}

static void volume_destroy(struct cowfile_volume *v)
{
	u32 sum;

	flush_workqueue(v->wq);
	destroy_workqueue(v->wq);
	dm_kcopyd_client_destroy(v->kcopyd);

	mutex_lock(&v->state_lock);
	if (store_commit_map(&v->store)) {
		DMERR("cannot write the chunk map at unload: tracking lost");
		v->mode = COWFILE_MODE_LOST;
	}
	v->store.sb->flags |= cpu_to_le32(COWFILE_SB_CLEAN);
	if (v->mode == COWFILE_MODE_TRACKING && !origin_first_chunk_sum(v, &sum)) {
		v->store.sb->origin_sum = cpu_to_le32(sum);
		v->store.sb->flags |= cpu_to_le32(COWFILE_SB_ORIGIN_SUM);
	}
	if (volume_write_sb(v))
		DMERR("cannot mark the store clean at unload");
	mutex_unlock(&v->state_lock);

	store_close(&v->store);
	kfree(v->batch);
	kvfree(v->store_ranges);
	bitmap_free(v->marked);
	bitmap_free(v->pending);
	kfree(v);
}

/*
 * The volume for a store, shared by every table instance that names it. A
 * store can serve one origin only.
 */
struct cowfile_volume *volume_get(struct block_device *origin,
				  sector_t origin_sectors,
				  struct block_device *store_bdev,
				  sector_t sb_sector, char **error)
{
	struct cowfile_volume *v;

	mutex_lock(&volumes_lock);
	list_for_each_entry(v, &volumes, list) {
		bool same_store = v->store.bdev == store_bdev &&
				  v->store.sb_sector == sb_sector;

		if (same_store && v->origin_bdev != origin) {
			*error = "Store is in use by another cowfile device";
			v = ERR_PTR(-EBUSY);
			goto out;
		}
		if (!same_store && v->origin_bdev == origin) {
			*error = "Origin is tracked with another store";
			v = ERR_PTR(-EBUSY);
			goto out;
		}
		if (same_store) {
			if (v->origin_sectors != origin_sectors) {
				*error = "Table size differs from the loaded volume";
				v = ERR_PTR(-EINVAL);
				goto out;
			}
			refcount_inc(&v->refs);
			goto out;
		}
	}
	v = volume_create(origin, origin_sectors, store_bdev, sb_sector, error);
	if (!IS_ERR(v))
		list_add(&v->list, &volumes);
out:
	mutex_unlock(&volumes_lock);
	return v;
}

void volume_put(struct cowfile_volume *v)
{
	mutex_lock(&volumes_lock);
	if (!refcount_dec_and_test(&v->refs)) {
		mutex_unlock(&volumes_lock);
		return;
	}
	list_del(&v->list);
	mutex_unlock(&volumes_lock);
	volume_destroy(v);
}

/* For cowfile-snap: takes an image reference on the origin's volume. */
struct cowfile_volume *volume_get_image(dev_t origin, char **error)
{
	struct cowfile_volume *v;

	mutex_lock(&volumes_lock);
	list_for_each_entry(v, &volumes, list) {
		if (v->origin_devt != origin)
			continue;
		mutex_lock(&v->state_lock);
		if (v->snap_state != COWFILE_SNAP_ACTIVE) {
			*error = v->snap_state == COWFILE_SNAP_NONE ?
				 "No snapshot held on this origin" :
				 "The held snapshot is invalid";
			mutex_unlock(&v->state_lock);
			v = ERR_PTR(-ENOENT);
			goto out;
		}
		atomic_inc(&v->images);
		refcount_inc(&v->refs);
		mutex_unlock(&v->state_lock);
		goto out;
	}
	*error = "No cowfile device over this origin";
	v = ERR_PTR(-ENODEV);
out:
	mutex_unlock(&volumes_lock);
	return v;
}

void volume_put_image(struct cowfile_volume *v)
{
	atomic_dec(&v->images);
	volume_put(v);
}
