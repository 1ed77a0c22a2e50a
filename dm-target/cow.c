// SPDX-License-Identifier: GPL-2.0
/*
 * The deferred paths of the I/O flow.
 *
 * A write (or discard, or write-zeroes) to a chunk not yet marked in the
 * open epoch is held back. The write worker gathers the chunks of held bios
 * into batches and lets each batch's bios go down only once the chunks'
 * epoch (and, while a snapshot is held, their store slot) is durable in the
 * chunk map. Concurrent first writes thus share one commit.
 *
 * While a snapshot is held, a batch takes two rounds of the worker, and the
 * rounds overlap: in one round the worker copies the new batch's chunks into
 * store slots while it writes the chunk map entries of the batch copied in
 * the round before, then one flush makes both durable. An entry is thus only
 * written (or left dirty in dm-bufio, which may write it at any time) after
 * the copy it names is durable, so a crash never keeps an entry whose copy
 * it lost, and each batch costs one flush instead of two. Tracking only, a
 * batch is recorded and flushed in one round.
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

#define COW_BATCH_MAX 256

struct cow_batch {
	struct cowfile_volume *v;
	struct bio_list bios;		/* go down when the batch is done */
	unsigned int nr;
	u64 chunks[COW_BATCH_MAX];
	u64 slots[COW_BATCH_MAX];	/* 1 + slot, 0 when not copied */
	bool copied;			/* map entries go in the next round */

	atomic_t copies_left;
	struct completion copies_done;
	bool read_error, write_error;
};

int cow_alloc_batches(struct cowfile_volume *v)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(v->batches); i++) {
		v->batches[i] = kzalloc(sizeof(*v->batches[i]), GFP_KERNEL);
		if (!v->batches[i])
			return -ENOMEM;
		v->batches[i]->v = v;
	}
	return 0;
}

void cow_free_batches(struct cowfile_volume *v)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(v->batches); i++)
		kfree(v->batches[i]);
}

/*
 * Moves bios from @queue into @b while their new chunks fit. A bio goes down
 * with the batch that takes its last new chunk; one whose chunks are all
 * marked, or pending in the batch before, goes with this one, which is done
 * after that one. A bio that does not fit stays at the head of @queue.
 */
static void gather_batch(struct cow_batch *b, struct bio_list *queue)
{
	struct cowfile_volume *v = b->v;
	struct bio *bio;

	while ((bio = bio_list_peek(queue))) {
		u64 c = chunk_of(v, bio->bi_iter.bi_sector);
		u64 last = chunk_of(v, bio_end_sector(bio) - 1);

		for (; c <= last; c++) {
			if (test_bit(c, v->marked) || test_bit(c, v->pending))
				continue;
			if (b->nr == COW_BATCH_MAX)
				return;
			__set_bit(c, v->pending);
			b->slots[b->nr] = 0;
			b->chunks[b->nr++] = c;
		}
		bio_list_add(&b->bios, bio_list_pop(queue));
	}
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

/* Starts copying each chunk of the batch into a fresh store slot. */
static void start_copies(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
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
		to.sector = store_slot_sector(&v->store, slot);
		to.count = from.count;
		b->slots[i] = slot + 1;
		trace_cowfile_cow_start(v, b->chunks[i], slot);
		atomic_inc(&b->copies_left);
		dm_kcopyd_copy(v->kcopyd, &from, 1, &to, 0, copy_done, b);
	}
	atomic64_add(i, &v->cow_copies);
	check_low_water(v);
}

/* Waits for the batch's copies; a failed copy invalidates the snapshot. */
static void wait_copies(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;

	if (!atomic_dec_and_test(&b->copies_left))
		wait_for_completion_io(&b->copies_done);
	trace_cowfile_cow_done(v, b->nr, b->read_error || b->write_error);
	if (b->read_error)
		volume_invalidate(v, COWFILE_INVALID_ORIGIN_IO);
	else if (b->write_error)
		volume_invalidate(v, COWFILE_INVALID_STORE_IO);
}

/*
 * Writes the batch's chunks into the chunk map blocks in dm-bufio's cache;
 * the round's flush makes them durable. Returns 0 or an I/O error.
 */
static int record_batch(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	struct cowfile_map_block *mb = NULL;
	struct dm_buffer *buf = NULL;
	u64 held = U64_MAX;
	bool keep_slots = v->snap_state == COWFILE_SNAP_ACTIVE;
	unsigned int i;

	for (i = 0; i < b->nr; i++) {
		u64 idx = div_u64(b->chunks[i], COWFILE_MAP_ENTRIES_PER_BLOCK);
		unsigned int j = b->chunks[i] - idx * COWFILE_MAP_ENTRIES_PER_BLOCK;
		struct cowfile_map_entry *e;

		if (idx != held) {
			if (buf)
				dm_bufio_release(buf);
			buf = NULL;
			mb = store_map_block(&v->store, idx, &buf);
			if (IS_ERR(mb))
				return PTR_ERR(mb);
			held = idx;
		}
		e = &mb->entries[j];
		e->last_epoch = cpu_to_le32(v->epoch);
		e->slot = cpu_to_le32(keep_slots ? b->slots[i] : 0);
		dm_bufio_mark_buffer_dirty(buf);
	}
	if (buf)
		dm_bufio_release(buf);
	return 0;
}

/* The batch's chunks are marked: its bios go down. */
static void finish_batch(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	bool holding = v->snap_state == COWFILE_SNAP_ACTIVE;
	struct bio *bio;
	unsigned int i;

	for (i = 0; i < b->nr; i++) {
		__clear_bit(b->chunks[i], v->pending);
		set_bit(b->chunks[i], v->marked);
		trace_cowfile_chunk_marked(v, b->chunks[i], v->epoch);
	}
	v->nr_marked += b->nr;
	smp_mb__after_atomic();

	/*
	 * An image read that found the chunk unmarked went to the origin; the
	 * new data must not overtake it there.
	 */
	if (holding)
		for (i = 0; i < b->nr; i++)
			wait_event(v->reads_wait,
				   !atomic_read(&v->reads_inflight[read_bucket(b->chunks[i])]));
	b->nr = 0;
	while ((bio = bio_list_pop(&b->bios)))
		cowfile_submit_remapped(bio);
}

/*
 * One round: copies @cur's chunks when a snapshot is held, records @prev
 * (copied in the round before) and, when it needs no copy, @cur, and makes
 * all of it durable with one flush. Called with state_lock held.
 */
static void commit_round(struct cow_batch *prev, struct cow_batch *cur)
{
	struct cowfile_volume *v = cur->v;
	bool tracking = v->mode == COWFILE_MODE_TRACKING;
	unsigned int recorded = 0;
	int r = 0;

	cur->copied = cur->nr && tracking && v->snap_state == COWFILE_SNAP_ACTIVE;
	if (cur->copied)
		start_copies(cur);
	if (prev && tracking) {
		r = record_batch(prev);
		recorded += prev->nr;
	}
	if (!cur->copied && cur->nr && tracking && !r) {
		r = record_batch(cur);
		recorded += cur->nr;
	}
	if (recorded)
		store_start_map_write(&v->store);
	if (cur->copied)
		wait_copies(cur);

	if (!r && recorded)
		r = store_commit_map(&v->store);
	else if (!r && cur->copied && cowfile_issue_flush(v->store.bdev))
		volume_invalidate(v, COWFILE_INVALID_STORE_IO);
	if (recorded) {
		atomic64_inc(&v->commits);
		trace_cowfile_commit(v, recorded, r);
	}
	if (r) {
		if (cur->copied)
			volume_invalidate(v, COWFILE_INVALID_STORE_IO);
		volume_tracking_lost(v);
	}

	if (prev)
		finish_batch(prev);
	if (!cur->copied)
		finish_batch(cur);
}

void cow_write_worker(struct work_struct *work)
{
	struct cowfile_volume *v = container_of(work, struct cowfile_volume, write_work);
	struct bio_list queue = BIO_EMPTY_LIST;
	struct cow_batch *prev = NULL, *cur;
	unsigned int turn = 0;

	for (;;) {
		spin_lock_irq(&v->lock);
		bio_list_merge(&queue, &v->deferred_writes);
		bio_list_init(&v->deferred_writes);
		spin_unlock_irq(&v->lock);
		if (bio_list_empty(&queue) && !prev)
			return;

		/* The lock is dropped between rounds, so status never waits long. */
		mutex_lock(&v->state_lock);
		cur = v->batches[turn];
		turn ^= 1;
		gather_batch(cur, &queue);
		commit_round(prev, cur);
		mutex_unlock(&v->state_lock);
		prev = cur->copied ? cur : NULL;
	}
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
	struct dm_buffer *buf;
	u32 last, slot;

	if (READ_ONCE(v->snap_state) != COWFILE_SNAP_ACTIVE)
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

	if (last != (u32)(v->snap_epoch + 1) || !slot || slot > v->store.total_slots) {
		DMERR_LIMIT("chunk %llu marked copied but the chunk map has no copy (epoch %u slot %u)",
			    (unsigned long long)chunk, last, slot);
		return -EIO;
	}
	bio_set_dev(bio, v->store.bdev);
	bio->bi_iter.bi_sector = store_slot_sector(&v->store, slot - 1) +
				 (sector & (v->chunk_sectors - 1));
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
