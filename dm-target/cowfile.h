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
#include <linux/dm-kcopyd.h>
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

/* A run of data slots, each chunk_sectors long, contiguous on the device. */
struct slot_run {
	u64 first_slot;
	u64 nr_slots;
	sector_t sector;
};

struct cowfile_store {
	struct block_device *bdev;
	sector_t sb_sector;
	u8 uuid[16];
	struct cowfile_superblock *sb;	/* in-core copy, one block */
	struct mutex sb_lock;		/* serialises superblock writes */

	struct store_extent *extents;	/* by logical block */
	unsigned int nr_extents;
	unsigned int table_blocks;	/* extent table capacity */

	struct slot_run *slots;
	unsigned int nr_slot_runs;
	u64 total_slots;

	u64 map_start, map_blocks, data_start, store_blocks;
	struct dm_bufio_client *bufio;	/* chunk map blocks */
};

enum cowfile_mode {
	COWFILE_MODE_TRACKING,
	COWFILE_MODE_LOST,	/* a change may have been missed */
};

struct cowfile_volume {
	struct list_head list;		/* in the module's registry */
	refcount_t refs;		/* cowfile table instances */
	atomic_t images;		/* cowfile-snap instances */

	dev_t origin_devt;
	struct block_device *origin_bdev;
	sector_t origin_sectors;
	sector_t chunk_sectors;
	unsigned int chunk_shift;
	u64 nr_chunks;

	struct cowfile_store store;
	bool store_on_origin;		/* store extents live on the origin */
	struct store_extent *store_ranges; /* the store's sectors on the origin, sorted */

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
	u64 slots_used;
	unsigned int low_water;		/* percent of slots */
	bool low_water_signalled;

	/* Chunks whose mark (and copy) for the open epoch is durable. */
	unsigned long *marked;
	u64 nr_marked;
	unsigned long *pending;		/* in the batch being committed */

	/* Writes waiting for their chunks to be marked/copied. */
	spinlock_t lock;
	struct bio_list deferred_writes;
	struct bio_list deferred_reads;	/* image reads of copied chunks */
	struct workqueue_struct *wq;
	struct work_struct write_work;
	struct work_struct read_work;
	struct dm_kcopyd_client *kcopyd;
	struct cow_batch *batch;	/* the write worker's, one at a time */

	/*
	 * Image reads in flight to the origin, by chunk hash. A first write
	 * waits until no image read of its chunk is in flight before it goes
	 * down, so an image read never returns the new data.
	 */
#define COWFILE_READ_BUCKETS 64
	atomic_t reads_inflight[COWFILE_READ_BUCKETS];
	wait_queue_head_t reads_wait;

	/* The resumed table instance: dm events fire on it. */
	struct dm_target *live_ti;

	/* Counters for status */
	atomic64_t cow_copies;
	atomic64_t commits;
};

static inline u64 chunk_of(struct cowfile_volume *v, sector_t sector)
{
	return sector >> v->chunk_shift;
}

static inline unsigned int read_bucket(u64 chunk)
{
	return hash_64(chunk, 6);
}

/* store.c */
int cowfile_block_io(struct block_device *bdev, sector_t sector, void *buf,
		     blk_opf_t opf);
int store_open(struct cowfile_store *s, struct block_device *bdev,
	       sector_t sb_sector, char **error);
void store_close(struct cowfile_store *s);
int store_write_sb(struct cowfile_store *s);
int store_logical_to_sector(struct cowfile_store *s, u64 block, sector_t *sector);
sector_t store_slot_sector(struct cowfile_store *s, u64 slot);
int store_append_extents(struct cowfile_store *s, struct store_extent *new,
			 unsigned int n, char **error);
void *store_map_block(struct cowfile_store *s, u64 index,
		      struct dm_buffer **bp);
void *store_cached_map_block(struct cowfile_store *s, u64 index,
			     struct dm_buffer **bp);
void *store_reset_map_block(struct cowfile_store *s, u64 index,
			    struct dm_buffer **bp);
void store_prefetch_map(struct cowfile_store *s);
struct store_extent *store_sorted_ranges(struct cowfile_store *s);
bool store_ranges_cover(struct store_extent *ranges, unsigned int n,
			sector_t start, sector_t len);
int store_commit_map(struct cowfile_store *s);
bool store_ranges_overlap(struct store_extent *ranges, unsigned int n,
			  sector_t start, sector_t len);

/* volume.c */
struct cowfile_volume *volume_get(struct block_device *origin,
				  sector_t origin_sectors,
				  struct block_device *store_bdev,
				  sector_t sb_sector, char **error);
void volume_put(struct cowfile_volume *v);
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

/* cow.c */
struct cow_batch *cow_batch_alloc(struct cowfile_volume *v);
void cow_write_worker(struct work_struct *work);
void cow_read_worker(struct work_struct *work);
void cow_defer_write(struct cowfile_volume *v, struct bio *bio);
void cow_defer_read(struct cowfile_volume *v, struct bio *bio);
int cow_remap_copied_read(struct cowfile_volume *v, struct bio *bio, bool may_block);

/* target glue */
int cowfile_target_init(void);
void cowfile_target_exit(void);
int cowfile_snap_target_init(void);
void cowfile_snap_target_exit(void);


#endif
