/* arena.c - the blocks a decoded message owns, freed together. */
#include "proto_internal.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>

typedef struct pvf_arena_block {
    struct pvf_arena_block *next;
    size_t cap, used;
    alignas(max_align_t) unsigned char data[];
} pvf_arena_block;

#define PVF_ARENA_MIN_BLOCK 4096

void *pvf_arena_alloc(pvf_arena *a, size_t size) {
    const size_t align = alignof(max_align_t);
    size = (size + align - 1) / align * align;
    if (size == 0)
        size = align;
    pvf_arena_block *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > PVF_ARENA_MIN_BLOCK ? size : PVF_ARENA_MIN_BLOCK;
        if (cap > SIZE_MAX - sizeof *b)
            return NULL;
        b = calloc(1, sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

void pvf_arena_free(pvf_arena *a) {
    pvf_arena_block *b = a->head;
    while (b) {
        pvf_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}
