// SPDX-License-Identifier: GPL-2.0
/*
 * The deferred paths of the I/O flow.
 *
 * A write (or discard, or write-zeroes) to a chunk not yet marked in the
 * open epoch is held back. The write worker gathers the chunks of every held
 * bio into batches; for each batch it copies the chunks' old data into store
 * slots when a snapshot is held, records the epoch (and slot) of each chunk
 * in the chunk map, makes that durable with one flush, and only then lets
 * the bios go down. Concurrent first writes thus share one commit. Copies
 * are flushed before their map entries are written, so a crash never keeps
 * an entry whose copy it lost.
 *
 * An image read of a chunk that was copied needs its slot from the chunk
 * map. map() finds it when the map block is in dm-bufio's cache (as it is
 * after the copy); otherwise it would take I/O, and the read worker looks it
 * up and sends the read to the store.
 */
#include <linux/bio.h>
#include <linux/slab.h>

#include "cowfile.h"
#include "trace.h"

/*
 * Chunks per commit: while a snapshot is held each is a copy that the
 * batch's writes wait for; without one, a commit only rewrites map
 * entries, and a few map blocks per flush keep a whole-device discard or
 * write-zeroes from taking one flush per 256 chunks.
 */
#define COW_BATCH_COPIES	256
#define COW_BATCH_MARKS		(4 * COWFILE_MAP_ENTRIES_PER_BLOCK)

struct cow_batch {
	struct cowfile_volume *v;
	unsigned int nr;
	u64 chunks[COW_BATCH_MARKS];
	u64 slots[COW_BATCH_MARKS];	/* 1 + slot, 0 when not copied */

	atomic_t copies_left;
	struct completion copies_done;
	bool read_error, write_error;
};

struct cow_batch *cow_batch_alloc(struct cowfile_volume *v)
{
	struct cow_batch *b = kvzalloc(sizeof(*b), GFP_KERNEL);

	if (b)
		b->v = v;
	return b;
}

void cow_batch_free(struct cow_batch *b)
{
	kvfree(b);
}

size_t cow_batch_bytes(void)
{
	return sizeof(struct cow_batch);
}

static unsigned int batch_limit(struct cowfile_volume *v)
{
	return v->snap_state == COWFILE_SNAP_ACTIVE ? COW_BATCH_COPIES : COW_BATCH_MARKS;
}

static void copy_done(int read_err, unsigned long write_err, void *context)
{
	struct cow_batch *b = context;

	if (read_err)
		WRITE_ONCE(b->read_error, true);
	if (write_err)
		WRITE_ONCE(b->write_error, true);
	if (atomic_dec_and_test(&b->copies_left))
		complete(&b->copies_done);
}

static void check_low_water(struct cowfile_volume *v)
{
	if (v->low_water_signalled || !v->store.total_slots)
		return;
	if (v->slots_used * 100 >= (u64)v->low_water * v->store.total_slots) {
		v->low_water_signalled = true;
		DMINFO("store %llu%% full (low water mark %u%%)",
		       div64_u64(v->slots_used * 100, v->store.total_slots),
		       v->low_water);
		volume_event(v);
	}
}

/* Copies each chunk of the batch into a fresh store slot, all at once. */
static void copy_batch(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	struct store_layout *layout = rcu_dereference_protected(v->store.layout,
					lockdep_is_held(&v->state_lock));
	unsigned int i;

	atomic_set(&b->copies_left, 1);
	init_completion(&b->copies_done);
	b->read_error = false;
	b->write_error = false;

	for (i = 0; i < b->nr; i++) {
		sector_t start = b->chunks[i] << v->chunk_shift;
		struct dm_io_region from, to;
		u64 slot;

		if (v->slots_used >= v->store.total_slots) {
			volume_invalidate(v, COWFILE_INVALID_STORE_FULL);
			break;
		}
		slot = v->slots_used++;
		from.bdev = v->origin_bdev;
		from.sector = start;
		from.count = min_t(sector_t, v->chunk_sectors, v->origin_sectors - start);
		to.bdev = v->store.bdev;
		to.sector = store_slot_sector(layout, slot);
		to.count = from.count;
		b->slots[i] = slot + 1;
		trace_cowfile_cow_start(v, b->chunks[i], slot);
		atomic_inc(&b->copies_left);
		dm_kcopyd_copy(v->kcopyd, &from, 1, &to, 0, copy_done, b);
	}
	if (!atomic_dec_and_test(&b->copies_left))
		wait_for_completion_io(&b->copies_done);
	atomic64_add(i, &v->cow_copies);
	trace_cowfile_cow_done(v, i, b->read_error || b->write_error);

	/*
	 * The copies must be durable before the map entries that point at
	 * them: one flush now, as the commit's own flush could make a map
	 * block durable and lose a copy it names.
	 */
	if (b->read_error)
		volume_invalidate(v, COWFILE_INVALID_ORIGIN_IO);
	else if (b->write_error || (i && cowfile_flush(&v->store, v->store.bdev)))
		volume_invalidate(v, COWFILE_INVALID_STORE_IO);
	check_low_water(v);
}

/* Records the batch's chunks in the chunk map and makes it durable. */
static void record_batch(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	struct cowfile_map_block *mb = NULL;
	struct dm_buffer *buf = NULL;
	u64 held = U64_MAX;
	bool keep_slots = v->snap_state == COWFILE_SNAP_ACTIVE;
	unsigned int i;
	int r = 0;

	for (i = 0; i < b->nr; i++) {
		u64 idx = div_u64(b->chunks[i], COWFILE_MAP_ENTRIES_PER_BLOCK);
		unsigned int j = b->chunks[i] - idx * COWFILE_MAP_ENTRIES_PER_BLOCK;
		struct cowfile_map_entry *e;

		if (idx != held) {
			if (buf)
				dm_bufio_release(buf);
			buf = NULL;
			mb = store_map_block(&v->store, idx, &buf);
			if (IS_ERR(mb)) {
				r = PTR_ERR(mb);
				buf = NULL;
				break;
			}
			held = idx;
		}
		e = &mb->entries[j];
		e->last_epoch = cpu_to_le32(v->epoch);
		e->slot = cpu_to_le32(keep_slots ? b->slots[i] : 0);
		dm_bufio_mark_buffer_dirty(buf);
	}
	if (buf)
		dm_bufio_release(buf);
	if (!r)
		r = store_commit_map(&v->store);
	atomic64_inc(&v->commits);
	trace_cowfile_commit(v, b->nr, r);
	if (r)
		volume_tracking_lost(v);
}

static void commit_batch(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	bool holding = v->snap_state == COWFILE_SNAP_ACTIVE;
	unsigned int i;

	if (!b->nr)
		return;
	memset(b->slots, 0, sizeof(b->slots[0]) * b->nr);
	if (holding && v->mode == COWFILE_MODE_TRACKING)
		copy_batch(b);
	if (v->mode == COWFILE_MODE_TRACKING)
		record_batch(b);

	/* pending was set before marked: cowfile_map() reads them in turn. */
	smp_mb__before_atomic();
	for (i = 0; i < b->nr; i++) {
		set_bit(b->chunks[i], v->marked);
		trace_cowfile_chunk_marked(v, b->chunks[i], v->epoch);
	}
	v->nr_marked += b->nr;
	smp_mb__after_atomic();

	/*
	 * An image read that found a chunk unmarked went to the origin; no new
	 * data may overtake it there. The batch's own writes wait here, and
	 * any other write to these chunks waits in the worker as long as the
	 * chunk is pending.
	 */
	if (holding)
		for (i = 0; i < b->nr; i++)
			wait_event(v->reads_wait,
				   !atomic_read(&v->reads_inflight[read_bucket(b->chunks[i])]));
	for (i = 0; i < b->nr; i++)
		clear_bit(b->chunks[i], v->pending);
	b->nr = 0;
}

/*
 * Commits the chunks of the deferred writes batch by batch, dropping
 * state_lock in between so that status, release and grow wait for one
 * batch at most, then sends the writes down.
 */
void cow_write_worker(struct work_struct *work)
{
	struct cowfile_volume *v = container_of(work, struct cowfile_volume, write_work);
	struct cow_batch *b = v->batch;
	struct bio_list bios;
	struct bio *bio;

	spin_lock_irq(&v->lock);
	bios = v->deferred_writes;
	bio_list_init(&v->deferred_writes);
	spin_unlock_irq(&v->lock);
	if (bio_list_empty(&bios))
		return;

	mutex_lock(&v->state_lock);
	bio_list_for_each(bio, &bios) {
		u64 c = chunk_of(v, bio->bi_iter.bi_sector);
		u64 last = chunk_of(v, bio_end_sector(bio) - 1);

		for (; c <= last; c++) {
			if (test_bit(c, v->marked) || test_bit(c, v->pending))
				continue;
			set_bit(c, v->pending);
			b->chunks[b->nr++] = c;
			if (b->nr >= batch_limit(v)) {
				commit_batch(b);
				mutex_unlock(&v->state_lock);
				cond_resched();
				mutex_lock(&v->state_lock);
			}
		}
	}
	commit_batch(b);
	mutex_unlock(&v->state_lock);

	while ((bio = bio_list_pop(&bios)))
		cowfile_submit_remapped(bio);
}

void cow_defer_write(struct cowfile_volume *v, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&v->lock, flags);
	bio_list_add(&v->deferred_writes, bio);
	spin_unlock_irqrestore(&v->lock, flags);
	queue_work(v->wq, &v->write_work);
}

/*
 * Points an image read of a copied chunk at the chunk's store slot. Returns
 * 0, -EWOULDBLOCK when the chunk map block is not cached and @may_block is
 * false (map() must not wait for I/O), or -EIO.
 */
int cow_remap_copied_read(struct cowfile_volume *v, struct bio *bio, bool may_block)
{
	sector_t sector = bio->bi_iter.bi_sector;
	u64 chunk = chunk_of(v, sector);
	u64 idx = div_u64(chunk, COWFILE_MAP_ENTRIES_PER_BLOCK);
	unsigned int j = chunk - idx * COWFILE_MAP_ENTRIES_PER_BLOCK;
	struct cowfile_map_block *mb;
	struct store_layout *layout;
	struct dm_buffer *buf;
	sector_t slot_sector;
	u32 last, slot;

	if (READ_ONCE(v->snap_state) != COWFILE_SNAP_ACTIVE || READ_ONCE(v->detached))
		return -EIO;
	mb = may_block ? store_map_block(&v->store, idx, &buf) :
			 store_cached_map_block(&v->store, idx, &buf);
	if (!mb)
		return -EWOULDBLOCK;
	if (IS_ERR(mb))
		return -EIO;
	last = le32_to_cpu(mb->entries[j].last_epoch);
	slot = le32_to_cpu(mb->entries[j].slot);
	dm_bufio_release(buf);

	rcu_read_lock();
	layout = rcu_dereference(v->store.layout);
	if (last != (u32)(v->snap_epoch + 1) || !slot || slot > layout->total_slots) {
		rcu_read_unlock();
		DMERR_LIMIT("chunk %llu marked copied but the chunk map has no copy (epoch %u slot %u)",
			    (unsigned long long)chunk, last, slot);
		return -EIO;
	}
	slot_sector = store_slot_sector(layout, slot - 1);
	rcu_read_unlock();
	bio_set_dev(bio, v->store.bdev);
	bio->bi_iter.bi_sector = slot_sector + (sector & (v->chunk_sectors - 1));
	return 0;
}

void cow_read_worker(struct work_struct *work)
{
	struct cowfile_volume *v = container_of(work, struct cowfile_volume, read_work);
	struct bio_list bios;
	struct bio *bio;

	spin_lock_irq(&v->lock);
	bios = v->deferred_reads;
	bio_list_init(&v->deferred_reads);
	spin_unlock_irq(&v->lock);

	while ((bio = bio_list_pop(&bios))) {
		if (cow_remap_copied_read(v, bio, true))
			bio_io_error(bio);
		else
			cowfile_submit_remapped(bio);
	}
}

void cow_defer_read(struct cowfile_volume *v, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&v->lock, flags);
	bio_list_add(&v->deferred_reads, bio);
	spin_unlock_irqrestore(&v->lock, flags);
	queue_work(v->wq, &v->read_work);
}
