/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every kernel-version difference dm-cowfile meets lives here, so the logic
 * files read the same on 5.10 and on the newest kernel.
 */
#ifndef DM_COWFILE_COMPAT_H
#define DM_COWFILE_COMPAT_H

#include <linux/version.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/dm-bufio.h>
#include <linux/fs.h>
#include <linux/highmem.h>

/* blk_opf_t appeared in 6.0; before, operations and flags were an int. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 0, 0)
typedef unsigned int blk_opf_t;
#endif

/* dm_bufio_client_create() gained a flags argument in 6.0. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 0, 0)
#define cowfile_bufio_create(bdev, bs, reserved, aux, alloc_cb, write_cb) \
	dm_bufio_client_create(bdev, bs, reserved, aux, alloc_cb, write_cb, 0)
#else
#define cowfile_bufio_create(bdev, bs, reserved, aux, alloc_cb, write_cb) \
	dm_bufio_client_create(bdev, bs, reserved, aux, alloc_cb, write_cb)
#endif

/* bio_alloc_bioset() takes the device and operation since 5.18. */
static inline struct bio *cowfile_bio_alloc(struct block_device *bdev,
					    unsigned short nr_vecs,
					    blk_opf_t opf, gfp_t gfp,
					    struct bio_set *bs)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 18, 0)
	return bio_alloc_bioset(bdev, nr_vecs, opf, gfp, bs);
#else
	struct bio *bio = bio_alloc_bioset(gfp, nr_vecs, bs);

	if (bio) {
		bio_set_dev(bio, bdev);
		bio->bi_opf = opf;
	}
	return bio;
#endif
}

/* A bio sharing @src's data, to be sent to @bdev: bio_alloc_clone() since 5.18. */
static inline struct bio *cowfile_bio_clone(struct block_device *bdev, struct bio *src,
					    gfp_t gfp, struct bio_set *bs)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 18, 0)
	return bio_alloc_clone(bdev, src, gfp, bs);
#else
	struct bio *bio = bio_clone_fast(src, gfp, bs);

	if (bio)
		bio_set_dev(bio, bdev);
	return bio;
#endif
}

/*
 * A bio the target held back and now sends on: dm_submit_bio_remap() keeps
 * dm's I/O accounting right where it exists (5.18+).
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 18, 0)
#define cowfile_submit_remapped(bio)	dm_submit_bio_remap(bio, NULL)
#else
#define cowfile_submit_remapped(bio)	submit_bio_noacct(bio)
#endif

/* bdev_nr_sectors() came in 5.11; before, the size lived in the bdev inode. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 11, 0)
static inline sector_t bdev_nr_sectors(struct block_device *bdev)
{
	return i_size_read(bdev->bd_inode) >> SECTOR_SHIFT;
}
#endif

/* memzero_page() came in 5.12. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 12, 0)
static inline void memzero_page(struct page *page, size_t offset, size_t len)
{
	char *addr = kmap_atomic(page);

	memset(addr + offset, 0, len);
	kunmap_atomic(addr);
}
#endif

/* Opening a device read-only for dm_get_device(). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
#define COWFILE_MODE_READ	BLK_OPEN_READ
#define COWFILE_MODE_WRITE	BLK_OPEN_WRITE
#else
#define COWFILE_MODE_READ	FMODE_READ
#define COWFILE_MODE_WRITE	FMODE_WRITE
#endif

/*
 * A workqueue is per-CPU unless WQ_UNBOUND; since 6.17 that is said with
 * WQ_PERCPU, and 7.x warns when a workqueue names neither.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 17, 0)
#define COWFILE_WQ_PERCPU	WQ_PERCPU
#else
#define COWFILE_WQ_PERCPU	0
#endif

/*
 * IMA measurement status (STATUSTYPE_IMA) exists since 5.15; before, no
 * status request is one.
 */
static inline bool cowfile_status_is_ima(status_type_t type)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 15, 0)
	return type == STATUSTYPE_IMA;
#else
	return false;
#endif
}

/*
 * A block device opened without a claim: the store's device when a
 * filesystem mounted from it holds the claim (dm_get_device() would fail),
 * and the volume's own read-only hold on its store device, which image
 * devices need after the cowfile table put its devices.
 */
struct cowfile_shared_bdev {
	struct block_device *bdev;
	bool write;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	struct file *file;
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	struct bdev_handle *handle;
#endif
};

static inline int cowfile_lookup_devt(const char *path, dev_t *dev)
{
	unsigned int major, minor;
	char dummy;

	if (sscanf(path, "%u:%u%c", &major, &minor, &dummy) == 2) {
		*dev = MKDEV(major, minor);
		return MAJOR(*dev) == major && MINOR(*dev) == minor ? 0 : -EOVERFLOW;
	}
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 11, 0)
	return lookup_bdev(path, dev);
#else
	{
		struct block_device *bdev = lookup_bdev(path);

		if (IS_ERR(bdev))
			return PTR_ERR(bdev);
		*dev = bdev->bd_dev;
		bdput(bdev);
		return 0;
	}
#endif
}

static inline int cowfile_open_devt(dev_t dev, bool write, struct cowfile_shared_bdev *s)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
	blk_mode_t mode = BLK_OPEN_READ | (write ? BLK_OPEN_WRITE : 0);
#else
	fmode_t mode = FMODE_READ | (write ? FMODE_WRITE : 0);
#endif

	s->write = write;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	s->file = bdev_file_open_by_dev(dev, mode, NULL, NULL);
	if (IS_ERR(s->file))
		return PTR_ERR(s->file);
	s->bdev = file_bdev(s->file);
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	s->handle = bdev_open_by_dev(dev, mode, NULL, NULL);
	if (IS_ERR(s->handle))
		return PTR_ERR(s->handle);
	s->bdev = s->handle->bdev;
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
	s->bdev = blkdev_get_by_dev(dev, mode, NULL, NULL);
	if (IS_ERR(s->bdev))
		return PTR_ERR(s->bdev);
#else
	s->bdev = blkdev_get_by_dev(dev, mode, NULL);
	if (IS_ERR(s->bdev))
		return PTR_ERR(s->bdev);
#endif
	return 0;
}

static inline int cowfile_open_shared(const char *path, struct cowfile_shared_bdev *s)
{
	dev_t dev;
	int r = cowfile_lookup_devt(path, &dev);

	return r ? r : cowfile_open_devt(dev, true, s);
}

static inline void cowfile_close_shared(struct cowfile_shared_bdev *s)
{
	if (!s->bdev)
		return;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 9, 0)
	fput(s->file);
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	bdev_release(s->handle);
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
	blkdev_put(s->bdev, NULL);
#else
	blkdev_put(s->bdev, FMODE_READ | (s->write ? FMODE_WRITE : 0));
#endif
	s->bdev = NULL;
}

#endif /* DM_COWFILE_COMPAT_H */
