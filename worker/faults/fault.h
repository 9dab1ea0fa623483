/* fault.h - fault models, fault sites, and applying a fault to a model
 * through one executor's overlay.
 *
 * A fault site is (target, element, bit mask) in the STORED representation:
 * a parameter's code in its storage format, or one of its fp32 scales. The
 * fault model decides what happens to the masked bits. */
#ifndef PVF_FAULT_H
#define PVF_FAULT_H

#include "model.h"
#include "pvf_common.h"

#include <stdint.h>

typedef enum pvf_fault_kind {
    PVF_FAULT_BITFLIP, /* flip one bit, uniform or fixed */
    PVF_FAULT_KBIT,    /* flip k distinct bits of one word */
    PVF_FAULT_BURST,   /* flip b adjacent bits of one word */
    PVF_FAULT_STUCK0,  /* force one bit to 0 */
    PVF_FAULT_STUCK1,  /* force one bit to 1 */
} pvf_fault_kind;

typedef struct pvf_fault_model {
    pvf_fault_kind kind;
    int bit; /* fixed bit for bitflip/stuck, or -1 for uniform */
    int k;   /* bits for kbit, length for burst; 1 otherwise */
} pvf_fault_model;

/* "bit", "bit:B", "kbit:K", "burst:B", "stuck0", "stuck0:B", "stuck1", "stuck1:B". */
int pvf_fault_model_parse(const char *s, pvf_fault_model *fm, pvf_err *err);
void pvf_fault_model_format(const pvf_fault_model *fm, char *buf, size_t n);
/* Whether the model can hit a word of `bits` bits at all. */
int pvf_fault_model_fits(const pvf_fault_model *fm, int bits);

typedef struct pvf_fault_site {
    int target;
    int64_t element;
    uint32_t mask; /* bits of the stored word the fault acts on */
} pvf_fault_site;

uint32_t pvf_fault_word(pvf_fault_kind kind, uint32_t word, uint32_t mask);

/* What a fault did: the stored word before and after, and the compute value
 * of the element (or of the scale) before and after. */
typedef struct pvf_fault_effect {
    uint32_t old_word, new_word;
    float old_value, new_value;
    int64_t lo, hi; /* compute elements of the parameter that changed */
} pvf_fault_effect;

/* Derives the faulty compute values and installs them in ex's overlay.
 * When the stored word does not change, nothing is installed
 * (eff->new_word == eff->old_word). */
int pvf_fault_apply(pvf_exec *ex, pvf_fault_kind kind, const pvf_fault_site *site,
                    pvf_fault_effect *eff, pvf_err *err);

#endif
