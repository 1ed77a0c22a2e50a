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

static DEFINE_MUTEX(validate_lock);

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

int cowfile_block_io(struct block_device *bdev, sector_t sector, void *buf,
		     blk_opf_t opf)
{
	struct bio *bio;
	int r;

	bio = cowfile_bio_alloc(bdev, 1, opf, GFP_NOIO);
	bio->bi_iter.bi_sector = sector;
	__bio_add_page(bio, virt_to_page(buf), COWFILE_BLOCK_SIZE,
		       offset_in_page(buf));
	r = submit_bio_wait(bio);
	bio_put(bio);
	return r;
}

int store_logical_to_sector(struct cowfile_store *s, u64 block, sector_t *sector)
{
	unsigned int lo = 0, hi = s->nr_extents;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		struct store_extent *e = &s->extents[mid];

		if (block < e->logical)
			hi = mid;
		else if (block >= e->logical + e->blocks)
			lo = mid + 1;
		else {
			*sector = e->sector + (block - e->logical) * COWFILE_BLOCK_SECTORS;
			return 0;
		}
	}
	return -ERANGE;
}

sector_t store_slot_sector(struct cowfile_store *s, u64 slot)
{
	unsigned int lo = 0, hi = s->nr_slot_runs;
	sector_t chunk = le32_to_cpu(s->sb->chunk_sectors);

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		struct slot_run *r = &s->slots[mid];

		if (slot < r->first_slot)
			hi = mid;
		else if (slot >= r->first_slot + r->nr_slots)
			lo = mid + 1;
		else
			return r->sector + (slot - r->first_slot) * chunk;
	}
	return 0; /* callers never ask beyond total_slots */
}

/*
 * Data slots: each extent's part of the data area holds as many whole
 * chunks as fit, so a slot is always contiguous on the device. New extents
 * (grow) only append runs, so existing slot numbers never move.
 */
static int build_slot_runs(struct cowfile_store *s, unsigned int first_extent)
{
	u64 chunk_blocks = le32_to_cpu(s->sb->chunk_sectors) / COWFILE_BLOCK_SECTORS;
	struct slot_run *runs;
	unsigned int i, n = s->nr_slot_runs;

	runs = kvcalloc(s->nr_extents, sizeof(*runs), GFP_KERNEL);
	if (!runs)
		return -ENOMEM;
	if (s->slots)
		memcpy(runs, s->slots, n * sizeof(*runs));

	for (i = first_extent; i < s->nr_extents; i++) {
		struct store_extent *e = &s->extents[i];
		u64 start = max(e->logical, s->data_start);
		u64 end = e->logical + e->blocks;
		u64 nr;

		if (end <= start)
			continue;
		nr = div64_u64(end - start, chunk_blocks);
		if (!nr)
			continue;
		runs[n].first_slot = s->total_slots;
		runs[n].nr_slots = nr;
		runs[n].sector = e->sector + (start - e->logical) * COWFILE_BLOCK_SECTORS;
		s->total_slots += nr;
		n++;
	}
	kvfree(s->slots);
	s->slots = runs;
	s->nr_slot_runs = n;
	return 0;
}

static int add_extents(struct cowfile_store *s, const struct cowfile_extent *disk,
		       unsigned int n, u64 *logical, const char **why)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		struct store_extent *e = &s->extents[s->nr_extents];

		e->sector = le64_to_cpu(disk[i].sector);
		e->blocks = le64_to_cpu(disk[i].blocks);
		e->logical = *logical;
		if (!e->blocks || e->sector % COWFILE_BLOCK_SECTORS) {
			*why = "Store extent empty or not 4 KiB aligned";
			return -EINVAL;
		}
		if (e->sector + e->blocks * COWFILE_BLOCK_SECTORS >
		    bdev_nr_sectors(s->bdev)) {
			*why = "Store extent beyond the end of the store device";
			return -EINVAL;
		}
		*logical += e->blocks;
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

		r = cowfile_block_io(s->bdev, where, buf, REQ_OP_READ);
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
		r = add_extents(s, eb->extents, n, &logical, &why);
		if (r) {
			*error = (char *)why;
			return r;
		}
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

		if (store_logical_to_sector(s, i, &where) || where != want) {
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

static int check_layout(struct cowfile_store *s, char **error)
{
	struct cowfile_superblock *sb = s->sb;
	u32 chunk = le32_to_cpu(sb->chunk_sectors);

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
	    s->map_start + s->map_blocks > s->data_start ||
	    s->data_start > s->store_blocks) {
		*error = "Inconsistent store layout in superblock";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->snap_state) > COWFILE_SNAP_INVALID) {
		*error = "Invalid snapshot state in store superblock";
		return -EINVAL;
	}
	return 0;
}

int store_open(struct cowfile_store *s, struct block_device *bdev,
	       sector_t sb_sector, char **error)
{
	const char *why;
	void *buf;
	int r;

	s->bdev = bdev;
	s->sb_sector = sb_sector;
	mutex_init(&s->sb_lock);
	if (sb_sector % COWFILE_BLOCK_SECTORS ||
	    sb_sector + COWFILE_BLOCK_SECTORS > bdev_nr_sectors(bdev)) {
		*error = "Store superblock sector not 4 KiB aligned or beyond the device";
		return -EINVAL;
	}
	s->sb = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	buf = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	if (!s->sb || !buf) {
		*error = "Cannot allocate superblock buffer";
		r = -ENOMEM;
		goto out;
	}
	r = cowfile_block_io(bdev, sb_sector, s->sb, REQ_OP_READ);
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
	r = build_slot_runs(s, 0);
	if (r) {
		*error = "Cannot allocate slot table";
		goto out;
	}
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
	store_close(s);
	return r;
}

void store_close(struct cowfile_store *s)
{
	if (s->bufio)
		dm_bufio_client_destroy(s->bufio);
	s->bufio = NULL;
	kvfree(s->slots);
	s->slots = NULL;
	kvfree(s->extents);
	s->extents = NULL;
	kfree(s->sb);
	s->sb = NULL;
}

/* The in-core superblock is filled by the caller; seal and write it durably. */
int store_write_sb(struct cowfile_store *s)
{
	int r;

	mutex_lock(&s->sb_lock);
	seal_block(s->sb);
	r = cowfile_block_io(s->bdev, s->sb_sector, s->sb,
			     REQ_OP_WRITE | REQ_PREFLUSH | REQ_FUA | REQ_SYNC);
	mutex_unlock(&s->sb_lock);
	return r;
}

static int map_block_sector(struct cowfile_store *s, u64 index, sector_t *sector)
{
	if (index >= s->map_blocks)
		return -ERANGE;
	return store_logical_to_sector(s, s->map_start + index, sector);
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

	mutex_lock(&validate_lock);
	if (!aux->validated) {
		why = check_block(data, COWFILE_MAP_MAGIC, s->map_start + index, s->uuid);
		if (!why)
			WRITE_ONCE(aux->validated, true);
	}
	mutex_unlock(&validate_lock);
	if (why) {
		DMERR("chunk map block %llu at sector %llu: %s",
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

/* Starts reading the whole chunk map, extent by extent. */
void store_prefetch_map(struct cowfile_store *s)
{
	u64 i = 0;

	while (i < s->map_blocks) {
		sector_t sector;
		u64 run = 1;

		if (map_block_sector(s, i, &sector))
			return;
		while (i + run < s->map_blocks && run < 1024) {
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
 * grow: extents user space appended to the store file. They extend the data
 * area; the table block(s) they land in are rewritten, then the caller
 * writes the superblock that makes them count.
 */
int store_append_extents(struct cowfile_store *s, struct store_extent *new,
			 unsigned int n, char **error)
{
	struct cowfile_superblock *sb = s->sb;
	unsigned int first = s->nr_extents, i, blk, last_blk;
	void *buf;
	int r;

	if (first + n > s->table_blocks * COWFILE_EXTENTS_PER_BLOCK) {
		*error = "Store extent table full";
		return -ENOSPC;
	}
	for (i = 0; i < n; i++) {
		if (!new[i].blocks || new[i].sector % COWFILE_BLOCK_SECTORS ||
		    new[i].sector + new[i].blocks * COWFILE_BLOCK_SECTORS >
		    bdev_nr_sectors(s->bdev)) {
			*error = "Grow extent empty, not 4 KiB aligned or beyond the device";
			return -EINVAL;
		}
	}
	buf = kmalloc(COWFILE_BLOCK_SIZE, GFP_KERNEL);
	if (!buf) {
		*error = "Cannot allocate buffer";
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		new[i].logical = s->store_blocks;
		s->extents[s->nr_extents++] = new[i];
		s->store_blocks += new[i].blocks;
	}

	last_blk = (s->nr_extents - 1) / COWFILE_EXTENTS_PER_BLOCK;
	for (blk = first / COWFILE_EXTENTS_PER_BLOCK; blk <= last_blk; blk++) {
		struct cowfile_extent_block *eb = buf;
		unsigned int j, base = blk * COWFILE_EXTENTS_PER_BLOCK;

		init_block(buf, COWFILE_EXTENT_MAGIC, 1 + blk, s->uuid);
		for (j = 0; j < COWFILE_EXTENTS_PER_BLOCK && base + j < s->nr_extents; j++) {
			eb->extents[j].sector = cpu_to_le64(s->extents[base + j].sector);
			eb->extents[j].blocks = cpu_to_le64(s->extents[base + j].blocks);
		}
		seal_block(buf);
		r = cowfile_block_io(s->bdev, le64_to_cpu(sb->extent_table_sectors[blk]),
				     buf, REQ_OP_WRITE | REQ_FUA | REQ_SYNC);
		if (r) {
			*error = "Cannot write the store extent table";
			goto undo;
		}
	}
	r = build_slot_runs(s, first);
	if (r) {
		*error = "Cannot allocate slot table";
		goto undo;
	}
	sb->nr_extents = cpu_to_le32(s->nr_extents);
	sb->store_blocks = cpu_to_le64(s->store_blocks);
	kfree(buf);
	return 0;
undo:
	/* The on-disk superblock still counts only the old extents. */
	while (s->nr_extents > first)
		s->store_blocks -= s->extents[--s->nr_extents].blocks;
	kfree(buf);
	return r;
}

static int cmp_extent_sector(const void *a, const void *b)
{
	const struct store_extent *x = a, *y = b;

	return x->sector < y->sector ? -1 : x->sector > y->sector;
}

/* The store's sectors, sorted, for telling store I/O from volume I/O. */
struct store_extent *store_sorted_ranges(struct cowfile_store *s)
{
	struct store_extent *r;

	r = kvmalloc_array(s->nr_extents, sizeof(*r), GFP_KERNEL);
	if (!r)
		return NULL;
	memcpy(r, s->extents, s->nr_extents * sizeof(*r));
	sort(r, s->nr_extents, sizeof(*r), cmp_extent_sector, NULL);
	return r;
}

/* Whether [start, start + len) intersects a store range. */
bool store_ranges_overlap(struct store_extent *ranges, unsigned int n,
			  sector_t start, sector_t len)
{
	unsigned int lo = 0, hi = n;

	/* Find the first range that ends after start. */
	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (ranges[mid].sector + ranges[mid].blocks * COWFILE_BLOCK_SECTORS <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && ranges[lo].sector < start + len;
}

/* Whether [start, start + len) lies entirely inside store ranges. */
bool store_ranges_cover(struct store_extent *ranges, unsigned int n,
			sector_t start, sector_t len)
{
	sector_t end = start + len;
	unsigned int lo = 0, hi = n;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (ranges[mid].sector + ranges[mid].blocks * COWFILE_BLOCK_SECTORS <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Ranges never overlap; adjacent ones may continue each other. */
	while (lo < n && ranges[lo].sector <= start) {
		start = ranges[lo].sector + ranges[lo].blocks * COWFILE_BLOCK_SECTORS;
		if (start >= end)
			return true;
		lo++;
	}
	return false;
}
