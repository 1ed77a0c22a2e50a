/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tracepoints of dm-cowfile: follow marking, copies, commits and snapshot
 * state live with perf or trace-cmd (events dm_cowfile:*). Free when off.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM dm_cowfile

#if !defined(_TRACE_DM_COWFILE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _TRACE_DM_COWFILE_H

#include <linux/tracepoint.h>

TRACE_EVENT(cowfile_chunk_marked,
	TP_PROTO(struct cowfile_volume *v, u64 chunk, u64 epoch),
	TP_ARGS(v, chunk, epoch),
	TP_STRUCT__entry(
		__field(dev_t, origin)
		__field(u64, chunk)
		__field(u64, epoch)
	),
	TP_fast_assign(
		__entry->origin = v->origin_devt;
		__entry->chunk = chunk;
		__entry->epoch = epoch;
	),
	TP_printk("origin=%u:%u chunk=%llu epoch=%llu",
		  MAJOR(__entry->origin), MINOR(__entry->origin),
		  __entry->chunk, __entry->epoch)
);

TRACE_EVENT(cowfile_cow_start,
	TP_PROTO(struct cowfile_volume *v, u64 block, u64 slot),
	TP_ARGS(v, block, slot),
	TP_STRUCT__entry(
		__field(dev_t, origin)
		__field(u64, block)
		__field(u64, slot)
	),
	TP_fast_assign(
		__entry->origin = v->origin_devt;
		__entry->block = block;
		__entry->slot = slot;
	),
	TP_printk("origin=%u:%u block=%llu slot=%llu",
		  MAJOR(__entry->origin), MINOR(__entry->origin),
		  __entry->block, __entry->slot)
);

TRACE_EVENT(cowfile_cow_done,
	TP_PROTO(struct cowfile_volume *v, unsigned int copies, bool failed),
	TP_ARGS(v, copies, failed),
	TP_STRUCT__entry(
		__field(dev_t, origin)
		__field(unsigned int, copies)
		__field(bool, failed)
	),
	TP_fast_assign(
		__entry->origin = v->origin_devt;
		__entry->copies = copies;
		__entry->failed = failed;
	),
	TP_printk("origin=%u:%u copies=%u failed=%d",
		  MAJOR(__entry->origin), MINOR(__entry->origin),
		  __entry->copies, __entry->failed)
);

TRACE_EVENT(cowfile_commit,
	TP_PROTO(struct cowfile_volume *v, unsigned int chunks, int error),
	TP_ARGS(v, chunks, error),
	TP_STRUCT__entry(
		__field(dev_t, origin)
		__field(unsigned int, chunks)
		__field(int, error)
	),
	TP_fast_assign(
		__entry->origin = v->origin_devt;
		__entry->chunks = chunks;
		__entry->error = error;
	),
	TP_printk("origin=%u:%u chunks=%u error=%d",
		  MAJOR(__entry->origin), MINOR(__entry->origin),
		  __entry->chunks, __entry->error)
);

TRACE_EVENT(cowfile_snapshot_state,
	TP_PROTO(struct cowfile_volume *v),
	TP_ARGS(v),
	TP_STRUCT__entry(
		__field(dev_t, origin)
		__field(unsigned int, state)
		__field(unsigned int, reason)
		__field(u64, epoch)
	),
	TP_fast_assign(
		__entry->origin = v->origin_devt;
		__entry->state = v->snap_state;
		__entry->reason = v->invalid_reason;
		__entry->epoch = v->epoch;
	),
	TP_printk("origin=%u:%u state=%u reason=%u epoch=%llu",
		  MAJOR(__entry->origin), MINOR(__entry->origin),
		  __entry->state, __entry->reason, __entry->epoch)
);

#endif /* _TRACE_DM_COWFILE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE trace
#include <trace/define_trace.h>
