// SPDX-License-Identifier: GPL-2.0
/*
 * Store I/O: the superblock, the extent table that maps logical store blocks
 * to sectors of the store device, data slots, and the chunk map blocks
 * (cached through dm-bufio). Everything read is validated before use.
 */
#include <linux/bio.h>
#include <linux/crc32c.h>
#include <linux/slab.h>
#include <linux/sort.h>

#include "cowfile.h"

/* Per-buffer state kept by dm-bufio: whether the block was validated. */
struct map_buffer_aux {
	bool validated;
};

static u32 block_csum(const void *block)
{
	return ~crc32c(~0U, (const u8 *)block + COWFILE_CSUM_OFFSET,
		       COWFILE_BLOCK_SIZE - COWFILE_CSUM_OFFSET);
}

static void seal_block(void *block)
{
	struct cowfile_block_header *h = block;

	h->csum = cpu_to_le32(block_csum(block));
}

static void init_block(void *block, u32 magic, u64 blocknr, const u8 *uuid)
{
	struct cowfile_block_header *h = block;

	memset(block, 0, COWFILE_BLOCK_SIZE);
	h->magic = cpu_to_le32(magic);
	h->blocknr = cpu_to_le64(blocknr);
	memcpy(h->store_uuid, uuid, sizeof(h->store_uuid));
}

/* Returns a reason the block cannot be trusted, or NULL. */
static const char *check_block(const void *block, u32 magic, u64 blocknr,
			       const u8 *uuid)
{
	const struct cowfile_block_header *h = block;

	if (le32_to_cpu(h->magic) != magic)
		return "bad magic";
	if (le32_to_cpu(h->csum) != block_csum(block))
		return "checksum mismatch";
	if (le64_to_cpu(h->blocknr) != blocknr)
		return "block number mismatch (moved or stale block)";
	if (uuid && memcmp(h->store_uuid, uuid, sizeof(h->store_uuid)))
		return "belongs to another store";
	return NULL;
}

int cowfile_block_io(struct cowfile_store *s, struct block_device *bdev,
		     sector_t sector, void *buf, blk_opf_t opf)
{
	struct bio *bio;
	int r;

	bio = cowfile_bio_alloc(bdev, 1, opf, GFP_NOIO, &s->bios);
	bio->bi_iter.bi_sector = sector;
	__bio_add_page(bio, virt_to_page(buf), COWFILE_BLOCK_SIZE,
		       offset_in_page(buf));
	r = submit_bio_wait(bio);
	bio_put(bio);
	return r;
}

/* An empty flush from the store's own bio_set (blkdev_issue_flush() uses fs_bio_set). */
int cowfile_flush(struct cowfile_store *s, struct block_device *bdev)
{
	struct bio *bio;
	int r;

	bio = cowfile_bio_alloc(bdev, 0, REQ_OP_WRITE | REQ_PREFLUSH, GFP_NOIO, &s->bios);
	r = submit_bio_wait(bio);
	bio_put(bio);
	return r;
}

/* Logical block to device sector through the first @n extents. */
static int logical_to_sector(struct cowfile_store *s, unsigned int n, u64 block,
			     sector_t *sector)
{
	unsigned int lo = 0, hi = n;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		struct store_extent *e = &s->extents[mid];

		if (block < e->logical)
			hi = mid;
		else if (block - e->logical >= e->blocks)
			lo = mid + 1;
		else {
			*sector = e->sector + (block - e->logical) * COWFILE_BLOCK_SECTORS;
			return 0;
		}
	}
	return -ERANGE;
}

sector_t store_slot_sector(struct store_layout *l, u64 slot)
{
	unsigned int lo = 0, hi = l->nr_slot_runs;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		struct slot_run *r = &l->slots[mid];

		if (slot < r->first_slot)
			hi = mid;
		else if (slot - r->first_slot >= r->nr_slots)
			lo = mid + 1;
		else
			return r->sector + (slot - r->first_slot) * COWFILE_BLOCK_SECTORS;
	}
	WARN_ON_ONCE(1);	/* callers never ask beyond total_slots */
	return 0;
}

static int cmp_extent_sector(const void *a, const void *b)
{
	const struct store_extent *x = a, *y = b;

	return x->sector < y->sector ? -1 : x->sector > y->sector;
}

static sector_t extent_end(const struct store_extent *e)
{
	return e->sector + e->blocks * COWFILE_BLOCK_SECTORS;
}

/*
 * The layout of the first @nr_extents extents: data slots (a slot is a
 * logical block of the data area, slot n is block data_start + n; appended
 * extents only append runs, so slot numbers never move) and the store's
 * sectors sorted, which must not overlap each other nor, with the store on
 * the origin, leave the origin.
 */
struct store_layout *store_layout_build(struct cowfile_store *s,
					unsigned int nr_extents, char **error)
{
	struct store_layout *l;
	unsigned int i;

	l = kvzalloc(sizeof(*l) + nr_extents * (sizeof(*l->slots) + sizeof(*l->ranges)),
		     GFP_KERNEL);
	if (!l) {
		*error = "Cannot allocate the store layout";
		return ERR_PTR(-ENOMEM);
	}
	l->slots = (struct slot_run *)(l + 1);
	l->ranges = (struct store_extent *)(l->slots + nr_extents);

	for (i = 0; i < nr_extents; i++) {
		struct store_extent *e = &s->extents[i];
		u64 start = max(e->logical, s->data_start);
		u64 end = e->logical + e->blocks;
		struct slot_run *run = &l->slots[l->nr_slot_runs];

		l->ranges[i] = *e;
		if (end <= start)
			continue;
		run->nr_slots = end - start;
		run->first_slot = l->total_slots;
		run->sector = e->sector + (start - e->logical) * COWFILE_BLOCK_SECTORS;
		l->total_slots += run->nr_slots;
		l->nr_slot_runs++;
	}
	/* Log records name slots with a u32. */
	if (l->total_slots >= U32_MAX) {
		*error = "Store has more data slots than the log can name";
		goto bad;
	}
	sort(l->ranges, nr_extents, sizeof(*l->ranges), cmp_extent_sector, NULL);
	for (i = 1; i < nr_extents; i++) {
		if (l->ranges[i].sector < extent_end(&l->ranges[i - 1])) {
			*error = "Store extents overlap";
			goto bad;
		}
	}
	if (s->on_origin) {
		if (nr_extents && extent_end(&l->ranges[nr_extents - 1]) > s->origin_sectors) {
			*error = "Store extent beyond the end of the origin";
			goto bad;
		}
		l->nr_ranges = nr_extents;
	}
	return l;
bad:
	kvfree(l);
	return ERR_PTR(-EINVAL);
}

static void layout_free_rcu(struct rcu_head *rcu)
{
	kvfree(container_of(rcu, struct store_layout, rcu));
}

/* Swaps in a new layout (writers serialise: the volume's state_lock). */
void store_layout_publish(struct cowfile_store *s, struct store_layout *l)
{
	struct store_layout *old = rcu_dereference_protected(s->layout, true);

	rcu_assign_pointer(s->layout, l);
	s->total_slots = l->total_slots;
	if (old)
		call_rcu(&old->rcu, layout_free_rcu);
}

/* A store extent as read from disk or from a grow message. */
int store_check_extent(struct cowfile_store *s, u64 sector, u64 blocks,
		       char **error)
{
	u64 sectors, end;

	if (!blocks || sector % COWFILE_BLOCK_SECTORS) {
		*error = "Store extent empty or not 4 KiB aligned";
		return -EINVAL;
	}
	if (check_mul_overflow(blocks, (u64)COWFILE_BLOCK_SECTORS, &sectors) ||
	    check_add_overflow(sector, sectors, &end) ||
	    end > bdev_nr_sectors(s->bdev)) {
		*error = "Store extent beyond the end of the store device";
		return -EINVAL;
	}
	return 0;
}

static int add_extents(struct cowfile_store *s, const struct cowfile_extent *disk,
		       unsigned int n, u64 *logical, char **error)
{
	unsigned int i;
	int r;

	for (i = 0; i < n; i++) {
		struct store_extent *e = &s->extents[s->nr_extents];

		e->sector = le64_to_cpu(disk[i].sector);
		e->blocks = le64_to_cpu(disk[i].blocks);
		e->logical = *logical;
		r = store_check_extent(s, e->sector, e->blocks, error);
		if (r)
			return r;
		if (check_add_overflow(*logical, e->blocks, logical)) {
			*error = "Store extents do not cover the store";
			return -EINVAL;
		}
		s->nr_extents++;
	}
	return 0;
}

static int read_extent_table(struct cowfile_store *s, void *buf, char **error)
{
	struct cowfile_superblock *sb = s->sb;
	unsigned int nr = le32_to_cpu(sb->nr_extents);
	unsigned int blocks = DIV_ROUND_UP(nr, COWFILE_EXTENTS_PER_BLOCK);
	const char *why = NULL;
	u64 logical = 0;
	unsigned int i;
	int r;

	s->extents = kvcalloc(s->table_blocks * COWFILE_EXTENTS_PER_BLOCK,
			      sizeof(*s->extents), GFP_KERNEL);
	if (!s->extents) {
		*error = "Cannot allocate the extent table";
		return -ENOMEM;
	}
	for (i = 0; i < blocks; i++) {
		struct cowfile_extent_block *eb = buf;
		sector_t where = le64_to_cpu(sb->extent_table_sectors[i]);
		unsigned int n = min_t(unsigned int, nr - i * COWFILE_EXTENTS_PER_BLOCK,
				       COWFILE_EXTENTS_PER_BLOCK);

		r = cowfile_block_io(s, s->bdev, where, buf, REQ_OP_READ);
		if (r) {
			*error = "Cannot read the store extent table";
			return r;
		}
		why = check_block(buf, COWFILE_EXTENT_MAGIC, 1 + i, s->uuid);
		if (why) {
			DMERR("store extent table block %u at sector %llu: %s",
			      1 + i, (unsigned long long)where, why);
			*error = "Store extent table corrupt or foreign";
			return -EILSEQ;
		}
		r = add_extents(s, eb->extents, n, &logical, error);
		if (r)
			return r;
	}
	if (logical != s->store_blocks) {
		*error = "Store extents do not cover the store";
		return -EINVAL;
	}
	/* The table must describe where the superblock and itself live. */
	for (i = 0; i <= s->table_blocks; i++) {
		sector_t where;
		sector_t want = i ? le64_to_cpu(sb->extent_table_sectors[i - 1]) :
				    s->sb_sector;

		if (logical_to_sector(s, s->nr_extents, i, &where) || where != want) {
			*error = "Store extent table does not match the superblock's location";
			return -EINVAL;
		}
	}
	return 0;
}

static void map_alloc_cb(struct dm_buffer *b)
{
	struct map_buffer_aux *aux = dm_bufio_get_aux_data(b);

	aux->validated = false;
}

static void map_write_cb(struct dm_buffer *b)
{
	seal_block(dm_bufio_get_block_data(b));
}

static int place_index(struct cowfile_store *s, char **error);

static int check_layout(struct cowfile_store *s, char **error)
{
	struct cowfile_superblock *sb = s->sb;
	u32 chunk = le32_to_cpu(sb->chunk_sectors);

	if (le32_to_cpu(sb->version) == 1) {
		*error = "Store of format 1 (dm-cowfile before 64 KiB copies became 4 KiB): recreate it";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->version) != COWFILE_FORMAT_VERSION) {
		*error = "Unsupported store format version";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->block_size) != COWFILE_BLOCK_SIZE) {
		*error = "Unsupported store block size";
		return -EINVAL;
	}
	if (!is_power_of_2(chunk) || chunk < COWFILE_MIN_CHUNK_SECTORS ||
	    chunk > COWFILE_MAX_CHUNK_SECTORS) {
		*error = "Invalid chunk size in store superblock";
		return -EINVAL;
	}
	if (le64_to_cpu(sb->sb_sector) != s->sb_sector) {
		*error = "Store superblock was moved (its recorded sector differs)";
		return -EINVAL;
	}
	s->table_blocks = le32_to_cpu(sb->extent_table_blocks);
	s->map_start = le64_to_cpu(sb->map_start);
	s->map_blocks = le64_to_cpu(sb->map_blocks);
	s->data_start = le64_to_cpu(sb->data_start);
	s->store_blocks = le64_to_cpu(sb->store_blocks);
	if (!s->table_blocks || s->table_blocks > COWFILE_MAX_EXTENT_TABLE_BLOCKS ||
	    !le32_to_cpu(sb->nr_extents) ||
	    le32_to_cpu(sb->nr_extents) > s->table_blocks * COWFILE_EXTENTS_PER_BLOCK ||
	    s->map_start < 1 + s->table_blocks ||
	    s->map_blocks > s->data_start || s->map_start > s->data_start - s->map_blocks ||
	    s->data_start > s->store_blocks) {
		*error = "Inconsistent store layout in superblock";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->snap_state) > COWFILE_SNAP_INVALID) {
		*error = "Invalid snapshot state in store superblock";
		return -EINVAL;
	}
	return place_index(s, error);
}

/*
 * The index area lies between the chunk map and the data area. A store
 * made before it existed has no room there: its data area starts later
 * from now on (in core; the superblock says so once the volume is
 * activated), and a log it held started where the area now is
 * (index_moved: the volume invalidates that snapshot).
 */
static int place_index(struct cowfile_store *s, char **error)
{
	struct cowfile_superblock *sb = s->sb;

	s->index_start = s->map_start + s->map_blocks;
	s->index_blocks = COWFILE_INDEX_BLOCKS(le64_to_cpu(sb->origin_sectors));
	s->index_moved = false;
	if (s->data_start - s->index_start >= s->index_blocks)
		return 0;
	if (s->index_blocks >= s->store_blocks - s->index_start) {
		*error = "Store too small for the index of its copies: create it anew";
		return -ENOSPC;
	}
	DMINFO("store made before its index area: the data area now starts at block %llu",
	       (unsigned long long)(s->index_start + s->index_blocks));
	s->data_start = s->index_start + s->index_blocks;
	sb->data_start = cpu_to_le64(s->data_start);
	s->index_moved = true;
	return 0;
}

int store_open(struct cowfile_store *s, struct block_device *bdev,
	       sector_t sb_sector, char **error)
{
	struct store_layout *layout;
	const char *why;
	void *buf;
	int r;

	s->bdev = bdev;
	s->sb_sector = sb_sector;
	mutex_init(&s->sb_lock);
	mutex_init(&s->validate_lock);
	r = bioset_init(&s->bios, 4, 0, BIOSET_NEED_BVECS);
	if (r) {
		*error = "Cannot allocate the store's bio set";
		return r;
	}
	if (sb_sector % COWFILE_BLOCK_SECTORS ||
	    sb_sector + COWFILE_BLOCK_SECTORS > bdev_nr_sectors(bdev)) {
		*error = "Store superblock sector not 4 KiB aligned or beyond the device";
		r = -EINVAL;
		goto bad;
	}
	s->sb = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	buf = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	if (!s->sb || !buf) {
		*error = "Cannot allocate superblock buffer";
		r = -ENOMEM;
		goto out;
	}
	r = cowfile_block_io(s, bdev, sb_sector, s->sb, REQ_OP_READ);
	if (r) {
		*error = "Cannot read the store superblock";
		goto out;
	}
	why = check_block(s->sb, COWFILE_SB_MAGIC, 0, NULL);
	if (why) {
		DMERR("store superblock at sector %llu: %s",
		      (unsigned long long)sb_sector, why);
		*error = le32_to_cpu(s->sb->hdr.magic) == COWFILE_SB_MAGIC ?
			 "Store superblock corrupt (checksum or block number)" :
			 "No cowfile store superblock at that sector";
		r = -EILSEQ;
		goto out;
	}
	memcpy(s->uuid, s->sb->hdr.store_uuid, sizeof(s->uuid));
	r = check_layout(s, error);
	if (r)
		goto out;
	r = read_extent_table(s, buf, error);
	if (r)
		goto out;
	s->meta_extents = s->nr_extents;
	layout = store_layout_build(s, s->nr_extents, error);
	if (IS_ERR(layout)) {
		r = PTR_ERR(layout);
		goto out;
	}
	store_layout_publish(s, layout);
	s->bufio = cowfile_bufio_create(bdev, COWFILE_BLOCK_SIZE, 4,
					sizeof(struct map_buffer_aux),
					map_alloc_cb, map_write_cb);
	if (IS_ERR(s->bufio)) {
		r = PTR_ERR(s->bufio);
		s->bufio = NULL;
		*error = "Cannot create buffer cache for the chunk map";
		goto out;
	}
	kfree(buf);
	return 0;
out:
	kfree(buf);
bad:
	store_close(s);
	return r;
}

/* No reader of the layout is left (every table of the volume is gone). */
void store_close(struct cowfile_store *s)
{
	if (s->bufio)
		dm_bufio_client_destroy(s->bufio);
	s->bufio = NULL;
	kvfree(rcu_dereference_protected(s->layout, true));
	RCU_INIT_POINTER(s->layout, NULL);
	kvfree(s->extents);
	s->extents = NULL;
	kfree(s->sb);
	s->sb = NULL;
	bioset_exit(&s->bios);
}

/* A record block of the log, to be written to @slot. */
void store_seal_log_block(struct cowfile_store *s, void *block, u64 slot)
{
	struct cowfile_block_header *h = block;

	h->magic = cpu_to_le32(COWFILE_LOG_MAGIC);
	h->blocknr = cpu_to_le64(s->data_start + slot);
	memcpy(h->store_uuid, s->uuid, sizeof(h->store_uuid));
	seal_block(block);
}

/* Returns a reason the record block read from @slot cannot be trusted, or NULL. */
const char *store_check_log_block(struct cowfile_store *s, const void *block, u64 slot)
{
	return check_block(block, COWFILE_LOG_MAGIC, s->data_start + slot, s->uuid);
}

/* The in-core superblock is filled by the caller; seal and write it durably. */
int store_write_sb(struct cowfile_store *s)
{
	int r;

	mutex_lock(&s->sb_lock);
	seal_block(s->sb);
	r = cowfile_block_io(s, s->bdev, s->sb_sector, s->sb,
			     REQ_OP_WRITE | REQ_PREFLUSH | REQ_FUA | REQ_SYNC);
	mutex_unlock(&s->sb_lock);
	return r;
}

/* Chunk map blocks lie in the extents the store was opened with. */
static int map_block_sector(struct cowfile_store *s, u64 index, sector_t *sector)
{
	if (index >= s->map_blocks)
		return -ERANGE;
	return logical_to_sector(s, s->meta_extents, s->map_start + index, sector);
}

/* Where block @leaf of the index area lives on the store device. */
int store_index_sector(struct cowfile_store *s, u64 leaf, sector_t *sector)
{
	if (leaf >= s->index_blocks)
		return -ERANGE;
	return logical_to_sector(s, s->meta_extents, s->index_start + leaf, sector);
}

/*
 * Returns the data of chunk map block @index, held in *bp, validated the
 * first time it is read from disk. ERR_PTR(-EILSEQ) when the block cannot be
 * trusted (the buffer is then released).
 */
void *store_map_block(struct cowfile_store *s, u64 index, struct dm_buffer **bp)
{
	struct map_buffer_aux *aux;
	const char *why = NULL;
	sector_t sector;
	void *data;
	int r;

	r = map_block_sector(s, index, &sector);
	if (r)
		return ERR_PTR(r);
	data = dm_bufio_read(s->bufio, sector >> 3, bp);
	if (IS_ERR(data))
		return data;
	aux = dm_bufio_get_aux_data(*bp);
	if (likely(READ_ONCE(aux->validated)))
		return data;

	mutex_lock(&s->validate_lock);
	if (!aux->validated) {
		why = check_block(data, COWFILE_MAP_MAGIC, s->map_start + index, s->uuid);
		if (!why)
			WRITE_ONCE(aux->validated, true);
	}
	mutex_unlock(&s->validate_lock);
	if (why) {
		DMERR_LIMIT("chunk map block %llu at sector %llu: %s",
			    (unsigned long long)index, (unsigned long long)sector, why);
		dm_bufio_release(*bp);
		return ERR_PTR(-EILSEQ);
	}
	return data;
}

/*
 * store_map_block() without I/O or waiting for it: NULL when block @index
 * is not in dm-bufio's cache, or not validated yet.
 */
void *store_cached_map_block(struct cowfile_store *s, u64 index, struct dm_buffer **bp)
{
	struct map_buffer_aux *aux;
	sector_t sector;
	void *data;

	if (map_block_sector(s, index, &sector))
		return ERR_PTR(-ERANGE);
	data = dm_bufio_get(s->bufio, sector >> 3, bp);
	if (IS_ERR_OR_NULL(data))
		return NULL; /* a read error: store_map_block() reports it */
	aux = dm_bufio_get_aux_data(*bp);
	if (!READ_ONCE(aux->validated)) {
		dm_bufio_release(*bp);
		return NULL;
	}
	return data;
}

/* Replaces map block @index with an empty, valid one (all chunks unwritten). */
void *store_reset_map_block(struct cowfile_store *s, u64 index, struct dm_buffer **bp)
{
	struct map_buffer_aux *aux;
	sector_t sector;
	void *data;
	int r;

	r = map_block_sector(s, index, &sector);
	if (r)
		return ERR_PTR(r);
	data = dm_bufio_new(s->bufio, sector >> 3, bp);
	if (IS_ERR(data))
		return data;
	init_block(data, COWFILE_MAP_MAGIC, s->map_start + index, s->uuid);
	aux = dm_bufio_get_aux_data(*bp);
	WRITE_ONCE(aux->validated, true);
	dm_bufio_mark_buffer_dirty(*bp);
	return data;
}

/*
 * Starts reading chunk map blocks [@first, @first + @count), extent by
 * extent. A window at a time: prefetching a map larger than dm-bufio's
 * cache would evict the first blocks before they are used, and read them
 * again one at a time.
 */
void store_prefetch_map(struct cowfile_store *s, u64 first, u64 count)
{
	u64 i = first, end = min(first + count, s->map_blocks);

	while (i < end) {
		sector_t sector;
		u64 run = 1;

		if (map_block_sector(s, i, &sector))
			return;
		while (i + run < end) {
			sector_t next;

			if (map_block_sector(s, i + run, &next) ||
			    next != sector + run * COWFILE_BLOCK_SECTORS)
				break;
			run++;
		}
		dm_bufio_prefetch(s->bufio, sector >> 3, run);
		i += run;
	}
}

/*
 * Makes every dirty chunk map block durable: dm-bufio writes them, waits,
 * and ends with a flush of the store device (every kernel we support).
 */
int store_commit_map(struct cowfile_store *s)
{
	return dm_bufio_write_dirty_buffers(s->bufio);
}

/*
 * Writes the extent table blocks that hold entries first..nr_extents-1 of
 * s->extents, durably. The superblock's nr_extents decides how many count.
 */
int store_write_extent_table(struct cowfile_store *s, unsigned int first,
			     unsigned int nr_extents)
{
	unsigned int blk, last_blk = (nr_extents - 1) / COWFILE_EXTENTS_PER_BLOCK;
	void *buf;
	int r = 0;

	buf = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	for (blk = first / COWFILE_EXTENTS_PER_BLOCK; blk <= last_blk && !r; blk++) {
		struct cowfile_extent_block *eb = buf;
		unsigned int j, base = blk * COWFILE_EXTENTS_PER_BLOCK;

		init_block(buf, COWFILE_EXTENT_MAGIC, 1 + blk, s->uuid);
		for (j = 0; j < COWFILE_EXTENTS_PER_BLOCK && base + j < nr_extents; j++) {
			eb->extents[j].sector = cpu_to_le64(s->extents[base + j].sector);
			eb->extents[j].blocks = cpu_to_le64(s->extents[base + j].blocks);
		}
		seal_block(buf);
		r = cowfile_block_io(s, s->bdev, le64_to_cpu(s->sb->extent_table_sectors[blk]),
				     buf, REQ_OP_WRITE | REQ_FUA | REQ_SYNC);
	}
	kfree(buf);
	return r;
}

/* Finds the first range that ends after @start. */
static unsigned int first_range_after(const struct store_layout *l, sector_t start)
{
	unsigned int lo = 0, hi = l->nr_ranges;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (extent_end(&l->ranges[mid]) <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether [start, start + len) intersects a store range. */
bool store_ranges_overlap(const struct store_layout *l, sector_t start, sector_t len)
{
	unsigned int i = first_range_after(l, start);

	return i < l->nr_ranges && l->ranges[i].sector < start + len;
}

/* Whether [start, start + len) lies entirely inside store ranges. */
bool store_ranges_cover(const struct store_layout *l, sector_t start, sector_t len)
{
	sector_t end = start + len;
	unsigned int i = first_range_after(l, start);

	/* Ranges never overlap; adjacent ones may continue each other. */
	for (; i < l->nr_ranges && l->ranges[i].sector <= start; i++) {
		start = extent_end(&l->ranges[i]);
		if (start >= end)
			return true;
	}
	return false;
}
