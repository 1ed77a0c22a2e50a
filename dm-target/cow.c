// SPDX-License-Identifier: GPL-2.0
/*
 * The deferred paths of the I/O flow.
 *
 * A write (or discard, or write-zeroes) to a chunk not yet marked in the
 * open epoch is held back, and so, while a snapshot is held, is a write to
 * a 4 KiB block not yet copied. The write worker gathers the held bios
 * into batches. For each batch it reads the old data of the blocks to copy,
 * appends the copies and their record block to the store's log, marks the
 * chunks in the chunk map, and makes all of it durable with one flush; only
 * then do the bios go down. A crash before the flush loses no overwritten
 * data: no overwrite was issued, and at the next load the log keeps only
 * the copies whose checksum matches (docs/STORE-LOG.md).
 */
#include <linux/bio.h>
#include <linux/crc32c.h>
#include <linux/slab.h>

#include "cowfile.h"
#include "trace.h"

/*
 * Chunks per commit without a snapshot: a commit only rewrites map
 * entries, and a few map blocks per flush keep a whole-device discard or
 * write-zeroes from taking one flush per 509 chunks. With a snapshot, a
 * batch copies at most 256 blocks, the largest chunk.
 */
#define COW_BATCH_MARKS		(4 * COWFILE_MAP_ENTRIES_PER_BLOCK)
#define COW_BATCH_COPIES	256
/* A batch closes at most two groups and writes the open one. */
#define COW_BATCH_LOG_BLOCKS	3
/* The superblock records the durable end of the log every 32 MiB. */
#define COW_CHECKPOINT_SLOTS	8192

struct cow_copy {
	u64 block;
	u64 slot;
	struct page *page;	/* the batch's, kept across batches */
};

struct cow_batch {
	struct cowfile_volume *v;
	unsigned int nr;		/* chunks taken (pending) */
	unsigned int nr_copies;
	unsigned int nr_log;
	u64 chunks[COW_BATCH_MARKS];
	struct cow_copy copies[COW_BATCH_COPIES];
	void *log[COW_BATCH_LOG_BLOCKS];
	u64 log_slots[COW_BATCH_LOG_BLOCKS];

	atomic_t ios;
	struct completion done;
	bool error;
};

struct cow_batch *cow_batch_alloc(struct cowfile_volume *v)
{
	struct cow_batch *b = kvzalloc(sizeof(*b), GFP_KERNEL);

	if (b) {
		b->v = v;
		init_completion(&b->done);
	}
	return b;
}

/* Called without a snapshot held: the pages are taken again by the next one. */
void cow_batch_free_pages(struct cow_batch *b)
{
	unsigned int i;

	for (i = 0; i < COW_BATCH_COPIES; i++) {
		if (b->copies[i].page)
			__free_page(b->copies[i].page);
		b->copies[i].page = NULL;
	}
	for (i = 0; i < COW_BATCH_LOG_BLOCKS; i++) {
		kfree(b->log[i]);
		b->log[i] = NULL;
	}
}

void cow_batch_free(struct cow_batch *b)
{
	if (b)
		cow_batch_free_pages(b);
	kvfree(b);
}

size_t cow_batch_bytes(struct cow_batch *b)
{
	size_t bytes = sizeof(*b);
	unsigned int i;

	for (i = 0; i < COW_BATCH_COPIES; i++)
		bytes += b->copies[i].page ? PAGE_SIZE : 0;
	for (i = 0; i < COW_BATCH_LOG_BLOCKS; i++)
		bytes += b->log[i] ? COWFILE_BLOCK_SIZE : 0;
	return bytes;
}

static bool holding(struct cowfile_volume *v)
{
	return v->snap_state == COWFILE_SNAP_ACTIVE && v->mode == COWFILE_MODE_TRACKING;
}

static void io_done(struct bio *bio)
{
	struct cow_batch *b = bio->bi_private;

	if (bio->bi_status)
		WRITE_ONCE(b->error, true);
	bio_put(bio);
	if (atomic_dec_and_test(&b->ios))
		complete(&b->done);
}

static void io_start(struct cow_batch *b)
{
	atomic_set(&b->ios, 1);
	reinit_completion(&b->done);
	b->error = false;
}

static void io_submit(struct cow_batch *b, struct block_device *bdev, sector_t sector,
		      struct page *page, unsigned int len, blk_opf_t opf)
{
	struct bio *bio = cowfile_bio_alloc(bdev, 1, opf, GFP_NOIO, &b->v->store.bios);

	bio->bi_iter.bi_sector = sector;
	__bio_add_page(bio, page, len, 0);
	bio->bi_end_io = io_done;
	bio->bi_private = b;
	atomic_inc(&b->ios);
	submit_bio(bio);
}

static int io_wait(struct cow_batch *b)
{
	if (!atomic_dec_and_test(&b->ios))
		wait_for_completion_io(&b->done);
	return READ_ONCE(b->error) ? -EIO : 0;
}

static void check_low_water(struct cowfile_volume *v)
{
	if (v->low_water_signalled || !v->store.total_slots)
		return;
	if (v->log_end * 100 >= (u64)v->low_water * v->store.total_slots) {
		v->low_water_signalled = true;
		DMINFO("store %llu%% full (low water mark %u%%)",
		       div64_u64(v->log_end * 100, v->store.total_slots),
		       v->low_water);
		volume_event(v);
	}
}

/* Queues a write of the open group's record block to its next slot. */
static void log_queue_group(struct cowfile_volume *v, struct cow_batch *b)
{
	struct cowfile_log_block *g = v->group;
	u64 slot = v->group_slot + v->group_next;

	g->snap_epoch = cpu_to_le64(v->snap_epoch);
	g->seq = cpu_to_le64(++v->log_seq);
	g->group_slot = cpu_to_le64(v->group_slot);
	g->log_end = cpu_to_le64(v->log_end);
	store_seal_log_block(&v->store, g, slot);
	memcpy(b->log[b->nr_log], g, COWFILE_BLOCK_SIZE);
	b->log_slots[b->nr_log++] = slot;
	v->group_next ^= 1;
	v->group_dirty = false;
}

/* A slot for a copy of @block, in the open group or a new one. */
static int log_append(struct cowfile_volume *v, struct cow_batch *b,
		      struct cow_copy *c, u32 csum)
{
	struct cowfile_log_block *g = v->group;
	unsigned int n = le32_to_cpu(g->nr_records);
	struct cowfile_log_record *rec;

	if (v->group_slot == COWFILE_NO_GROUP || n == COWFILE_LOG_RECORDS_PER_BLOCK) {
		if (v->group_dirty)
			log_queue_group(v, b);
		if (v->log_end + 2 >= v->store.total_slots)
			return -ENOSPC;
		v->group_slot = v->log_end;
		v->group_next = 0;
		v->log_end += 2;
		n = 0;
	}
	if (v->log_end >= v->store.total_slots)
		return -ENOSPC;
	c->slot = v->log_end++;
	rec = &g->records[n];
	rec->origin_block = cpu_to_le64(c->block);
	rec->slot = cpu_to_le32(c->slot);
	rec->csum = cpu_to_le32(csum);
	g->nr_records = cpu_to_le32(n + 1);
	v->group_dirty = true;
	return 0;
}

static int alloc_batch_buffers(struct cow_batch *b)
{
	unsigned int i;

	for (i = 0; i < b->nr_copies; i++) {
		if (!b->copies[i].page)
			b->copies[i].page = alloc_page(GFP_NOIO);
		if (!b->copies[i].page)
			return -ENOMEM;
	}
	for (i = 0; i < COW_BATCH_LOG_BLOCKS; i++) {
		if (!b->log[i])
			b->log[i] = kmalloc(COWFILE_BLOCK_SIZE, GFP_NOIO);
		if (!b->log[i])
			return -ENOMEM;
	}
	return 0;
}

/* Reads the old data of the batch's blocks. */
static int read_copies(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	struct blk_plug plug;
	unsigned int i;

	io_start(b);
	blk_start_plug(&plug);
	for (i = 0; i < b->nr_copies; i++) {
		struct cow_copy *c = &b->copies[i];
		sector_t sector = c->block * COWFILE_BLOCK_SECTORS;
		sector_t len = min_t(sector_t, COWFILE_BLOCK_SECTORS, v->origin_sectors - sector);

		if (len < COWFILE_BLOCK_SECTORS)
			memzero_page(c->page, 0, PAGE_SIZE);
		io_submit(b, v->origin_bdev, sector, c->page, len << SECTOR_SHIFT,
			  REQ_OP_READ);
	}
	blk_finish_plug(&plug);
	return io_wait(b);
}

/* Gives each copy a slot and queues the record blocks naming them. */
static int place_copies(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	unsigned int i;

	b->nr_log = 0;
	for (i = 0; i < b->nr_copies; i++) {
		struct cow_copy *c = &b->copies[i];
		/* Pages from alloc_page(GFP_NOIO) are never highmem. */
		u32 csum = ~crc32c(~0U, page_address(c->page), COWFILE_BLOCK_SIZE);

		if (log_append(v, b, c, csum))
			return -ENOSPC;
		trace_cowfile_cow_start(v, c->block, c->slot);
	}
	if (v->group_dirty)
		log_queue_group(v, b);
	return 0;
}

static void submit_log_writes(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	struct store_layout *layout = rcu_dereference_protected(v->store.layout,
					lockdep_is_held(&v->state_lock));
	struct blk_plug plug;
	unsigned int i;

	io_start(b);
	blk_start_plug(&plug);
	for (i = 0; i < b->nr_copies; i++)
		io_submit(b, v->store.bdev, store_slot_sector(layout, b->copies[i].slot),
			  b->copies[i].page, COWFILE_BLOCK_SIZE, REQ_OP_WRITE);
	for (i = 0; i < b->nr_log; i++)
		io_submit(b, v->store.bdev, store_slot_sector(layout, b->log_slots[i]),
			  virt_to_page(b->log[i]), COWFILE_BLOCK_SIZE, REQ_OP_WRITE);
	blk_finish_plug(&plug);
}

/*
 * Marks the batch's chunks in the chunk map and starts writing the map
 * blocks. Returns how many entries it changed, or an error.
 */
static int mark_chunks(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	struct cowfile_map_block *mb = NULL;
	struct dm_buffer *buf = NULL;
	u64 held = U64_MAX;
	unsigned int i;
	int r = 0;

	for (i = 0; i < b->nr; i++) {
		u64 idx = div_u64(b->chunks[i], COWFILE_MAP_ENTRIES_PER_BLOCK);
		unsigned int j = b->chunks[i] - idx * COWFILE_MAP_ENTRIES_PER_BLOCK;
		struct cowfile_map_entry *e;

		if (test_bit(b->chunks[i], v->marked))
			continue;
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
		e->reserved = 0;
		dm_bufio_mark_buffer_dirty(buf);
	}
	if (buf)
		dm_bufio_release(buf);
	if (!r)
		dm_bufio_write_dirty_buffers_async(v->store.bufio);
	return r;
}

/* Publishes the batch's copies: image reads and writes now see them. */
static void index_copies(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	unsigned int i;

	for (i = 0; i < b->nr_copies; i++)
		cow_index_publish(v, b->copies[i].block, b->copies[i].slot);
	v->nr_copied += b->nr_copies;
	atomic64_add(b->nr_copies, &v->cow_copies);
}

/*
 * The batch's copies and record blocks are written, then its map blocks,
 * and the map commit's flush makes all of it durable at once.
 */
static void commit_batch(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;
	bool copying = holding(v) && b->nr_copies;
	bool was_holding = v->snap_state == COWFILE_SNAP_ACTIVE;
	unsigned int i;
	int r;

	if (!b->nr)
		return;
	if (copying && alloc_batch_buffers(b)) {
		volume_invalidate(v, COWFILE_INVALID_NO_MEMORY);
		copying = false;
	}
	if (copying && read_copies(b)) {
		volume_invalidate(v, COWFILE_INVALID_ORIGIN_IO);
		copying = false;
	}
	if (copying && place_copies(b)) {
		volume_invalidate(v, COWFILE_INVALID_STORE_FULL);
		copying = false;
	}
	if (copying)
		submit_log_writes(b);
	if (v->mode == COWFILE_MODE_TRACKING) {
		r = mark_chunks(b);
		if (copying && io_wait(b)) {
			volume_invalidate(v, COWFILE_INVALID_STORE_IO);
			copying = false;
		}
		if (!r)
			r = store_commit_map(&v->store);
		atomic64_inc(&v->commits);
		trace_cowfile_commit(v, b->nr, r);
		if (r)
			volume_tracking_lost(v);
		else if (copying)
			index_copies(b);
	}
	trace_cowfile_cow_done(v, b->nr_copies, was_holding && !holding(v));
	if (holding(v)) {
		check_low_water(v);
		if (v->log_end - v->log_checkpoint >= COW_CHECKPOINT_SLOTS)
			volume_checkpoint(v);
	}

	/* pending was set before marked: cowfile_map() reads them in turn. */
	smp_mb();
	for (i = 0; i < b->nr; i++) {
		if (test_bit(b->chunks[i], v->marked))
			continue;
		set_bit(b->chunks[i], v->marked);
		v->nr_marked++;
		trace_cowfile_chunk_marked(v, b->chunks[i], v->epoch);
	}
	smp_mb();

	/*
	 * An image read that found a block uncopied went to the origin; no
	 * new data may overtake it there. The batch's own writes wait here,
	 * and any other write to these chunks waits in the worker as long as
	 * the chunk is pending.
	 */
	if (was_holding)
		for (i = 0; i < b->nr; i++)
			wait_event(v->reads_wait,
				   !atomic_read(&v->reads_inflight[read_bucket(b->chunks[i])]));
	for (i = 0; i < b->nr; i++)
		clear_bit(b->chunks[i], v->pending);
	b->nr = 0;
	b->nr_copies = 0;
}

/* Known to be copied: a block whose index block is not in core is not. */
static bool block_copied(struct cowfile_volume *v, u64 block)
{
	return cow_index_peek(v, block) < COWFILE_INDEX_UNKNOWN;
}

/*
 * Every 4 KiB block of [sector, sector + len) is known to be copied, if a
 * snapshot is held (map(): a block whose index block is not in core is
 * not). The index is read only while the snapshot is active: a release
 * waits for such readers before it empties the index.
 */
bool cow_blocks_copied(struct cowfile_volume *v, sector_t sector, sector_t len)
{
	u64 block = sector / COWFILE_BLOCK_SECTORS;
	u64 last = (sector + len - 1) / COWFILE_BLOCK_SECTORS;
	bool copied = true;

	rcu_read_lock();
	if (READ_ONCE(v->snap_state) == COWFILE_SNAP_ACTIVE)
		for (; block <= last && copied; block++)
			copied = block_copied(v, block);
	rcu_read_unlock();
	return copied;
}

/*
 * Takes what a write to [start, end) of chunk @c needs into the batch: the
 * chunk's mark and, with a snapshot held, a copy of each block not yet
 * copied nor being copied. Returns false when the batch is full first.
 */
static bool take_range(struct cow_batch *b, u64 c, sector_t start, sector_t end)
{
	struct cowfile_volume *v = b->v;
	bool copy = holding(v);
	u64 block = start / COWFILE_BLOCK_SECTORS;
	u64 last = (end - 1) / COWFILE_BLOCK_SECTORS;
	bool take = !test_bit(c, v->marked);

	/* A chunk with blocks in the batch is pending: room for it first. */
	if (!test_bit(c, v->pending) && b->nr >= COW_BATCH_MARKS)
		return false;
	if (copy) {
		if (b->nr_copies + last - block + 1 > COW_BATCH_COPIES)
			return false;
		for (; block <= last; block++) {
			int r = cow_index_claim(v, block);

			if (!r)
				continue;	/* copied, or being copied */
			if (r < 0) {
				volume_invalidate(v, r == -ENOMEM ? COWFILE_INVALID_NO_MEMORY :
							COWFILE_INVALID_STORE_IO);
				break;
			}
			b->copies[b->nr_copies++].block = block;
			take = true;
		}
	}
	if (take && !test_bit(c, v->pending)) {
		set_bit(c, v->pending);
		b->chunks[b->nr++] = c;
	}
	return true;
}

static void next_batch(struct cow_batch *b)
{
	struct cowfile_volume *v = b->v;

	commit_batch(b);
	mutex_unlock(&v->state_lock);
	cond_resched();
	mutex_lock(&v->state_lock);
}

/* Reads the index blocks the deferred writes look up, at once. */
static void prefetch_index(struct cowfile_volume *v, struct bio_list *bios)
{
	u64 blocks[32];
	unsigned int n = 0;
	struct bio *bio;

	bio_list_for_each(bio, bios) {
		if (!bio_sectors(bio))
			continue;
		if (n + 2 > ARRAY_SIZE(blocks))
			break;
		/* A write spans two index blocks at most (4 MiB of origin each). */
		blocks[n++] = bio->bi_iter.bi_sector / COWFILE_BLOCK_SECTORS;
		blocks[n++] = (bio_end_sector(bio) - 1) / COWFILE_BLOCK_SECTORS;
	}
	cow_index_prefetch(v, blocks, n);
}

/*
 * Commits what the deferred writes need batch by batch, dropping
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
	if (holding(v))
		prefetch_index(v, &bios);
	bio_list_for_each(bio, &bios) {
		sector_t sector = bio->bi_iter.bi_sector;
		sector_t end = bio_end_sector(bio);

		while (sector < end) {
			u64 c = chunk_of(v, sector);
			sector_t next = min_t(sector_t, end, (c + 1) << v->chunk_shift);

			/* A full batch is committed, and the range taken again. */
			if (take_range(b, c, sector, next))
				sector = next;
			else
				next_batch(b);
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

/* The index's answer for @block; with @wait, never COWFILE_INDEX_UNKNOWN. */
static int lookup(struct cowfile_volume *v, u64 block, bool wait, u64 *slot)
{
	*slot = cow_index_peek(v, block);
	if (*slot != COWFILE_INDEX_UNKNOWN)
		return 0;
	return wait ? cow_index_get(v, block, slot) : -EAGAIN;
}

/*
 * Where an image read of @sector finds its data: the store sector of the
 * block's copy, or the origin (*copied false). *run is how many sectors
 * from @sector, at most @len, read from the same place in order: the same
 * kind of block, copies in consecutive slots. Without @wait, -EAGAIN when
 * the index of @sector's block is not in core (a later block's only ends
 * the run); with it, the index is read if need be.
 */
int cow_image_run(struct cowfile_volume *v, sector_t sector, sector_t len, bool wait,
		  bool *copied, sector_t *where, sector_t *run)
{
	u64 block = sector / COWFILE_BLOCK_SECTORS;
	sector_t off = sector % COWFILE_BLOCK_SECTORS;
	sector_t n = COWFILE_BLOCK_SECTORS - off;
	struct store_layout *layout;
	u64 slot, next;
	int r;

	r = lookup(v, block, wait, &slot);
	if (r)
		return r;
	*copied = slot < COWFILE_COPYING;
	if (!*copied) {
		*where = sector;
		while (n < len && !lookup(v, ++block, wait, &next) && next >= COWFILE_COPYING)
			n += COWFILE_BLOCK_SECTORS;
		*run = min(n, len);
		return 0;
	}
	rcu_read_lock();
	layout = rcu_dereference(v->store.layout);
	*where = store_slot_sector(layout, slot) + off;
	while (n < len && !lookup(v, ++block, false, &next) && next == ++slot &&
	       store_slot_sector(layout, slot) == *where + n)
		n += COWFILE_BLOCK_SECTORS;
	rcu_read_unlock();
	*run = min(n, len);
	return 0;
}

/* A record block of the group at @group_slot, read from @slot, to trust. */
static bool log_block_valid(struct cowfile_volume *v, const struct cowfile_log_block *g,
			    u64 group_slot, u64 slot, u64 after_seq)
{
	const char *why = store_check_log_block(&v->store, g, slot);
	u64 end = le64_to_cpu(g->log_end);

	if (!why && (le64_to_cpu(g->snap_epoch) != v->snap_epoch ||
		     le64_to_cpu(g->group_slot) != group_slot))
		why = "of another snapshot or place";
	if (!why && (le64_to_cpu(g->seq) <= after_seq ||
		     le32_to_cpu(g->nr_records) > COWFILE_LOG_RECORDS_PER_BLOCK ||
		     end < group_slot + 2 || end > v->store.total_slots))
		why = "inconsistent";
	return !why;
}

/*
 * Takes the group's records into the index. A copy past the checkpoint
 * counts only if its data checksum matches: its batch may not have been
 * durable, and then its overwrite never reached the origin. Returns the
 * first slot whose copy it dropped (or U64_MAX), or an error.
 */
static s64 replay_group(struct cowfile_volume *v, const struct cowfile_log_block *g,
			void *data, char **error)
{
	struct store_layout *layout = rcu_dereference_protected(v->store.layout, true);
	u64 group_slot = le64_to_cpu(g->group_slot);
	u64 end = le64_to_cpu(g->log_end);
	u64 nr_blocks = DIV_ROUND_UP_ULL(v->origin_sectors, COWFILE_BLOCK_SECTORS);
	unsigned int i, n = le32_to_cpu(g->nr_records), kept = 0;
	u64 dropped = U64_MAX;
	int r;

	for (i = 0; i < n; i++) {
		const struct cowfile_log_record *rec = &g->records[i];
		u64 block = le64_to_cpu(rec->origin_block);
		u64 slot = le32_to_cpu(rec->slot);

		if (block >= nr_blocks || slot < group_slot + 2 || slot >= end) {
			*error = "Store log names a block or slot out of range";
			return -EILSEQ;
		}
		if (slot >= v->log_checkpoint) {
			r = cowfile_block_io(&v->store, v->store.bdev,
					     store_slot_sector(layout, slot), data, REQ_OP_READ);
			if (r) {
				*error = "Cannot read a copy in the store's log";
				return r;
			}
			if (~crc32c(~0U, data, COWFILE_BLOCK_SIZE) != le32_to_cpu(rec->csum)) {
				dropped = min(dropped, slot);
				continue;
			}
		}
		r = cow_index_add(v, block, slot);
		if (r == -EEXIST) {
			*error = "Store log names a block twice";
			return -EILSEQ;
		}
		if (r) {
			*error = "Cannot build the index of the copies";
			return r;
		}
		v->group->records[kept++] = *rec;
	}
	memcpy(v->group, g, sizeof(*g));
	v->group->nr_records = cpu_to_le32(kept);
	v->group_dirty = kept != n;
	v->nr_copied += kept;
	return dropped == U64_MAX ? S64_MAX : dropped;
}

/*
 * At load, with a snapshot held: rebuilds the copies index and the open
 * group from the log, reading only. Groups follow each other while full;
 * of a group's two record blocks the valid one with the higher seq holds
 * it. A log the kernel cannot trust leaves the snapshot invalid (-EILSEQ);
 * other errors fail the load.
 */
int cow_replay_log(struct cowfile_volume *v, char **error)
{
	struct store_layout *layout = rcu_dereference_protected(v->store.layout, true);
	u64 slot = 0, seq = 0, trust_limit = U64_MAX;
	struct cowfile_log_block *blk[2];
	void *data;
	int r = 0;

	v->log_checkpoint = le64_to_cpu(v->store.sb->log_checkpoint);
	if (v->log_checkpoint > layout->total_slots) {
		*error = "Store log checkpoint beyond the store";
		return -EILSEQ;
	}
	blk[0] = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	blk[1] = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	data = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	if (!blk[0] || !blk[1] || !data) {
		*error = "Cannot allocate log buffers";
		r = -ENOMEM;
		goto out;
	}
	while (slot + 2 <= layout->total_slots) {
		unsigned int i, pick = 2;
		s64 dropped;

		for (i = 0; i < 2; i++) {
			r = cowfile_block_io(&v->store, v->store.bdev,
					     store_slot_sector(layout, slot + i), blk[i],
					     REQ_OP_READ);
			if (r) {
				*error = "Cannot read the store's log";
				goto out;
			}
			if (!log_block_valid(v, blk[i], slot, slot + i, seq))
				continue;
			if (pick == 2 || le64_to_cpu(blk[i]->seq) > le64_to_cpu(blk[pick]->seq))
				pick = i;
		}
		if (pick == 2)
			break;
		dropped = replay_group(v, blk[pick], data, error);
		if (dropped < 0) {
			r = dropped;
			goto out;
		}
		if (dropped != S64_MAX)
			trust_limit = min_t(u64, trust_limit, dropped);
		v->group_slot = slot;
		v->group_next = pick ^ 1;
		v->log_end = le64_to_cpu(blk[pick]->log_end);
		v->log_seq = seq = le64_to_cpu(blk[pick]->seq);
		if (le32_to_cpu(blk[pick]->nr_records) < COWFILE_LOG_RECORDS_PER_BLOCK)
			break;
		/* Full: the next group starts at its log_end, or nothing is open. */
		v->group_slot = COWFILE_NO_GROUP;
		v->group_dirty = false;
		slot = v->log_end;
		cond_resched();
	}
	/*
	 * The checkpoint proves the log durable up to it: a log that ends
	 * before it lost records that were durable (a damaged record block,
	 * not a torn write, which only ever hits the last batch's).
	 */
	if (v->log_end < v->log_checkpoint) {
		*error = "Store log ends before its checkpoint";
		r = -EILSEQ;
		goto out;
	}
	v->log_trust_limit = trust_limit;
	if (trust_limit != U64_MAX)
		DMWARN("store log: copies from slot %llu on were not durable at the crash; their blocks were not overwritten",
		       (unsigned long long)trust_limit);
out:
	kfree(data);
	kfree(blk[1]);
	kfree(blk[0]);
	return r;
}
