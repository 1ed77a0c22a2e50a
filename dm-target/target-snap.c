// SPDX-License-Identifier: GPL-2.0
/*
 * The "cowfile-snap" target: the read-only image of the snapshot held by
 * the cowfile device over the same origin. A 4 KiB block copied since the
 * snapshot is read from its store slot, any other from the origin; the
 * store's own sectors read as zeros. A read goes down as a piece per run
 * of uncopied blocks and per run of copies next to each other in the
 * store, unless it holds two runs of uncopied blocks or more: then it is
 * read whole from the origin, and each run of copies over it (an overlay:
 * one origin request instead of one per run of uncopied blocks). A read
 * whose index blocks are not in core is an overlay too: map() never waits
 * for the index, the overlay's worker may.
 *
 *   cowfile-snap <origin_dev>
 */
#include <linux/module.h>
#include <linux/bio.h>
#include <linux/highmem.h>
#include <linux/workqueue.h>

#include "cowfile.h"

struct snap_c {
	struct dm_dev *origin;
	struct cowfile_volume *volume;
	struct bio_set clones;		/* an overlay's origin and store reads */
	struct workqueue_struct *wq;	/* sends an overlay's store reads */
};

/*
 * An image read is cut at this many sectors, or at the chunk size when it
 * is larger: a read of the origin counts in the reads_inflight bucket of
 * every chunk it covers, at most 256 (1 MiB of 4 KiB chunks).
 */
#define SNAP_MAX_IO_SECTORS	2048u

/* Per image read: what end_io must undo or fix up. */
struct snap_io {
	u64 first_chunk;		/* counted in the reads_inflight */
	unsigned int nr_chunks;		/* buckets of these chunks, or none */
	bool check_store;		/* the store is on the origin */
	sector_t origin_sector;
	struct bvec_iter iter;		/* the bio's data, as mapped */
	/* An overlay: its reads in flight, and an error of any of them. */
	struct snap_c *sc;
	struct work_struct work;
	atomic_t pending;
	blk_status_t status;
};

static int snap_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct snap_c *sc;
	int r;

	if (argc != 1) {
		ti->error = "Invalid argument count: <origin_dev>";
		return -EINVAL;
	}
	if (dm_table_get_mode(ti->table) & COWFILE_MODE_WRITE) {
		ti->error = "The snapshot image is read-only: load the table with --readonly";
		return -EROFS;
	}
	sc = kzalloc(sizeof(*sc), GFP_KERNEL);
	if (!sc) {
		ti->error = "Cannot allocate context";
		return -ENOMEM;
	}
	r = dm_get_device(ti, argv[0], COWFILE_MODE_READ, &sc->origin);
	if (r) {
		ti->error = "Cannot open origin device";
		goto bad;
	}
	sc->volume = volume_get_image(sc->origin->bdev->bd_dev, &ti->error);
	if (IS_ERR(sc->volume)) {
		r = PTR_ERR(sc->volume);
		goto bad_origin;
	}
	if (ti->begin || ti->len != sc->volume->origin_sectors) {
		ti->error = "The image must start at 0 and be as long as the origin";
		r = -EINVAL;
		goto bad_volume;
	}
	r = dm_set_target_max_io_len(ti, max(sc->volume->chunk_sectors, SNAP_MAX_IO_SECTORS));
	if (r) {
		ti->error = "Cannot set the maximum I/O size";
		goto bad_volume;
	}
	r = bioset_init(&sc->clones, BIO_POOL_SIZE, 0, 0);
	if (r) {
		ti->error = "Cannot allocate the image's bio set";
		goto bad_volume;
	}
	sc->wq = alloc_workqueue("kcowfile-snap", WQ_MEM_RECLAIM | COWFILE_WQ_PERCPU, 0);
	if (!sc->wq) {
		ti->error = "Cannot allocate the image's workqueue";
		r = -ENOMEM;
		goto bad_bioset;
	}
	ti->private = sc;
	ti->num_flush_bios = 1;
	ti->per_io_data_size = sizeof(struct snap_io);
	return 0;

bad_bioset:
	bioset_exit(&sc->clones);
bad_volume:
	volume_put_image(sc->volume);
bad_origin:
	dm_put_device(ti, sc->origin);
bad:
	kfree(sc);
	return r;
}

static void snap_dtr(struct dm_target *ti)
{
	struct snap_c *sc = ti->private;

	destroy_workqueue(sc->wq);
	bioset_exit(&sc->clones);
	volume_put_image(sc->volume);
	dm_put_device(ti, sc->origin);
	kfree(sc);
}

/*
 * Counts an image read of the origin in the bucket of each chunk it covers
 * (@inc), or takes it out again; the write worker waits for no readers in
 * a chunk's bucket before any write to the chunk reaches the origin.
 */
static void count_read(struct cowfile_volume *v, struct snap_io *io, bool inc)
{
	bool wake = false;
	unsigned int i;

	for (i = 0; i < io->nr_chunks; i++) {
		atomic_t *n = &v->reads_inflight[read_bucket(io->first_chunk + i)];

		if (inc)
			atomic_inc(n);
		else
			wake |= atomic_dec_and_test(n);
	}
	if (!inc) {
		io->nr_chunks = 0;
		if (wake)
			wake_up(&v->reads_wait);
	}
}

/* Zeroes the parts of a completed image read that fall on store sectors. */
static void zero_store_sectors(struct cowfile_volume *v, struct bio *bio,
			       struct snap_io *io)
{
	sector_t sector = io->origin_sector;
	struct store_layout *layout;
	struct bvec_iter iter;
	struct bio_vec bv;

	rcu_read_lock();
	layout = rcu_dereference(v->store.layout);
	if (!store_ranges_overlap(layout, sector, io->iter.bi_size >> SECTOR_SHIFT))
		goto out;
	__bio_for_each_segment(bv, bio, iter, io->iter) {
		unsigned int off;

		for (off = 0; off < bv.bv_len; off += SECTOR_SIZE, sector++) {
			if (store_ranges_overlap(layout, sector, 1))
				memzero_page(bv.bv_page, bv.bv_offset + off,
					     min_t(unsigned int, SECTOR_SIZE, bv.bv_len - off));
		}
	}
out:
	rcu_read_unlock();
}

static void overlay_put(struct snap_io *io)
{
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(struct snap_io));

	if (atomic_dec_and_test(&io->pending)) {
		bio->bi_status = READ_ONCE(io->status);
		bio_endio(bio);
	}
}

static void overlay_copy_done(struct bio *clone)
{
	struct snap_io *io = clone->bi_private;

	if (clone->bi_status)
		WRITE_ONCE(io->status, clone->bi_status);
	bio_put(clone);
	overlay_put(io);
}

/*
 * An overlay's second step, once the origin read is in the bio: each run of
 * the blocks copied by now is read over it from the store.
 */
static void overlay_copies(struct work_struct *work)
{
	struct snap_io *io = container_of(work, struct snap_io, work);
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(struct snap_io));
	struct snap_c *sc = io->sc;
	struct cowfile_volume *v = sc->volume;
	sector_t sector = io->origin_sector;
	sector_t end = sector + (io->iter.bi_size >> SECTOR_SHIFT);
	sector_t where, run;
	bool copied;

	atomic_set(&io->pending, 1);
	if (READ_ONCE(v->snap_state) != COWFILE_SNAP_ACTIVE)
		io->status = BLK_STS_IOERR;
	for (; !READ_ONCE(io->status) && sector < end; sector += run) {
		struct bio *clone;

		if (cow_image_run(v, sector, end - sector, true, &copied, &where, &run)) {
			WRITE_ONCE(io->status, BLK_STS_IOERR);
			break;
		}
		if (!copied)
			continue;
		clone = cowfile_bio_clone(v->store.bdev, bio, GFP_NOIO, &sc->clones);
		clone->bi_iter = io->iter;
		bio_advance_iter(clone, &clone->bi_iter, to_bytes(sector - io->origin_sector));
		clone->bi_iter.bi_size = to_bytes(run);
		clone->bi_iter.bi_sector = where;
		clone->bi_end_io = overlay_copy_done;
		clone->bi_private = io;
		atomic_inc(&io->pending);
		submit_bio_noacct(clone);
	}
	overlay_put(io);
}

static void overlay_origin_done(struct bio *clone)
{
	struct bio *bio = clone->bi_private;
	struct snap_io *io = dm_per_bio_data(bio, sizeof(struct snap_io));
	struct cowfile_volume *v = io->sc->volume;

	io->status = clone->bi_status;
	bio_put(clone);
	if (!io->status && io->check_store)
		zero_store_sectors(v, bio, io);
	io->check_store = false;
	count_read(v, io, false);
	if (io->status) {
		bio->bi_status = io->status;
		bio_endio(bio);
		return;
	}
	queue_work(io->sc->wq, &io->work);
}

/*
 * Whether a read is fewer requests as an overlay: one origin read and one
 * per run of copies, against one per run of either kind (which go down
 * side by side). It is when the read holds two runs of uncopied blocks or
 * more: @uncopied of them before @sector, where the runs left to look at
 * begin. A read whose index is not all in core is an overlay too: only
 * its worker may wait for the index.
 */
static bool overlay_saves_requests(struct cowfile_volume *v, sector_t sector, sector_t len,
				   unsigned int uncopied)
{
	sector_t where, run;
	bool copied;

	for (; len; sector += run, len -= run) {
		if (cow_image_run(v, sector, len, false, &copied, &where, &run))
			return true;
		if (!copied && ++uncopied == 2)
			return true;
	}
	return false;
}

/*
 * A read of both copied and uncopied blocks: the whole range is read from
 * the origin, counted in the bucket of every chunk it covers, and the
 * copies are read over it once it is in. Whichever blocks are copied by
 * then, the others were still the instant's on the origin while the read
 * was counted: the write worker publishes a copy before it waits for no
 * counted readers of the chunk, and only then lets a write reach the
 * origin (a block it copied meanwhile reads the same data from its slot).
 */
static int overlay_read(struct snap_c *sc, struct bio *bio, struct snap_io *io,
			sector_t sector)
{
	struct cowfile_volume *v = sc->volume;
	struct bio *clone;

	io->sc = sc;
	io->status = BLK_STS_OK;
	io->origin_sector = sector;
	io->iter = bio->bi_iter;
	io->check_store = v->store.on_origin;
	INIT_WORK(&io->work, overlay_copies);
	io->first_chunk = chunk_of(v, sector);
	io->nr_chunks = chunk_of(v, sector + bio_sectors(bio) - 1) - io->first_chunk + 1;
	count_read(v, io, true);
	smp_mb__after_atomic();
	clone = cowfile_bio_clone(v->origin_bdev, bio, GFP_NOIO, &sc->clones);
	clone->bi_iter.bi_sector = sector;
	clone->bi_end_io = overlay_origin_done;
	clone->bi_private = bio;
	submit_bio_noacct(clone);
	return DM_MAPIO_SUBMITTED;
}

/* A read whose first block's index is not in core: its worker reads it. */
static int overlay_or_wait(struct snap_c *sc, struct bio *bio, struct snap_io *io,
			   sector_t sector)
{
	if (bio->bi_opf & REQ_NOWAIT) {
		bio_wouldblock_error(bio);
		return DM_MAPIO_SUBMITTED;
	}
	return overlay_read(sc, bio, io, sector);
}

static int snap_map(struct dm_target *ti, struct bio *bio)
{
	struct snap_c *sc = ti->private;
	struct cowfile_volume *v = sc->volume;
	struct snap_io *io = dm_per_bio_data(bio, sizeof(struct snap_io));
	sector_t sector, len, where, run;
	bool copied;

	io->nr_chunks = 0;
	io->check_store = false;
	if (bio_op(bio) != REQ_OP_READ && bio_sectors(bio))
		return DM_MAPIO_KILL;
	bio_set_dev(bio, v->origin_bdev);
	if (!bio_sectors(bio))
		return DM_MAPIO_REMAPPED;	/* a flush */
	/* With its cowfile device gone, nothing guards the origin. */
	if (READ_ONCE(v->snap_state) != COWFILE_SNAP_ACTIVE || READ_ONCE(v->detached))
		return DM_MAPIO_KILL;

	sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	len = bio_sectors(bio);
	if (cow_image_run(v, sector, len, false, &copied, &where, &run))
		return overlay_or_wait(sc, bio, io, sector);
	if (run < len && !(bio->bi_opf & REQ_NOWAIT) &&
	    overlay_saves_requests(v, sector + run, len - run, !copied))
		return overlay_read(sc, bio, io, sector);
	if (!copied) {
		/*
		 * Pairs with the write worker: it publishes a copy, then waits
		 * for no readers of the chunk; a block found uncopied after
		 * counting this read is still the instant's on the origin. The
		 * run looked at again can only be shorter: it stays within the
		 * chunks counted.
		 */
		io->first_chunk = chunk_of(v, sector);
		io->nr_chunks = chunk_of(v, sector + run - 1) - io->first_chunk + 1;
		count_read(v, io, true);
		smp_mb__after_atomic();
		if (cow_image_run(v, sector, run, false, &copied, &where, &run)) {
			count_read(v, io, false);
			return overlay_or_wait(sc, bio, io, sector);
		}
		if (copied)
			count_read(v, io, false);
	}
	if (run < len)
		dm_accept_partial_bio(bio, run);
	if (copied) {
		bio_set_dev(bio, v->store.bdev);
		bio->bi_iter.bi_sector = where;
		return DM_MAPIO_REMAPPED;
	}
	bio->bi_iter.bi_sector = sector;
	/*
	 * Which sectors are the store's is decided when the read completes:
	 * a grow meanwhile may have given the store sectors the read covers,
	 * and the kernel may already have written copies there.
	 */
	if (v->store.on_origin) {
		io->check_store = true;
		io->origin_sector = sector;
		io->iter = bio->bi_iter;
	}
	return DM_MAPIO_REMAPPED;
}

static int snap_end_io(struct dm_target *ti, struct bio *bio, blk_status_t *error)
{
	struct snap_c *sc = ti->private;
	struct cowfile_volume *v = sc->volume;
	struct snap_io *io = dm_per_bio_data(bio, sizeof(struct snap_io));

	if (io->check_store && !*error)
		zero_store_sectors(v, bio, io);
	count_read(v, io, false);
	return DM_ENDIO_DONE;
}

static void snap_status(struct dm_target *ti, status_type_t type,
			unsigned int status_flags, char *result, unsigned int maxlen)
{
	struct snap_c *sc = ti->private;
	struct cowfile_volume *v = sc->volume;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		mutex_lock(&v->state_lock);
		DMEMIT("%s %llu %s",
		       v->snap_state == COWFILE_SNAP_ACTIVE ? "active" :
		       v->snap_state == COWFILE_SNAP_INVALID ? "invalid" : "none",
		       (unsigned long long)v->snap_epoch,
		       volume_invalid_reason(v->invalid_reason));
		mutex_unlock(&v->state_lock);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", sc->origin->name);
		break;
	default:
		if (cowfile_status_is_ima(type))
			DMEMIT("target_name=%s,target_version=%u.%u.%u,origin=%s;",
			       ti->type->name, ti->type->version[0], ti->type->version[1],
			       ti->type->version[2], sc->origin->name);
		break;
	}
}

static int snap_iterate_devices(struct dm_target *ti,
				iterate_devices_callout_fn fn, void *data)
{
	struct snap_c *sc = ti->private;

	return fn(ti, sc->origin, 0, ti->len, data);
}

static struct target_type snap_target = {
	.name = COWFILE_SNAP_TARGET_NAME,
	.version = {1, 0, 0},
	.module = THIS_MODULE,
	.ctr = snap_ctr,
	.dtr = snap_dtr,
	.map = snap_map,
	.end_io = snap_end_io,
	.status = snap_status,
	.iterate_devices = snap_iterate_devices,
};

int cowfile_snap_target_init(void)
{
	return dm_register_target(&snap_target);
}

void cowfile_snap_target_exit(void)
{
	dm_unregister_target(&snap_target);
}
