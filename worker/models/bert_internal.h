/* bert_internal.h - what bert.c and its fast trial path (bert_fast.c) share:
 * the architecture's state and the parameter roles of an encoder layer. */
#ifndef PVF_BERT_INTERNAL_H
#define PVF_BERT_INTERNAL_H

#include "model.h"

#define BERT_MAX_LAYERS 64

/* The parameters of one encoder layer, in bert.lp[layer][role]. */
enum { Q, K, V, O, Q_B, K_B, V_B, O_B, LN1_W, LN1_B, FF1, FF1_B, FF2, FF2_B, LN2_W, LN2_B, NLP };

typedef struct bert {
    int64_t vocab, hidden, layers, heads, inter, maxpos, types, labels;
    float eps;
    int word, pos, type, ln_w, ln_b;  /* embedding params */
    int lp[BERT_MAX_LAYERS][NLP];     /* encoder params per layer */
    int pool_w, pool_b, cls_w, cls_b; /* pooler, classifier */
    int first_layer;                  /* stage index of layer.0 */
    int64_t group;                    /* inputs per pass of a layer stage */
} bert;

/* Tokens per eval sequence (the length of input_ids), 0 without them. */
int64_t pvf_bert_seq_len(const pvf_evalset *e);
/* Views an integer eval tensor; 0 when the eval set has none. */
int pvf_bert_eval_int(const pvf_evalset *e, const char *name, pvf_tensor *t);

/* One encoder layer (parameters p = bert.lp[layer]) over g inputs of s
 * tokens packed in xs[g * s, h], with additive attention masks
 * mask_add[g * s]; `last`: only the first token of each input goes on past
 * the keys and values. Writes rows of h floats to res (g * s rows, or g rows
 * when last). ws: g * s * (5 h + intermediate) + s * s + g * h floats. */
void pvf_bert_encoder_layer(const bert *b, const pvf_exec *ex, const int *p, const float *xs,
                            int64_t g, int64_t s, int last, const float *mask_add, float *ws,
                            float *res);

/* The fast trial path (bert_fast.c): model.h's fast_* hooks. */
int pvf_bert_fast_prepare(const pvf_model *m, const pvf_golden *g, void **state, pvf_err *err);
void pvf_bert_fast_free(void *state);
int pvf_bert_fast_trial(pvf_exec *ex, const pvf_golden *g, int param,
                        const struct pvf_fault_effect *eff, struct pvf_trial_result *r,
                        pvf_err *err);
int pvf_bert_fast_bound(const pvf_exec *ex, const pvf_golden *g, int stage, int64_t row,
                        const float *in);

/* Test probe of bert_fast.c's linearized bound of the last layer's [CLS]
 * path: sequence i's golden [CLS] first LayerNorm input z [hidden] in the
 * last layer, the norm it keeps of the gradient there of margin k (logit k
 * less the top one), and its bound on that margin's change under a change
 * of at most r in z. -1 when k is the top class or out of range. */
int pvf_bert_fast_cls_probe(const pvf_model *m, const pvf_golden *g, int64_t i, int64_t k, double r,
                            const float **z, double *grad_norm, double *moved);

#endif
