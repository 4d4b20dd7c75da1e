/*
 * filter.h -- filters as search.c sees them (filter.c).
 */
#ifndef AVQ_FILTER_H
#define AVQ_FILTER_H

#include "index.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Filter defaults (avq.h): a filtered scan goes on past leaves_to_search
 * until this many times pre_reorder allowed vectors were scanned; a filter
 * known to allow at most EXACT_BELOW vectors is scored exactly.  Measured
 * by bench-filter (doc/DESIGN.md §16). */
enum { AVQ_FILTER_MIN_SCANNED_PER_CANDIDATE = 8, AVQ_FILTER_EXACT_BELOW = 1500 };

/* At most how many live vectors of x the filter allows (reader side: the
 * caller holds a read slot).  Exact for allow sets and single tags, an
 * upper bound for several tags, the live count when it cannot know (deny
 * sets, callbacks). */
size_t avq_filter_bound(const avq_filter *f, const avq_index *x);
/* Whether avq_filter_bound says more than "the live count". */
bool avq_filter_bound_is_known(const avq_filter *f);

/* A tag filter's tags (ascending, distinct) into *tags and whether it is
 * ALL; returns their number, 0 for the other kinds. */
size_t avq_filter_tag_list(const avq_filter *f, const uint32_t **tags, bool *all);

/* The slots of version v the filter allows -- live ones only -- as a bitmap
 * of (v->n + 31) / 32 words in mask, and their number in *allowed.
 * AVQ_ERR_CANCELLED (with the message set) when a callback asks to stop. */
int avq_filter_leaf_mask(const avq_filter *f, const avq_leaf *v, uint32_t *mask,
                         size_t *allowed);

#endif
