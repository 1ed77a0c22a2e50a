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
	/* Outside a batch every slot of the log is durable. */
	v->log_checkpoint = min(v->log_end, v->log_trust_limit);
	sb->log_checkpoint = cpu_to_le64(v->log_checkpoint);
	return store_write_sb(&v->store);
}

/* After a batch's flush: later loads need not check the copies so far. */
void volume_checkpoint(struct cowfile_volume *v)
{
	if (volume_write_sb(v))
		DMERR("cannot write the store superblock at a log checkpoint");
}

/* An empty log, for a new snapshot or none; the index is emptied apart. */
static void reset_log(struct cowfile_volume *v)
{
	v->nr_copied = 0;
	v->log_end = 0;
	v->log_checkpoint = 0;
	v->log_trust_limit = U64_MAX;
	v->log_seq = 0;
	v->group_slot = COWFILE_NO_GROUP;
	v->group_next = 0;
	v->group_dirty = false;
	memset(v->group, 0, COWFILE_BLOCK_SIZE);
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
	[COWFILE_INVALID_NO_MEMORY] = "out_of_memory",
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
	struct store_layout *l = rcu_dereference_protected(v->store.layout, true);
	sector_t len = min(v->chunk_sectors, v->origin_sectors);
	sector_t s;
	void *buf;
	int r = 0;

	buf = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	*sum = ~0U;
	for (s = 0; s + COWFILE_BLOCK_SECTORS <= len && !r; s += COWFILE_BLOCK_SECTORS) {
		if (store_ranges_overlap(l, s, COWFILE_BLOCK_SECTORS))
			continue;
		r = cowfile_block_io(&v->store, v->origin_bdev, s, buf, REQ_OP_READ);
		if (!r)
			*sum = crc32c(*sum, buf, COWFILE_BLOCK_SIZE);
	}
	kfree(buf);
	return r;
}

/* Change bitmaps: one bit per chunk, up to U32_MAX chunks (checked at load). */
static size_t chunk_bitmap_bytes(struct cowfile_volume *v)
{
	return BITS_TO_LONGS(v->nr_chunks) * sizeof(long);
}

static void clear_marks(struct cowfile_volume *v)
{
	memset(v->marked, 0, chunk_bitmap_bytes(v));
	v->nr_marked = 0;
}

static int start_generation(struct cowfile_volume *v)
{
	if (v->epoch + 1 >= U32_MAX) {
		DMERR("epoch counter exhausted: create a new store");
		return -EOVERFLOW;
	}
	uuid_gen(&v->generation);
	v->epoch++;
	v->generation_epoch = v->epoch;
	clear_marks(v);
	WRITE_ONCE(v->mode, COWFILE_MODE_TRACKING);
	return 0;
}

/*
 * At load, when the origin may hold a change the store does not show: the
 * held snapshot cannot be trusted and the next backup must be full.
 */
static int restart_generation(struct cowfile_volume *v, unsigned int reason)
{
	if (v->snap_state == COWFILE_SNAP_ACTIVE) {
		v->snap_state = COWFILE_SNAP_INVALID;
		v->invalid_reason = reason;
	}
	return start_generation(v);
}

/*
 * Every table of the device is suspended (postsuspend) or one is about to
 * run (resume). Messages that need a quiet device test this under
 * state_lock: dm_suspended() alone races with a concurrent resume.
 */
void volume_suspended(struct cowfile_volume *v, bool suspended)
{
	mutex_lock(&v->state_lock);
	v->suspended = suspended;
	mutex_unlock(&v->state_lock);
}

/* Device suspended. Closes the open epoch and holds its image. */
int volume_snapshot(struct cowfile_volume *v)
{
	int r;

	mutex_lock(&v->state_lock);
	if (!v->suspended) {
		DMWARN("snapshot refused: suspend the device first");
		r = -EINVAL;
		goto out;
	}
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
	/*
	 * Writes completed before the instant may still sit in the origin's
	 * volatile cache; the image reads uncopied chunks from the origin, so
	 * they must be durable before the snapshot is. The superblock write's
	 * own PREFLUSH covers a store on the origin.
	 */
	if (v->store.bdev != v->origin_bdev) {
		r = cowfile_flush(&v->store, v->origin_bdev);
		if (r) {
			DMERR("snapshot failed: cannot flush the origin");
			goto out;
		}
	}
	v->snap_epoch = v->epoch;
	v->epoch++;
	v->snap_state = COWFILE_SNAP_ACTIVE;
	v->invalid_reason = COWFILE_INVALID_NONE;
	reset_log(v);
	v->low_water_signalled = false;
	r = volume_write_sb(v);
	if (r) {
		DMERR("snapshot failed: cannot write the store superblock");
		v->epoch--;
		v->snap_state = COWFILE_SNAP_NONE;
		goto out;
	}
	/* Nothing is written in the new epoch yet, and so nothing copied. */
	clear_marks(v);
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
	r = volume_write_sb(v);
	if (r) {
		DMERR("release failed: cannot write the store superblock");
		v->snap_state = old_state;
		v->invalid_reason = old_reason;
		goto out;
	}
	/*
	 * No image exists, and map() no longer reads the index (the snapshot
	 * is not active): wait for those that still may, then empty it.
	 */
	synchronize_rcu();
	cow_index_clear(v);
	reset_log(v);
	cow_batch_free_pages(v->batch);
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
	if (!v->suspended) {
		DMWARN("new_generation refused: suspend the device first");
		r = -EINVAL;
		goto out;
	}
	if (v->snap_state == COWFILE_SNAP_ACTIVE) {
		DMWARN("new_generation refused: release the held snapshot first");
		r = -EBUSY;
		goto out;
	}
	old_generation = v->generation;
	old_epoch = v->epoch;
	old_generation_epoch = v->generation_epoch;
	old_mode = v->mode;
	r = start_generation(v);
	if (r)
		goto out;
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

/*
 * grow <sector>:<blocks>...: append extents user space allocated. They
 * count once the superblock naming them is durable; until then nothing
 * uses them, so a failed grow leaves the store as it was and user space
 * may free the blocks.
 */
int volume_grow(struct cowfile_volume *v, unsigned int argc, char **argv,
		char **error)
{
	struct cowfile_store *s = &v->store;
	struct cowfile_superblock *sb = s->sb;
	struct store_layout *layout;
	unsigned int i, first, n;
	u64 blocks = s->store_blocks;
	int r = 0;

	if (!argc) {
		*error = "grow needs <sector>:<blocks> arguments";
		return -EINVAL;
	}
	mutex_lock(&v->state_lock);
	first = s->nr_extents;
	if (argc > s->table_blocks * COWFILE_EXTENTS_PER_BLOCK - first) {
		*error = "Store extent table full";
		r = -ENOSPC;
		goto out;
	}
	/* Entries past nr_extents are unused: fill them, then count them. */
	for (i = 0; i < argc; i++) {
		struct store_extent *e = &s->extents[first + i];
		unsigned long long sector, nr;
		char dummy;

		if (sscanf(argv[i], "%llu:%llu%c", &sector, &nr, &dummy) != 2) {
			*error = "grow argument is not <sector>:<blocks>";
			r = -EINVAL;
			goto out;
		}
		r = store_check_extent(s, sector, nr, error);
		if (r)
			goto out;
		e->sector = sector;
		e->blocks = nr;
		e->logical = blocks;
		if (check_add_overflow(blocks, (u64)nr, &blocks)) {
			*error = "Store would exceed the format's size";
			r = -EINVAL;
			goto out;
		}
	}
	n = first + argc;
	layout = store_layout_build(s, n, error);
	if (IS_ERR(layout)) {
		r = PTR_ERR(layout);
		goto out;
	}
	r = store_write_extent_table(s, first, n);
	if (r) {
		*error = "Cannot write the store extent table";
		goto undo;
	}
	sb->nr_extents = cpu_to_le32(n);
	sb->store_blocks = cpu_to_le64(blocks);
	r = volume_write_sb(v);
	if (r) {
		*error = "Cannot write the store superblock";
		sb->nr_extents = cpu_to_le32(first);
		sb->store_blocks = cpu_to_le64(s->store_blocks);
		goto undo;
	}
	store_layout_publish(s, layout);
	s->nr_extents = n;
	s->store_blocks = blocks;
	if (v->log_end * 100 < (u64)v->low_water * s->total_slots)
		v->low_water_signalled = false;
	volume_event(v);
	goto out;
undo:
	kvfree(layout);
out:
	mutex_unlock(&v->state_lock);
	return r;
}

size_t volume_core_bytes(struct cowfile_volume *v)
{
	struct cowfile_store *s = &v->store;

	/* Called under state_lock: the layout cannot change. */
	return sizeof(*v) + 2 * chunk_bitmap_bytes(v) + 2 * COWFILE_BLOCK_SIZE +
	       s->table_blocks * COWFILE_EXTENTS_PER_BLOCK * sizeof(struct store_extent) +
	       sizeof(struct store_layout) +
	       s->nr_extents * (sizeof(struct slot_run) + sizeof(struct store_extent)) +
	       cow_batch_bytes(v->batch) + cow_index_bytes(v);
}

/*
 * Rebuilds the in-core state from the chunk map: which chunks are marked in
 * the open epoch (and so copied, while a snapshot is held), and how many
 * copy slots are taken. Reads only: blocks that cannot be trusted are
 * counted and replaced at activation, after the superblock says that
 * tracking was lost (a load that fails in between must not leave a valid
 * empty block behind a superblock that still trusts the generation).
 */
#define MAP_PREFETCH_WINDOW 512u /* map blocks */

static int scan_chunk_map(struct cowfile_volume *v, char **error)
{
	struct cowfile_store *s = &v->store;
	u32 epoch = v->epoch;
	u64 bad_entries = 0, idx;

	for (idx = 0; idx < s->map_blocks; idx++) {
		struct cowfile_map_block *mb;
		struct dm_buffer *b;
		unsigned int j;

		/* Reads stay a window ahead of the scan (4 MiB of map). */
		if (idx == 0)
			store_prefetch_map(s, 0, 2 * MAP_PREFETCH_WINDOW);
		else if (idx % MAP_PREFETCH_WINDOW == 0)
			store_prefetch_map(s, idx + MAP_PREFETCH_WINDOW, MAP_PREFETCH_WINDOW);
		mb = store_map_block(s, idx, &b);
		if (PTR_ERR_OR_ZERO(mb) == -EILSEQ) {
			v->bad_map_blocks++;
			continue;
		}
		if (IS_ERR(mb)) {
			*error = "Cannot read the store's chunk map";
			return PTR_ERR(mb);
		}
		for (j = 0; j < COWFILE_MAP_ENTRIES_PER_BLOCK; j++) {
			u64 chunk = idx * COWFILE_MAP_ENTRIES_PER_BLOCK + j;
			u32 last = le32_to_cpu(mb->entries[j].last_epoch);

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
		}
		dm_bufio_release(b);
		cond_resched();
	}
	if (v->bad_map_blocks || bad_entries) {
		DMWARN("store chunk map: %llu blocks and %llu entries could not be trusted: new generation",
		       (unsigned long long)v->bad_map_blocks, (unsigned long long)bad_entries);
		/* Recorded durably at activation, before any block is replaced. */
		v->mode = COWFILE_MODE_LOST;
	}
	return 0;
}

/* Replaces the map blocks scan_chunk_map() could not trust, durably. */
static int reset_bad_map_blocks(struct cowfile_volume *v)
{
	struct cowfile_store *s = &v->store;
	u64 idx;

	for (idx = 0; idx < s->map_blocks; idx++) {
		struct dm_buffer *b;
		void *mb = store_map_block(s, idx, &b);

		if (PTR_ERR_OR_ZERO(mb) == -EILSEQ)
			mb = store_reset_map_block(s, idx, &b);
		if (IS_ERR(mb))
			return PTR_ERR(mb);
		dm_bufio_release(b);
		cond_resched();
	}
	return store_commit_map(s);
}

/*
 * At activation: tracking lost before, or (after a clean unload) the origin
 * written while it was not tracked.
 */
static int check_unrecorded_changes(struct cowfile_volume *v, const char **why)
{
	u32 sum;
	int r;

	if (v->load_flags & COWFILE_SB_TRACKING_LOST) {
		DMWARN("store records lost tracking: starting a new generation");
		return restart_generation(v, COWFILE_INVALID_METADATA);
	}
	if (!(v->load_flags & COWFILE_SB_CLEAN) || !(v->load_flags & COWFILE_SB_ORIGIN_SUM))
		return 0;
	r = origin_first_chunk_sum(v, &sum);
	if (r) {
		*why = "cannot read the origin's first chunk";
		return r;
	}
	if (sum != le32_to_cpu(v->store.sb->origin_sum)) {
		DMWARN("origin written while not tracked (its first chunk changed since the clean unload): starting a new generation");
		return restart_generation(v, COWFILE_INVALID_ORIGIN_CHANGED);
	}
	return 0;
}

/*
 * The first resume of the volume's first table: the old table (if any) is
 * quiesced, so from here on every write goes through us. Only now does the
 * store change: a table that is loaded and never resumed writes nothing
 * but the index area (scratch space: index.c).
 */
int volume_activate(struct cowfile_volume *v)
{
	const char *why = "cannot write the store superblock";
	int r = 0;

	mutex_lock(&v->state_lock);
	if (v->activated)
		goto out;
	if (v->mode == COWFILE_MODE_LOST) {
		/*
		 * Damaged map blocks lose the changes they recorded. Say so
		 * durably (new generation, tracking lost) before replacing
		 * them, so that no crash or failure in between can leave a
		 * valid empty block under the old generation.
		 */
		r = restart_generation(v, COWFILE_INVALID_METADATA);
		if (r) {
			why = "epoch counter exhausted";
			goto out;
		}
		v->mode = COWFILE_MODE_LOST;
		r = volume_write_sb(v);
		v->mode = COWFILE_MODE_TRACKING;
		if (r)
			goto out;
		r = reset_bad_map_blocks(v);
		if (r) {
			why = "cannot rewrite the store's chunk map";
			goto out;
		}
	}
	r = check_unrecorded_changes(v, &why);
	if (r)
		goto out;

	/* The store is in use from now on: not clean until unloaded. */
	v->store.sb->flags &= ~cpu_to_le32(COWFILE_SB_CLEAN | COWFILE_SB_ORIGIN_SUM);
	why = "cannot write the store superblock";
	r = volume_write_sb(v);
	if (!r)
		v->activated = true;
out:
	mutex_unlock(&v->state_lock);
	if (r)
		DMERR("cannot start tracking: %s (error %d)", why, r);
	return r;
}

static void volume_free(struct cowfile_volume *v)
{
	if (v->wq)
		destroy_workqueue(v->wq);
	cow_index_destroy(v);
	kfree(v->group);
	store_close(&v->store);
	cowfile_close_shared(&v->store_hold);
	cow_batch_free(v->batch);
	kvfree(v->marked);
	kvfree(v->pending);
	kfree(v);
}

static struct cowfile_volume *volume_create(struct dm_target *ti,
					    struct block_device *origin,
					    struct block_device *store_bdev,
					    sector_t sb_sector, char **error)
{
	struct cowfile_volume *v;
	struct cowfile_superblock *sb;
	unsigned int i;
	int r;

	v = kzalloc(sizeof(*v), GFP_KERNEL);
	if (!v) {
		*error = "Cannot allocate volume";
		return ERR_PTR(-ENOMEM);
	}
	refcount_set(&v->refs, 1);
	v->tables = 1;
	atomic_set(&v->images, 0);
	v->md = dm_table_get_md(ti->table);
	mutex_init(&v->state_lock);
	spin_lock_init(&v->lock);
	bio_list_init(&v->deferred_writes);
	INIT_WORK(&v->write_work, cow_write_worker);
	init_waitqueue_head(&v->reads_wait);
	for (i = 0; i < COWFILE_READ_BUCKETS; i++)
		atomic_set(&v->reads_inflight[i], 0);
	v->origin_bdev = origin;
	v->origin_devt = origin->bd_dev;
	v->origin_sectors = ti->len;
	v->low_water = COWFILE_DEFAULT_LOW_WATER;
	v->suspended = true;

	/* Image devices may outlive the tables that opened the store device. */
	r = cowfile_open_devt(store_bdev->bd_dev, false, &v->store_hold);
	if (r) {
		*error = "Cannot hold the store device";
		goto bad;
	}
	v->store.on_origin = store_bdev == origin;
	v->store.origin_sectors = v->origin_sectors;
	r = store_open(&v->store, store_bdev, sb_sector, error);
	if (r)
		goto bad;
	sb = v->store.sb;
	if (le64_to_cpu(sb->origin_sectors) != v->origin_sectors) {
		DMERR("store made for an origin of %llu sectors, table is %llu",
		      (unsigned long long)le64_to_cpu(sb->origin_sectors),
		      (unsigned long long)v->origin_sectors);
		*error = "Store belongs to an origin of another size";
		r = -EINVAL;
		goto bad;
	}
	v->chunk_sectors = le32_to_cpu(sb->chunk_sectors);
	v->chunk_shift = __ffs(v->chunk_sectors);
	v->nr_chunks = DIV_ROUND_UP_ULL(v->origin_sectors, v->chunk_sectors);
	if (v->nr_chunks > U32_MAX) {
		*error = "Origin has too many chunks for its chunk size";
		r = -EINVAL;
		goto bad;
	}
	if (div_u64(v->nr_chunks + COWFILE_MAP_ENTRIES_PER_BLOCK - 1,
		    COWFILE_MAP_ENTRIES_PER_BLOCK) > v->store.map_blocks) {
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
	v->load_flags = le32_to_cpu(sb->flags);
	if (!v->epoch || v->epoch >= U32_MAX || v->generation_epoch > v->epoch ||
	    (v->snap_state == COWFILE_SNAP_ACTIVE && v->snap_epoch + 1 != v->epoch)) {
		*error = "Inconsistent epochs in store superblock";
		r = -EINVAL;
		goto bad;
	}
	v->marked = kvzalloc(chunk_bitmap_bytes(v), GFP_KERNEL);
	v->pending = kvzalloc(chunk_bitmap_bytes(v), GFP_KERNEL);
	v->group = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	if (!v->marked || !v->pending || !v->group) {
		*error = "Cannot allocate change bitmaps";
		r = -ENOMEM;
		goto bad;
	}
	if (cow_index_init(v)) {
		*error = "Cannot allocate the index of copies";
		r = -ENOMEM;
		goto bad;
	}
	reset_log(v);
	r = scan_chunk_map(v, error);
	if (r)
		goto bad;
	if (v->store.index_moved && v->snap_state == COWFILE_SNAP_ACTIVE) {
		/* Recorded durably at activation, with the area's place. */
		DMWARN("store made before its index area held a snapshot: its log is gone, snapshot invalid");
		v->snap_state = COWFILE_SNAP_INVALID;
		v->invalid_reason = COWFILE_INVALID_METADATA;
	}
	if (v->snap_state == COWFILE_SNAP_ACTIVE && v->mode == COWFILE_MODE_TRACKING) {
		r = cow_replay_log(v, error);
		if (r == -EILSEQ) {
			/* Recorded durably at activation. */
			DMWARN("store log of the held snapshot cannot be trusted (%s): snapshot invalid",
			       *error);
			v->snap_state = COWFILE_SNAP_INVALID;
			v->invalid_reason = COWFILE_INVALID_METADATA;
			cow_index_clear(v);
			reset_log(v);
			r = 0;
		}
		if (r)
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
	return v;

bad:
	volume_free(v);
	return ERR_PTR(r);
}

/*
 * The last cowfile table is going (it still holds its devices): write the
 * store clean. An image device may keep the volume in memory after this;
 * its reads fail from now on, since no table guards the origin any more.
 */
static void volume_detach(struct cowfile_volume *v)
{
	u32 sum;

	flush_workqueue(v->wq);
	mutex_lock(&v->state_lock);
	WRITE_ONCE(v->detached, true);
	if (!v->activated)
		goto out;	/* never resumed: the store was not touched */
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
out:
	v->live_ti = NULL;
	mutex_unlock(&v->state_lock);
}

/*
 * The volume for a store, shared by every table of the one device that
 * names it (a reload loads the new table while the old one still runs). A
 * store serves one origin and one device.
 */
struct cowfile_volume *volume_get(struct dm_target *ti, struct block_device *origin,
				  struct block_device *store_bdev,
				  sector_t sb_sector, char **error)
{
	struct cowfile_volume *v;

	mutex_lock(&volumes_lock);
	list_for_each_entry(v, &volumes, list) {
		bool same_store = v->store.bdev == store_bdev &&
				  v->store.sb_sector == sb_sector;

		if (same_store && (v->origin_bdev != origin ||
				   v->md != dm_table_get_md(ti->table))) {
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
			if (v->origin_sectors != ti->len) {
				*error = "Table size differs from the loaded volume";
				v = ERR_PTR(-EINVAL);
				goto out;
			}
			refcount_inc(&v->refs);
			v->tables++;
			goto out;
		}
	}
	v = volume_create(ti, origin, store_bdev, sb_sector, error);
	if (!IS_ERR(v))
		list_add(&v->list, &volumes);
out:
	mutex_unlock(&volumes_lock);
	return v;
}

static void volume_unref(struct cowfile_volume *v)
{
	if (refcount_dec_and_test(&v->refs))
		volume_free(v);
}

/*
 * A cowfile table goes. The last one detaches the volume before it leaves
 * the registry, both under volumes_lock: a table loaded meanwhile for the
 * same store waits, then reads the store as this one left it.
 */
void volume_put(struct cowfile_volume *v)
{
	mutex_lock(&volumes_lock);
	if (!--v->tables) {
		volume_detach(v);
		list_del(&v->list);
	}
	mutex_unlock(&volumes_lock);
	volume_unref(v);
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
	volume_unref(v);
}
