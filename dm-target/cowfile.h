/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-cowfile internals shared by the module's files.
 *
 * One struct cowfile_volume holds the state of a tracked volume: its store,
 * the in-core "marked in the open epoch" bitmap and the held snapshot. Table
 * instances of the "cowfile" target over the same store share it (a reload
 * loads the new table while the old one still runs), and "cowfile-snap"
 * finds it by the origin device.
 */
#ifndef DM_COWFILE_H
#define DM_COWFILE_H

#include <linux/device-mapper.h>
#include <linux/dm-bufio.h>
#include <linux/workqueue.h>
#include <linux/uuid.h>

#include "compat.h"
#include "uapi/linux/dm-cowfile.h"

#define DM_MSG_PREFIX "cowfile"

/* A run of logical store blocks that is contiguous on the store device. */
struct store_extent {
	u64 logical;		/* first logical block */
	u64 blocks;
	sector_t sector;	/* first sector on the store device */
};

/* A run of 4 KiB data slots, contiguous on the device. */
struct slot_run {
	u64 first_slot;
	u64 nr_slots;
	sector_t sector;
};

/*
 * Where the store's data slots are and, with the store on the origin, which
 * origin sectors belong to the store. Immutable once published: grow builds
 * a new one and swaps it in with RCU, so map() and image reads use it
 * under rcu_read_lock() and never see it change or go away.
 */
struct store_layout {
	struct rcu_head rcu;
	u64 total_slots;
	unsigned int nr_slot_runs;
	unsigned int nr_ranges;		/* 0 unless the store is on the origin */
	struct slot_run *slots;		/* by first_slot */
	struct store_extent *ranges;	/* by sector */
};

struct cowfile_store {
	struct block_device *bdev;
	sector_t sb_sector;
	u8 uuid[16];
	bool on_origin;			/* extents are sectors of the origin */
	sector_t origin_sectors;	/* ... which they must stay inside */
	struct cowfile_superblock *sb;	/* in-core copy, one block */
	struct mutex sb_lock;		/* serialises superblock writes */
	struct bio_set bios;		/* metadata I/O, never fs_bio_set */

	/*
	 * By logical block. Only grow appends, under the volume's state_lock;
	 * the first meta_extents (superblock, extent table, chunk map) never
	 * change, so chunk map lookups read them without a lock.
	 */
	struct store_extent *extents;
	unsigned int nr_extents;
	unsigned int meta_extents;
	unsigned int table_blocks;	/* extent table capacity */
	u64 total_slots;		/* layout's, for writers under state_lock */
	struct store_layout __rcu *layout;

	u64 map_start, map_blocks, data_start, store_blocks;
	u64 index_start, index_blocks;	/* the index area (index.c) */
	bool index_moved;		/* data_start moved at load for it */
	struct dm_bufio_client *bufio;	/* chunk map blocks */
	struct mutex validate_lock;	/* first check of a map block */
};

enum cowfile_mode {
	COWFILE_MODE_TRACKING,
	COWFILE_MODE_LOST,	/* a change may have been missed */
};

/*
 * Image reads in flight to the origin are counted by chunk hash: a first
 * write to a chunk waits until no image read of its bucket is in flight
 * before it goes down. Enough buckets that backup readers rarely share one
 * with the chunk a writer waits on.
 */
#define COWFILE_READ_BUCKET_BITS	10
#define COWFILE_READ_BUCKETS		(1U << COWFILE_READ_BUCKET_BITS)

struct cow_index;

struct cowfile_volume {
	struct list_head list;		/* in the module's registry */
	refcount_t refs;		/* table instances of both targets */
	unsigned int tables;		/* cowfile instances, under volumes_lock */
	atomic_t images;		/* cowfile-snap instances */
	struct mapped_device *md;	/* the one device whose tables share it */

	dev_t origin_devt;
	struct block_device *origin_bdev;
	sector_t origin_sectors;
	sector_t chunk_sectors;
	unsigned int chunk_shift;
	u64 nr_chunks;

	struct cowfile_store store;
	/* Our own hold on the store device: images outlive the tables. */
	struct cowfile_shared_bdev store_hold;

	/*
	 * State below changes only in the worker or under state_lock with the
	 * device suspended; map() reads it locklessly.
	 */
	struct mutex state_lock;
	enum cowfile_mode mode;
	u64 epoch;
	u64 generation_epoch;
	uuid_t generation;
	unsigned int snap_state;	/* COWFILE_SNAP_* */
	unsigned int invalid_reason;	/* COWFILE_INVALID_* */
	u64 snap_epoch;
	unsigned int low_water;		/* percent of slots */
	bool low_water_signalled;
	bool suspended;			/* no table of the device is running */
	bool activated;			/* first resume done: the store is ours */
	bool detached;			/* the last cowfile table is gone */
	u32 load_flags;			/* superblock flags found at load */
	u64 bad_map_blocks;		/* found at load, replaced at activation */

	/*
	 * Chunks whose mark (and copy) for the open epoch is durable. A chunk
	 * is pending from the time the worker takes it into a batch until no
	 * image read that found it unmarked is still in flight: a write to a
	 * pending chunk waits in the worker even when it is marked.
	 */
	unsigned long *marked;
	u64 nr_marked;
	unsigned long *pending;

	/*
	 * The held snapshot's log (cow.c, docs/STORE-LOG.md). The index maps
	 * an origin block to the slot of its copy, COWFILE_COPYING while a
	 * batch copies it (index.c). The rest changes in the worker or under
	 * state_lock.
	 */
	struct cow_index *index;
	u64 nr_copied;
	u64 log_end;			/* slots in use */
	u64 log_checkpoint;		/* as the superblock last recorded it */
	u64 log_trust_limit;		/* the checkpoint never passes it */
	u64 log_seq;			/* of the last record block written */
	u64 group_slot;			/* open group, or COWFILE_NO_GROUP */
	unsigned int group_next;	/* its record slot the next write takes */
	bool group_dirty;		/* records not yet queued for writing */
	struct cowfile_log_block *group;	/* its records, one block */

	/* Writes waiting for their chunks to be marked/copied. */
	spinlock_t lock;
	struct bio_list deferred_writes;
	struct workqueue_struct *wq;
	struct work_struct write_work;
	struct cow_batch *batch;	/* the write worker's, one at a time */

	atomic_t reads_inflight[COWFILE_READ_BUCKETS];
	wait_queue_head_t reads_wait;

	/* The resumed table instance: dm events fire on it. */
	struct dm_target *live_ti;

	/* Counters for status */
	atomic64_t cow_copies;
	atomic64_t commits;
};

#define COWFILE_NO_GROUP	U64_MAX
/* What the index answers for a block that has no copy (yet). */
#define COWFILE_INDEX_UNKNOWN	(U64_MAX - 2)	/* not in core: ask again, blocking */
#define COWFILE_COPYING		(U64_MAX - 1)	/* a batch is copying it */
#define COWFILE_NOT_COPIED	U64_MAX

static inline u64 chunk_of(struct cowfile_volume *v, sector_t sector)
{
	return sector >> v->chunk_shift;
}

static inline unsigned int read_bucket(u64 chunk)
{
	return hash_64(chunk, COWFILE_READ_BUCKET_BITS);
}

/* store.c */
int cowfile_block_io(struct cowfile_store *s, struct block_device *bdev,
		     sector_t sector, void *buf, blk_opf_t opf);
int cowfile_flush(struct cowfile_store *s, struct block_device *bdev);
int store_open(struct cowfile_store *s, struct block_device *bdev,
	       sector_t sb_sector, char **error);
void store_close(struct cowfile_store *s);
int store_write_sb(struct cowfile_store *s);
sector_t store_slot_sector(struct store_layout *l, u64 slot);
struct store_layout *store_layout_build(struct cowfile_store *s,
					unsigned int nr_extents, char **error);
void store_layout_publish(struct cowfile_store *s, struct store_layout *l);
int store_check_extent(struct cowfile_store *s, u64 sector, u64 blocks,
		       char **error);
int store_write_extent_table(struct cowfile_store *s, unsigned int first,
			     unsigned int nr_extents);
void store_seal_log_block(struct cowfile_store *s, void *block, u64 slot);
const char *store_check_log_block(struct cowfile_store *s, const void *block, u64 slot);
void *store_map_block(struct cowfile_store *s, u64 index,
		      struct dm_buffer **bp);
void *store_cached_map_block(struct cowfile_store *s, u64 index,
			     struct dm_buffer **bp);
void *store_reset_map_block(struct cowfile_store *s, u64 index,
			    struct dm_buffer **bp);
int store_index_sector(struct cowfile_store *s, u64 leaf, sector_t *sector);
void store_prefetch_map(struct cowfile_store *s, u64 first, u64 count);
bool store_ranges_cover(const struct store_layout *l, sector_t start, sector_t len);
bool store_ranges_overlap(const struct store_layout *l, sector_t start, sector_t len);
int store_commit_map(struct cowfile_store *s);

/* volume.c */
struct cowfile_volume *volume_get(struct dm_target *ti, struct block_device *origin,
				  struct block_device *store_bdev,
				  sector_t sb_sector, char **error);
void volume_put(struct cowfile_volume *v);
int volume_activate(struct cowfile_volume *v);
void volume_suspended(struct cowfile_volume *v, bool suspended);
struct cowfile_volume *volume_get_image(dev_t origin, char **error);
void volume_put_image(struct cowfile_volume *v);
const char *volume_invalid_reason(unsigned int reason);
int volume_snapshot(struct cowfile_volume *v);
int volume_release(struct cowfile_volume *v);
int volume_new_generation(struct cowfile_volume *v);
void volume_invalidate(struct cowfile_volume *v, unsigned int reason);
void volume_tracking_lost(struct cowfile_volume *v);
void volume_event(struct cowfile_volume *v);
int volume_grow(struct cowfile_volume *v, unsigned int argc, char **argv,
		char **error);
size_t volume_core_bytes(struct cowfile_volume *v);
void volume_checkpoint(struct cowfile_volume *v);

/* cow.c */
struct cow_batch *cow_batch_alloc(struct cowfile_volume *v);
void cow_batch_free_pages(struct cow_batch *b);
void cow_batch_free(struct cow_batch *b);
size_t cow_batch_bytes(struct cow_batch *b);
void cow_write_worker(struct work_struct *work);
void cow_defer_write(struct cowfile_volume *v, struct bio *bio);
bool cow_blocks_copied(struct cowfile_volume *v, sector_t sector, sector_t len);
int cow_image_run(struct cowfile_volume *v, sector_t sector, sector_t len, bool wait,
		  bool *copied, sector_t *where, sector_t *run);
int cow_replay_log(struct cowfile_volume *v, char **error);

/* index.c */
int cow_index_init(struct cowfile_volume *v);
void cow_index_clear(struct cowfile_volume *v);
void cow_index_destroy(struct cowfile_volume *v);
size_t cow_index_bytes(struct cowfile_volume *v);
u64 cow_index_peek(struct cowfile_volume *v, u64 block);
int cow_index_get(struct cowfile_volume *v, u64 block, u64 *slot);
void cow_index_prefetch(struct cowfile_volume *v, const u64 *blocks, unsigned int n);
int cow_index_claim(struct cowfile_volume *v, u64 block);
void cow_index_publish(struct cowfile_volume *v, u64 block, u64 slot);
int cow_index_add(struct cowfile_volume *v, u64 block, u64 slot);

/* target glue */
int cowfile_target_init(void);
void cowfile_target_exit(void);
int cowfile_snap_target_init(void);
void cowfile_snap_target_exit(void);


#endif
