// SPDX-License-Identifier: GPL-2.0
/*
 * The index of the held snapshot's copies: for each 4 KiB origin block,
 * the log slot of its copy. It lives in the store's index area, a __le32
 * per origin block, 1024 to an index block; in core there is only a cache
 * of those blocks, of bounded size (the index_cache_blocks parameter), so
 * the memory a held snapshot costs does not grow with the store.
 *
 * The area is scratch space: the log is the truth, and every load rebuilds
 * the index from it (cow_replay_log()). An index block not changed since
 * the index was last emptied is never read: the live bitmap, a bit per
 * index block, says which ones were, and any other reads as empty. Dirty
 * index blocks are written back, all at once, when the cache evicts one,
 * and never flushed: a crash loses nothing the log does not hold.
 *
 * Lookups from map() never block: a block whose index block is not cached
 * answers COWFILE_INDEX_UNKNOWN, and the caller defers the bio to a worker,
 * which may read it. Changes come from the write worker and the load, under
 * io_lock. An index block with an entry COWFILE_COPYING is pinned in the
 * cache until the copy is published, so publishing never needs I/O, and
 * the markers of copies in flight stay in core (at most a batch of them).
 */
#include <linux/bio.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "cowfile.h"

static unsigned int index_cache_blocks = 4096;	/* 16 MiB */
module_param(index_cache_blocks, uint, 0644);
MODULE_PARM_DESC(index_cache_blocks,
		 "4 KiB index blocks a volume keeps in memory (each covers 4 MiB of the origin); read when a volume is loaded");

/* Entries of an index block. */
#define ENTRY_NONE	0		/* slots 0 and 1 hold record blocks */
#define ENTRY_COPYING	U32_MAX

struct index_block {
	struct hlist_node hash;
	struct list_head lru;
	u64 nr;
	unsigned int pins;		/* entries ENTRY_COPYING */
	bool dirty;
	bool referenced;		/* looked up since the last eviction pass */
	__le32 *slots;
};

struct cow_index {
	spinlock_t lock;		/* the hash, against lockless lookups */
	struct mutex io_lock;		/* loads, changes and evictions */
	struct hlist_head *hash;
	unsigned int hash_bits;
	struct list_head lru;		/* under io_lock */
	unsigned int nr_cached;
	unsigned int max_cached;
	u64 nr_blocks;			/* of the index area */
	unsigned long *live;		/* changed since the index was emptied */
	struct cowfile_store *store;
};

static u64 entry_to_slot(u32 e)
{
	return e == ENTRY_NONE ? COWFILE_NOT_COPIED :
	       e == ENTRY_COPYING ? COWFILE_COPYING : e;
}

static struct hlist_head *bucket(struct cow_index *x, u64 nr)
{
	return &x->hash[hash_64(nr, x->hash_bits)];
}

/* Under x->lock. */
static struct index_block *find_block(struct cow_index *x, u64 nr)
{
	struct index_block *b;

	hlist_for_each_entry(b, bucket(x, nr), hash)
		if (b->nr == nr)
			return b;
	return NULL;
}

int cow_index_init(struct cowfile_volume *v)
{
	u64 nr_blocks = v->store.index_blocks;
	struct cow_index *x;

	x = kzalloc(sizeof(*x), GFP_KERNEL);
	if (!x)
		return -ENOMEM;
	spin_lock_init(&x->lock);
	mutex_init(&x->io_lock);
	INIT_LIST_HEAD(&x->lru);
	x->store = &v->store;
	x->nr_blocks = nr_blocks;
	x->max_cached = clamp_t(u64, READ_ONCE(index_cache_blocks), 1, max_t(u64, nr_blocks, 1));
	x->hash_bits = ilog2(roundup_pow_of_two(x->max_cached));
	x->hash = kvcalloc(1UL << x->hash_bits, sizeof(*x->hash), GFP_KERNEL);
	x->live = kvcalloc(BITS_TO_LONGS(nr_blocks), sizeof(unsigned long), GFP_KERNEL);
	if (!x->hash || !x->live) {
		kvfree(x->hash);
		kvfree(x->live);
		kfree(x);
		return -ENOMEM;
	}
	v->index = x;
	return 0;
}

static void free_block(struct index_block *b)
{
	kfree(b->slots);
	kfree(b);
}

/*
 * Empties the index: no block has a copy. Its lockless readers may still
 * look up (and find nothing); no change may be in progress.
 */
void cow_index_clear(struct cowfile_volume *v)
{
	struct cow_index *x = v->index;
	struct index_block *b, *tmp;

	mutex_lock(&x->io_lock);
	list_for_each_entry_safe(b, tmp, &x->lru, lru) {
		spin_lock(&x->lock);
		hlist_del(&b->hash);
		spin_unlock(&x->lock);
		list_del(&b->lru);
		free_block(b);
	}
	x->nr_cached = 0;
	bitmap_zero(x->live, x->nr_blocks);
	mutex_unlock(&x->io_lock);
}

void cow_index_destroy(struct cowfile_volume *v)
{
	struct cow_index *x = v->index;

	if (!x)
		return;
	cow_index_clear(v);
	kvfree(x->hash);
	kvfree(x->live);
	kfree(x);
	v->index = NULL;
}

size_t cow_index_bytes(struct cowfile_volume *v)
{
	struct cow_index *x = v->index;

	return sizeof(*x) + (sizeof(*x->hash) << x->hash_bits) +
	       BITS_TO_LONGS(x->nr_blocks) * sizeof(unsigned long) +
	       READ_ONCE(x->nr_cached) * (sizeof(struct index_block) + COWFILE_BLOCK_SIZE);
}

/*
 * The slot of @block's copy, COWFILE_COPYING, COWFILE_NOT_COPIED, or
 * COWFILE_INDEX_UNKNOWN when its index block is not in core. Never blocks.
 */
u64 cow_index_peek(struct cowfile_volume *v, u64 block)
{
	struct cow_index *x = v->index;
	u64 nr = block / COWFILE_INDEX_ENTRIES_PER_BLOCK;
	struct index_block *b;
	u64 slot;

	spin_lock(&x->lock);
	b = find_block(x, nr);
	if (b) {
		slot = entry_to_slot(le32_to_cpu(READ_ONCE(b->slots[block % COWFILE_INDEX_ENTRIES_PER_BLOCK])));
		WRITE_ONCE(b->referenced, true);
	} else {
		slot = test_bit(nr, x->live) ? COWFILE_INDEX_UNKNOWN : COWFILE_NOT_COPIED;
	}
	spin_unlock(&x->lock);
	return slot;
}

/* Index block reads or writes in flight together. */
struct index_io {
	atomic_t pending;
	struct completion done;
	bool error;
};

static void index_io_start(struct index_io *io)
{
	atomic_set(&io->pending, 1);
	init_completion(&io->done);
	io->error = false;
}

static void index_io_done(struct bio *bio)
{
	struct index_io *io = bio->bi_private;

	if (bio->bi_status)
		WRITE_ONCE(io->error, true);
	bio_put(bio);
	if (atomic_dec_and_test(&io->pending))
		complete(&io->done);
}

static int index_io_submit(struct cow_index *x, struct index_block *b, blk_opf_t opf,
			   struct index_io *io)
{
	struct bio *bio;
	sector_t sector;
	int r = store_index_sector(x->store, b->nr, &sector);

	if (r)
		return r;
	bio = cowfile_bio_alloc(x->store->bdev, 1, opf, GFP_NOIO, &x->store->bios);
	bio->bi_iter.bi_sector = sector;
	__bio_add_page(bio, virt_to_page(b->slots), COWFILE_BLOCK_SIZE,
		       offset_in_page(b->slots));
	bio->bi_end_io = index_io_done;
	bio->bi_private = io;
	atomic_inc(&io->pending);
	submit_bio(bio);
	return 0;
}

static int index_io_wait(struct index_io *io)
{
	if (!atomic_dec_and_test(&io->pending))
		wait_for_completion_io(&io->done);
	return READ_ONCE(io->error) ? -EIO : 0;
}

/*
 * Writes back every dirty block that may be evicted, all at once: an
 * eviction that needs a write back pays one wait for all of them.
 */
static int write_back(struct cow_index *x)
{
	struct blk_plug plug;
	struct index_io io;
	struct index_block *b;
	int r = 0;

	index_io_start(&io);
	blk_start_plug(&plug);
	list_for_each_entry(b, &x->lru, lru)
		if (b->dirty && !b->pins && !r)
			r = index_io_submit(x, b, REQ_OP_WRITE, &io);
	blk_finish_plug(&plug);
	r = index_io_wait(&io) ?: r;
	if (r)
		return r;
	list_for_each_entry(b, &x->lru, lru)
		if (!b->pins)
			b->dirty = false;
	return 0;
}

/*
 * A cached block to reuse, written back first if dirty: the least recently
 * looked up of those not pinned (a second chance for the referenced), or
 * NULL when every cached block is pinned or a write back failed (*r).
 */
static struct index_block *evict_one(struct cow_index *x, int *r)
{
	struct index_block *b;
	unsigned int n = 2 * x->nr_cached;

	while (n-- && !list_empty(&x->lru)) {
		b = list_first_entry(&x->lru, struct index_block, lru);
		list_move_tail(&b->lru, &x->lru);
		if (b->pins)
			continue;
		if (READ_ONCE(b->referenced)) {
			WRITE_ONCE(b->referenced, false);
			continue;
		}
		if (b->dirty) {
			*r = write_back(x);
			if (*r)
				return NULL;
		}
		spin_lock(&x->lock);
		hlist_del(&b->hash);
		spin_unlock(&x->lock);
		list_del(&b->lru);
		x->nr_cached--;
		return b;
	}
	return NULL;
}

static struct index_block *cached_block(struct cow_index *x, u64 nr)
{
	struct index_block *b;

	spin_lock(&x->lock);
	b = find_block(x, nr);
	spin_unlock(&x->lock);
	return b;
}

/* A block to fill: evicted, or allocated below the cap. Under io_lock. */
static struct index_block *spare_block(struct cow_index *x)
{
	struct index_block *b = NULL;
	int r = 0;

	/* Back under the cap, if pinned blocks had it exceeded. */
	while (x->nr_cached >= x->max_cached) {
		struct index_block *e = evict_one(x, &r);

		if (!e)
			break;
		if (b)
			free_block(b);
		b = e;
	}
	if (r) {
		if (b)
			free_block(b);
		return ERR_PTR(r);
	}
	if (!b) {
		/* Below the cap, or every cached block is pinned by a batch. */
		b = kzalloc(sizeof(*b), GFP_NOIO);
		if (b)
			b->slots = kmalloc(COWFILE_BLOCK_SIZE, GFP_NOIO);
		if (!b || !b->slots) {
			kfree(b);
			return ERR_PTR(-ENOMEM);
		}
	}
	return b;
}

/* Makes @b, filled, the cached index block @nr. Under io_lock. */
static void insert_block(struct cow_index *x, struct index_block *b, u64 nr)
{
	b->nr = nr;
	b->pins = 0;
	b->dirty = false;
	b->referenced = true;
	list_add_tail(&b->lru, &x->lru);
	x->nr_cached++;
	spin_lock(&x->lock);
	hlist_add_head(&b->hash, bucket(x, nr));
	spin_unlock(&x->lock);
}

/* Index block @nr in core, read or evicting another if need be. Under io_lock. */
static struct index_block *load_block(struct cow_index *x, u64 nr)
{
	struct index_block *b;
	struct index_io io;
	int r;

	lockdep_assert_held(&x->io_lock);
	b = cached_block(x, nr);
	if (b)
		return b;
	b = spare_block(x);
	if (IS_ERR(b))
		return b;
	b->nr = nr;
	if (test_bit(nr, x->live)) {
		index_io_start(&io);
		r = index_io_submit(x, b, REQ_OP_READ, &io);
		r = index_io_wait(&io) ?: r;
		if (r) {
			free_block(b);
			return ERR_PTR(r);
		}
	} else {
		memset(b->slots, 0, COWFILE_BLOCK_SIZE);
	}
	insert_block(x, b, nr);
	return b;
}

static bool listed(struct list_head *list, u64 nr)
{
	struct index_block *b;

	list_for_each_entry(b, list, lru)
		if (b->nr == nr)
			return true;
	return false;
}

/*
 * Reads the index blocks of @blocks (origin blocks, in any order) that are
 * not in core, all at once, so that the write worker's lookups for a batch
 * wait for one read instead of one each. Best effort: what fails here is
 * read again, and reported, by the lookup.
 */
void cow_index_prefetch(struct cowfile_volume *v, const u64 *blocks, unsigned int n)
{
	struct cow_index *x = v->index;
	struct index_block *b, *tmp;
	struct blk_plug plug;
	struct index_io io;
	LIST_HEAD(reading);
	unsigned int i, count = 0;

	mutex_lock(&x->io_lock);
	index_io_start(&io);
	blk_start_plug(&plug);
	for (i = 0; i < n && count < x->max_cached / 2; i++) {
		u64 nr = blocks[i] / COWFILE_INDEX_ENTRIES_PER_BLOCK;

		if (!test_bit(nr, x->live) || cached_block(x, nr) || listed(&reading, nr))
			continue;
		b = spare_block(x);
		if (IS_ERR(b))
			break;
		b->nr = nr;
		if (index_io_submit(x, b, REQ_OP_READ, &io)) {
			free_block(b);
			break;
		}
		list_add_tail(&b->lru, &reading);
		count++;
	}
	blk_finish_plug(&plug);
	if (index_io_wait(&io)) {
		list_for_each_entry_safe(b, tmp, &reading, lru)
			free_block(b);
	} else {
		list_for_each_entry_safe(b, tmp, &reading, lru) {
			list_del(&b->lru);
			insert_block(x, b, b->nr);
		}
	}
	mutex_unlock(&x->io_lock);
}

/* Sets @block's entry; its index block is in core, under io_lock. */
static void set_entry(struct cow_index *x, struct index_block *b, u64 block, u32 e)
{
	WRITE_ONCE(b->slots[block % COWFILE_INDEX_ENTRIES_PER_BLOCK], cpu_to_le32(e));
	b->dirty = true;
	set_bit(b->nr, x->live);
}

static struct index_block *lock_block(struct cow_index *x, u64 block)
{
	struct index_block *b;

	mutex_lock(&x->io_lock);
	b = load_block(x, block / COWFILE_INDEX_ENTRIES_PER_BLOCK);
	if (IS_ERR(b))
		mutex_unlock(&x->io_lock);
	return b;
}

static u32 get_entry(struct index_block *b, u64 block)
{
	return le32_to_cpu(b->slots[block % COWFILE_INDEX_ENTRIES_PER_BLOCK]);
}

/* As cow_index_peek(), reading the index block if need be: may block. */
int cow_index_get(struct cowfile_volume *v, u64 block, u64 *slot)
{
	struct cow_index *x = v->index;
	struct index_block *b = lock_block(x, block);

	if (IS_ERR(b))
		return PTR_ERR(b);
	*slot = entry_to_slot(get_entry(b, block));
	mutex_unlock(&x->io_lock);
	return 0;
}

/*
 * Marks @block COWFILE_COPYING unless it is copied or being copied: 1 when
 * it did (the caller copies the block, then publishes the copy), 0 when it
 * did not, or an error.
 */
int cow_index_claim(struct cowfile_volume *v, u64 block)
{
	struct cow_index *x = v->index;
	struct index_block *b = lock_block(x, block);
	int claimed = 0;

	if (IS_ERR(b))
		return PTR_ERR(b);
	if (get_entry(b, block) == ENTRY_NONE) {
		set_entry(x, b, block, ENTRY_COPYING);
		b->pins++;
		claimed = 1;
	}
	mutex_unlock(&x->io_lock);
	return claimed;
}

/* Publishes the copy of a claimed block: lookups find @slot from now on. */
void cow_index_publish(struct cowfile_volume *v, u64 block, u64 slot)
{
	struct cow_index *x = v->index;
	struct index_block *b;

	mutex_lock(&x->io_lock);
	spin_lock(&x->lock);
	b = find_block(x, block / COWFILE_INDEX_ENTRIES_PER_BLOCK);
	spin_unlock(&x->lock);
	/* Pinned since the claim. */
	if (!WARN_ON_ONCE(!b || get_entry(b, block) != ENTRY_COPYING)) {
		set_entry(x, b, block, slot);
		b->pins--;
	}
	mutex_unlock(&x->io_lock);
}

/* At load: @block's copy is in @slot. -EEXIST if the index had one. */
int cow_index_add(struct cowfile_volume *v, u64 block, u64 slot)
{
	struct cow_index *x = v->index;
	struct index_block *b = lock_block(x, block);
	int r = 0;

	if (IS_ERR(b))
		return PTR_ERR(b);
	if (get_entry(b, block) != ENTRY_NONE)
		r = -EEXIST;
	else
		set_entry(x, b, block, slot);
	mutex_unlock(&x->io_lock);
	return r;
}
