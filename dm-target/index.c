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
 * index block, says which ones were, and any other reads as empty. Index
 * blocks are written back only when the cache evicts them, never flushed:
 * a crash loses nothing the log does not hold.
 *
 * Lookups from map() never block: a block whose index block is not cached
 * answers COWFILE_INDEX_UNKNOWN, and the caller defers the bio to a worker,
 * which may read it. Changes come from the write worker and the load, under
 * io_lock. An index block with an entry COWFILE_COPYING is pinned in the
 * cache until the copy is published, so publishing never needs I/O, and
 * the markers of copies in flight stay in core (at most a batch of them).
 */
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

static int block_io(struct cow_index *x, struct index_block *b, blk_opf_t opf)
{
	sector_t sector;
	int r = store_index_sector(x->store, b->nr, &sector);

	return r ?: cowfile_block_io(x->store, x->store->bdev, sector, b->slots, opf);
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
			*r = block_io(x, b, REQ_OP_WRITE);
			if (*r)
				return NULL;
			b->dirty = false;
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

/* Index block @nr in core, read or evicting another if need be. Under io_lock. */
static struct index_block *load_block(struct cow_index *x, u64 nr)
{
	struct index_block *b;
	int r = 0;

	lockdep_assert_held(&x->io_lock);
	spin_lock(&x->lock);
	b = find_block(x, nr);
	spin_unlock(&x->lock);
	if (b)
		return b;

	/* Back under the cap, if pinned blocks had it exceeded. */
	b = NULL;
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
	b->nr = nr;
	b->pins = 0;
	b->dirty = false;
	b->referenced = true;
	if (test_bit(nr, x->live)) {
		r = block_io(x, b, REQ_OP_READ);
		if (r) {
			free_block(b);
			return ERR_PTR(r);
		}
	} else {
		memset(b->slots, 0, COWFILE_BLOCK_SIZE);
	}
	list_add_tail(&b->lru, &x->lru);
	x->nr_cached++;
	spin_lock(&x->lock);
	hlist_add_head(&b->hash, bucket(x, nr));
	spin_unlock(&x->lock);
	return b;
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
