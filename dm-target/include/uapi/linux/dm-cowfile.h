/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * dm-cowfile store format and target grammar, shared by the kernel module
 * and libsnapmgr. Everything on disk is little-endian, fixed width.
 *
 * A store is a preallocated, pinned file. Its bytes are addressed as
 * *logical blocks* of COWFILE_BLOCK_SIZE; the extent table maps them to
 * sectors of the store device (the device the kernel reads and writes;
 * the origin itself when the store lives on the tracked filesystem).
 *
 *   logical block 0                    superblock
 *   1 .. extent_table_blocks           extent table
 *   map_start .. +map_blocks           chunk map: per origin chunk, the last
 *                                      epoch it was written in
 *   map_start + map_blocks ..          index area (COWFILE_INDEX_BLOCKS() of
 *     data_start-1                     them): the kernel's scratch space for
 *                                      the index of the held snapshot's copies
 *   data_start .. store_blocks-1       data area: the held snapshot's log,
 *                                      one 4 KiB slot per logical block
 *                                      (slot n is block data_start + n)
 *
 * The log (docs/STORE-LOG.md) holds, in write order, the 4 KiB origin
 * blocks copied since the snapshot and the record blocks that name them.
 * Records come in groups: a group takes two slots for its record block
 * and the slots after them for copies. Each batch of copies rewrites the
 * group's record block, with every record of the group so far, into the
 * group's other slot, and is made durable by one flush: a torn record
 * block leaves the previous one intact. A full group is followed by the
 * next group at its log_end.
 *
 * The index area holds a little-endian __le32 per 4 KiB origin block: the
 * slot of its copy. It is derived data: the kernel rebuilds it from the log
 * at every load and never trusts what an earlier load left there, so its
 * blocks have no header, and nothing else reads them. A store whose gap
 * between the chunk map and the data area is too small for it (made before
 * the area existed) has data_start moved forward when the kernel first
 * loads it; a snapshot such a store held is invalidated then (its log
 * started where the area now is).
 *
 * Every metadata block starts with struct cowfile_block_header: magic,
 * crc32c, its own logical block number and the store UUID, so a block that
 * is stale, moved, foreign or torn is detected instead of trusted.
 */
#ifndef _UAPI_LINUX_DM_COWFILE_H
#define _UAPI_LINUX_DM_COWFILE_H

/*
 * As every uapi header: <linux/types.h> gives __u8/__le32/__le64 in both
 * the kernel and user space. Typedefs of our own would clash with it in any
 * program that also includes <linux/fs.h> or <linux/fiemap.h>.
 */
#include <linux/types.h>

#define COWFILE_FORMAT_VERSION		2
#define COWFILE_BLOCK_SIZE		4096
#define COWFILE_BLOCK_SECTORS		(COWFILE_BLOCK_SIZE >> 9)

#define COWFILE_SB_MAGIC		0x53464f43u	/* "COFS" */
#define COWFILE_EXTENT_MAGIC		0x58464f43u	/* "COFX" */
#define COWFILE_MAP_MAGIC		0x4d464f43u	/* "COFM" */
#define COWFILE_LOG_MAGIC		0x4c464f43u	/* "COFL" */

/* Index area: a __le32 slot per 4 KiB origin block, 1024 per block. */
#define COWFILE_INDEX_ENTRIES_PER_BLOCK	(COWFILE_BLOCK_SIZE / 4)
#define COWFILE_INDEX_BLOCKS(origin_sectors)					\
	(((origin_sectors) + COWFILE_BLOCK_SECTORS * COWFILE_INDEX_ENTRIES_PER_BLOCK - 1) / \
	 (COWFILE_BLOCK_SECTORS * COWFILE_INDEX_ENTRIES_PER_BLOCK))

/* Chunk size limits, in 512-byte sectors (power of two). */
#define COWFILE_MIN_CHUNK_SECTORS	8		/* 4 KiB */
#define COWFILE_MAX_CHUNK_SECTORS	2048		/* 1 MiB */
#define COWFILE_DEFAULT_CHUNK_SECTORS	128		/* 64 KiB */

/*
 * The checksum covers the whole block except the magic and the checksum
 * itself: csum = crc32c(bytes 8 .. 4095), standard CRC-32C (initial value
 * and final xor 0xffffffff).
 */
#define COWFILE_CSUM_OFFSET		8

struct cowfile_block_header {
	__le32 magic;
	__le32 csum;
	__le64 blocknr;		/* logical block number of this block */
	__u8 store_uuid[16];
};

/* Superblock flags */
#define COWFILE_SB_CLEAN		(1u << 0) /* unloaded cleanly */
#define COWFILE_SB_TRACKING_LOST	(1u << 1) /* a change may have been missed:
						   * the next load starts a new
						   * generation */
#define COWFILE_SB_ORIGIN_SUM		(1u << 2) /* origin_sum holds the origin's
						   * first chunk at the clean
						   * unload */

/* Snapshot states */
#define COWFILE_SNAP_NONE		0
#define COWFILE_SNAP_ACTIVE		1
#define COWFILE_SNAP_INVALID		2

/* Why a snapshot became invalid */
#define COWFILE_INVALID_NONE		0
#define COWFILE_INVALID_STORE_FULL	1
#define COWFILE_INVALID_STORE_IO	2
#define COWFILE_INVALID_METADATA	3
#define COWFILE_INVALID_ORIGIN_IO	4
#define COWFILE_INVALID_ORIGIN_CHANGED	5	/* written while not tracked */
#define COWFILE_INVALID_NO_MEMORY	6	/* no memory for a copy */

struct cowfile_superblock {
	struct cowfile_block_header hdr;	/* magic COWFILE_SB_MAGIC, blocknr 0 */
	__le32 version;			/* COWFILE_FORMAT_VERSION */
	__le32 flags;			/* COWFILE_SB_* */
	__le32 block_size;		/* COWFILE_BLOCK_SIZE */
	__le32 chunk_sectors;		/* power of two */
	__le64 origin_sectors;		/* size of the origin this store tracks */
	__le64 sb_sector;		/* where this superblock lives on the store device */

	/* Change tracking */
	__u8 generation_uuid[16];	/* changes a new generation: full backup */
	__le64 epoch;			/* the open epoch; writes are marked with it */
	__le64 generation_epoch;	/* first epoch of this generation */

	/* Layout, in logical blocks */
	__le64 store_blocks;		/* logical blocks the extents cover */
	__le32 nr_extents;		/* entries used in the extent table */
	__le32 extent_table_blocks;	/* capacity of the table, blocks 1..n */
	__le64 map_start;
	__le64 map_blocks;
	__le64 data_start;

	/* Snapshot */
	__le32 snap_state;		/* COWFILE_SNAP_* */
	__le32 snap_invalid_reason;	/* COWFILE_INVALID_* */
	__le64 snap_epoch;		/* epoch the held snapshot closed */
	__le64 log_checkpoint;		/* log slots whose copies were durable
					 * when this superblock was written */

	/*
	 * crc32c of the origin's first chunk at the last clean unload
	 * (COWFILE_SB_ORIGIN_SUM): a filesystem mounted read-write without
	 * the wrapper changes it (its superblock lives there).
	 */
	__le32 origin_sum;
	__le32 reserved32;
	__le64 reserved[7];

	/* Store device sector of each extent table block, in order. */
	__le64 extent_table_sectors[];
};

#define COWFILE_SB_FIXED_SIZE		((unsigned int)sizeof(struct cowfile_superblock))
#define COWFILE_MAX_EXTENT_TABLE_BLOCKS	\
	((COWFILE_BLOCK_SIZE - COWFILE_SB_FIXED_SIZE) / 8)

/* One store extent: a run of logical blocks, contiguous on the store device. */
struct cowfile_extent {
	__le64 sector;			/* first sector on the store device */
	__le64 blocks;			/* length in logical blocks */
};

struct cowfile_extent_block {
	struct cowfile_block_header hdr;	/* magic COWFILE_EXTENT_MAGIC */
	struct cowfile_extent extents[];
};

#define COWFILE_EXTENTS_PER_BLOCK	\
	((COWFILE_BLOCK_SIZE - sizeof(struct cowfile_block_header)) / \
	 sizeof(struct cowfile_extent))

/*
 * Chunk map entry. last_epoch is the newest epoch the chunk was written in
 * (0: never in this store); it is durable before the write is issued, so
 * "written after epoch E" is exactly last_epoch > E, possibly over-reporting
 * a write that was marked but never reached the origin.
 */
struct cowfile_map_entry {
	__le32 last_epoch;
	__le32 reserved;		/* 0 */
};

struct cowfile_map_block {
	struct cowfile_block_header hdr;	/* magic COWFILE_MAP_MAGIC */
	struct cowfile_map_entry entries[];
};

#define COWFILE_MAP_ENTRIES_PER_BLOCK	\
	((COWFILE_BLOCK_SIZE - sizeof(struct cowfile_block_header)) / \
	 sizeof(struct cowfile_map_entry))

/*
 * One copy in the log: the 4 KiB origin block it holds, its slot and the
 * crc32c of its 4096 bytes (standard CRC-32C, as the block checksum).
 */
struct cowfile_log_record {
	__le64 origin_block;		/* origin sector / 8 */
	__le32 slot;
	__le32 csum;
};

/*
 * A group's record block, in slot group_slot or group_slot + 1; blocknr
 * in its header is the logical block of the slot it was written to. The
 * valid one of the two with the higher seq holds the group. seq grows by
 * one with every record block written for the snapshot; log_end is the
 * number of log slots in use after the batch that wrote it.
 */
struct cowfile_log_block {
	struct cowfile_block_header hdr;	/* magic COWFILE_LOG_MAGIC */
	__le64 snap_epoch;		/* of the snapshot the log belongs to */
	__le64 seq;
	__le64 group_slot;
	__le64 log_end;
	__le32 nr_records;
	__le32 reserved;
	struct cowfile_log_record records[];
};

#define COWFILE_LOG_RECORDS_PER_BLOCK	\
	((COWFILE_BLOCK_SIZE - sizeof(struct cowfile_log_block)) / \
	 sizeof(struct cowfile_log_record))

/*
 * Target grammar
 *
 *   cowfile <origin_dev> <store_dev> <sb_sector> [<#feature_args> <arg>...]
 *     features: low_water <percent>   dm event when the store passes it
 *
 *   cowfile-snap <origin_dev>
 *
 * Messages to a cowfile device:
 *   snapshot                  (suspended only) close the epoch, hold a snapshot
 *   release                   drop the held snapshot (EBUSY while an image exists)
 *   grow <sector>:<blocks>... append store extents to the data area
 *   new_generation            start a new generation (next backup is full)
 */
#define COWFILE_TARGET_NAME		"cowfile"
#define COWFILE_SNAP_TARGET_NAME	"cowfile-snap"
#define COWFILE_MSG_SNAPSHOT		"snapshot"
#define COWFILE_MSG_RELEASE		"release"
#define COWFILE_MSG_GROW		"grow"
#define COWFILE_MSG_NEW_GENERATION	"new_generation"
#define COWFILE_FEATURE_LOW_WATER	"low_water"
#define COWFILE_DEFAULT_LOW_WATER	80

#endif /* _UAPI_LINUX_DM_COWFILE_H */
