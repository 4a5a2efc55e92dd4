/* The hot path of the PE program: the synaptic phase (event-driven row walks into accumulator rings) and the
 * neuron phase (the integer CUBA LIF of docs/semantics.md §3.3, exactly as nmcompile.ir.kernels.IntegerNeuron).
 *
 * Integer arithmetic only. u and v are int64 like the golden model's numpy int64; products and shifts that could
 * overflow in C are done on uint64 (two's-complement wrap, as numpy). `>>` on a signed value is GCC's arithmetic
 * shift (floor).
 *
 * The neuron phase runs per run of consecutive neurons of one variant (readout, or reset mode x timing x refractory;
 * found at sample start) a loop specialised for it, whose fast path does the update in int32 arithmetic (one SMLAL
 * per decay) and is taken only where that is provably equal to the int64 arithmetic: u, v and the drive fit int32,
 * no checked sum overflows, u ends in (-M, M], |bias| <= 2^30. Every other neuron step (and any variant without a
 * loop) is general_step, the int64 reference arithmetic, from the unchanged state.
 *
 * Start steps (docs/semantics.md): while the tick is below a neuron's start_step it is not updated (its state stays
 * as set at sample start, its input of the tick is dropped, it does not spike; a readout reports 0). Ticks
 * before the largest start step of the PE take the general path for every neuron. */
#include <string.h>

#include "snm2.h"

#define M (INT64_C(1) << 23)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static int32_t *arrive[MAX_GROUPS];   /* per group: the ring slot of this tick's arrivals */
static int64_t drive[MAX_NEURONS];    /* per neuron: the summed, shifted input of this step */

static inline int64_t shl64(int64_t x, int s)
{
    return (int64_t)((uint64_t)x << s);
}

/* trunc12(x * f): multiply (wrapping like numpy int64), then divide by 4096 rounding toward zero */
static inline int64_t decay(int64_t x, int32_t f)
{
    int64_t p = (int64_t)((uint64_t)x * (uint64_t)(int64_t)f);
    return p >= 0 ? p >> 12 : -(int64_t)((0 - (uint64_t)p) >> 12);
}

static inline int fires(int64_t v, int32_t vth, uint32_t flags)
{
    return (flags & FLAG_GE) ? v >= vth : v > vth;
}

/* per neuron, derived from the parameters at sample start: the decay factors, the threshold, the bias and the
 * threshold as a '>' comparison for a v in [-(M - 1), M - 1] (vth - 1 for '>=', clamped to [-M, M]) */
typedef struct {
    int32_t fu, fv, vth, bias, vgt;
} hot_t;

static hot_t hot[MAX_NEURONS];
/* runs of consecutive neurons with the same variant (readout, or reset mode, delayed, refractory period non-zero): run r covers
 * neurons run_end[r - 1] .. run_end[r] - 1 */
static uint16_t run_end[MAX_NEURONS], run_variant[MAX_NEURONS];
static uint32_t n_runs;
static uint32_t max_start;            /* the largest start step of this PE's neurons */
static int32_t drive32[MAX_NEURONS];  /* the multi-group drive when every neuron's fits an int32 */

#define VARIANT(flags) ((flags) & FLAG_READOUT ? FLAG_READOUT \
                        : ((flags) & 0x7u) | (((flags) >> FLAG_REFRACTORY_SHIFT) & 0xFFu ? 0x20u : 0u))
#define BIG_BIAS 0x40u      /* |bias| > 2^30: never in a fast run */

void pe_sample_start(pe_image_t *img)
{
    memset(img->state, 0, 4u * img->state_words);
    n_runs = 0;
    max_start = 0;
    for (uint32_t j = 0; j < img->n_neurons; j++) {
        const neuron_params_t *p = &img->params[j];
        neuron_state_t *s = &img->neurons[j];
        s->u = p->u_init;
        s->v = p->v_init;
        s->pending = fires(p->v_init, p->vth, p->flags);
        if ((uint32_t)p->start_step > max_start)
            max_start = (uint32_t)p->start_step;
        int64_t vgt = (p->flags & FLAG_GE) ? (int64_t)p->vth - 1 : p->vth;
        vgt = vgt > M ? M : (vgt < -M ? -M : vgt);
        hot[j] = (hot_t){4096 - (p->du + 1), 4096 - p->dv, p->vth, p->bias, (int32_t)vgt};
        uint16_t variant = (uint16_t)(VARIANT(p->flags) | (p->bias > (1 << 30) || p->bias < -(1 << 30) ? BIG_BIAS : 0));
        if (n_runs == 0 || run_variant[n_runs - 1] != variant)
            run_variant[n_runs++] = variant;
        run_end[n_runs - 1] = (uint16_t)(j + 1);
    }
    img->tick = 0;
}

static inline uint32_t systick_since(uint32_t start)
{
    return (start - SYST_CVR) & 0xFFFFFFu;
}

/* the synapse row of one packet; a function of its own so that the loop keeps everything in registers (9
 * instructions per synapse on the Cortex-M4 instead of 10) */
__attribute__((noinline)) static void walk_row(const uint32_t *w, const uint32_t *end, int32_t *const *slots)
{
    for (; w < end; w++) {
        uint32_t s = *w;
        slots[SYN_GROUP(s)][SYN_TARGET(s)] += SYN_WEIGHT(s);
    }
}

void pe_receive(pe_image_t *img, const uint32_t *keys, uint32_t n, pe_profile_t *prof)
{
    uint32_t t0 = prof ? SYST_CVR : 0;
    const uint32_t n_neurons = img->n_neurons, n_keys = img->n_keys;
    /* arrival step (tick - 1) + delay sits in slot ((tick - 1 + delay) mod (delay + 1)) */
    for (uint32_t g = 0; g < img->n_groups; g++) {
        uint32_t d = (uint32_t)img->groups[g].delay;
        arrive[g] = (int32_t *)img->state + img->groups[g].ring_offset + ((img->tick + d - 1u) % (d + 1u)) * n_neurons;
    }
    const key_entry_t *table = img->keys;
    uint32_t matched = 0, synapses = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t packet = keys[i], lo = 0, hi = n_keys;
        while (lo < hi) {                 /* the first entry with key > packet */
            uint32_t mid = (lo + hi) >> 1;
            if (table[mid].key <= packet)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == 0)
            continue;
        const key_entry_t *e = &table[lo - 1];
        if ((packet & e->mask) != e->key)
            continue;                     /* not for this PE */
        const uint32_t *index = (const uint32_t *)(img->base + e->index_offset);
        const uint32_t *words = (const uint32_t *)(img->base + e->synapse_offset);
        uint32_t unit = packet & ~e->mask;
        const uint32_t *w = words + index[unit], *end = words + index[unit + 1];
        matched++;
        synapses += (uint32_t)(end - w);
        walk_row(w, end, arrive);
    }
    if (prof) {
        prof->systick_synapses += systick_since(t0);
        prof->packets += n;
        prof->packets_matched += matched;
        prof->synapses += synapses;
    }
}

/* the update of one neuron with the int64 drive `d` (the input of this step before `<< 6`), for any values: the
 * reference arithmetic, used when the 32-bit fast path cannot show its result exact. Returns the spike (0/1); a
 * readout neuron appends its v to readout_v[*n_readouts]. */
static int32_t readout_v[MAX_NEURONS];

__attribute__((noinline)) static int general_step(const neuron_params_t *p, neuron_state_t *st, int64_t d,
                                                  uint32_t *n_readouts)
{
    const uint32_t flags = p->flags;
    const int32_t vth = p->vth;

    int64_t u = decay(st->u, 4096 - (p->du + 1)) + shl64(d, 6);
    if (u > M)
        u -= 2 * M;
    else if (u <= -M)
        u += 2 * M;
    st->u = u;
    int64_t v = decay(st->v, 4096 - p->dv) + u + p->bias;

    if (flags & FLAG_READOUT) {
        v = v > M - 1 ? M - 1 : (v < -(M - 1) ? -(M - 1) : v);
        st->v = v;
        readout_v[(*n_readouts)++] = (int32_t)v;
        return 0;
    }
    const uint32_t reset = flags & FLAG_RESET_MASK;
    if ((flags & FLAG_DELAYED) && st->pending) {
        if (reset == RESET_SUBTRACT)
            v -= vth;
        else if (reset == RESET_ZERO)
            v = 0;
    }
    v = v > M - 1 ? M - 1 : (v < -(M - 1) ? -(M - 1) : v);
    int held = st->refractory_left > 0;
    if (held)
        v = 0;
    int s = fires(v, vth, flags) && !held;
    if (s)
        st->refractory_left = (int32_t)(flags >> FLAG_REFRACTORY_SHIFT) & 0xFF;
    else if (held)
        st->refractory_left--;
    if (s && !(flags & FLAG_DELAYED)) {
        if (reset == RESET_ZERO)
            v = 0;
        else if (reset == RESET_SUBTRACT)
            v -= vth;
    }
    st->v = v;
    st->pending = fires(v, vth, flags);
    return s;
}

/* trunc12(x * f) for an int32 x whose sign word is `sign` (0 or -1) and 0 <= f <= 4096: the int64 product plus
 * 4095 when negative, divided by 4096 (floor); the result fits an int32 (|result| <= |x|) */
static inline __attribute__((always_inline)) int32_t decay32(int32_t x, int32_t sign, int32_t f)
{
    int64_t p = (int64_t)x * f + (int64_t)(uint32_t)(sign & 4095);
    return (int32_t)((uint64_t)p >> 12);
}

/* clip to +-(M - 1): saturate to [-M, M - 1], then -M becomes -(M - 1) */
static inline __attribute__((always_inline)) int32_t clip32(int32_t v)
{
    __asm__("ssat %0, #24, %0\n\tcmn %0, #0x800000\n\tit eq\n\taddeq %0, %0, #1" : "+r"(v) : : "cc");
    return v;
}

typedef struct {
    int32_t *src;          /* this step's input per neuron (int32), cleared as it is read */
    int k, e;              /* drive << 6 = src << k; the int64 drive is src << e (0 <= e <= 24, k = e + 6) */
    uint32_t *spikes;
    uint32_t m, n_readouts;
} ctx_t;

/* a run of neurons [j0, j1) of one variant. The fast path does the update in int32 arithmetic: it is taken only
 * when u, v (int64) and the shifted drive fit an int32 and no int32 sum overflows, where int32 arithmetic equals the
 * reference's int64 arithmetic; otherwise general_step does the neuron from its unchanged state. */
static inline __attribute__((always_inline)) void run_loop(const pe_image_t *img, uint32_t j0, uint32_t j1,
                                                           const uint32_t flags, ctx_t *c)
{
    const int readout = (flags & FLAG_READOUT) != 0, delayed = (flags & FLAG_DELAYED) != 0;
    const int refractory = (flags & 0x20u) != 0;
    const uint32_t reset = flags & FLAG_RESET_MASK;
    neuron_state_t *st = &img->neurons[j0], *const st_end = &img->neurons[j1];
    const hot_t *h = &hot[j0];
    int32_t *src = c->src + j0;
    const int k = c->k;
    for (; st != st_end; st++, h++, src++) {
        const int32_t a = *src;
        const int32_t d6 = (int32_t)((uint32_t)a << k);
        *src = 0;
        int32_t ulo, uhi, vlo, vhi;        /* the int64 u and v as (low, high) words: two LDRDs */
        __asm__("ldrd %0, %1, [%2]" : "=&r"(ulo), "=&r"(uhi) : "r"(st), "m"(st->u));
        __asm__("ldrd %0, %1, [%2, #8]" : "=&r"(vlo), "=&r"(vhi) : "r"(st), "m"(st->v));
        int32_t u, v, t;
        if (__builtin_expect((d6 >> k) != a || uhi != (ulo >> 31) || vhi != (vlo >> 31), 0))
            goto slow;
        /* u = decay(u) + drive, wrapped; the fast path goes on only with u in (-M, M] (M - u in [0, 2M)) */
        const int32_t du = decay32(ulo, uhi, h->fu);
        u = __builtin_arm_qadd(du, d6);      /* saturates: then out of (-M, M] and checked below */
        if (__builtin_expect((uint32_t)((int32_t)M - u) >= (uint32_t)(2 * M), 0)) {
            if (__builtin_add_overflow(du, d6, &u))
                goto slow;
            u = u > (int32_t)M ? u - (int32_t)(2 * M) : u + (int32_t)(2 * M);   /* cannot overflow: u was in range */
            if ((uint32_t)((int32_t)M - u) >= (uint32_t)(2 * M))
                goto slow;
        }
        const int32_t dv = decay32(vlo, vhi, h->fv);
        if (readout || !(delayed && reset == RESET_SUBTRACT)) {
            /* v is clipped next: with |u| <= M and |bias| <= 2^30 (else the neuron is not in a fast run) a
             * saturated partial sum saturates on the side the exact sum clips to, so the clipped v is exact */
            v = __builtin_arm_qadd(__builtin_arm_qadd(dv, u), h->bias);
        } else {
            if (__builtin_expect(__builtin_add_overflow(dv, u, &t), 0))
                goto slow;
            if (__builtin_expect(__builtin_add_overflow(t, h->bias, &v), 0))
                goto slow;
        }
        if (readout) {
            v = clip32(v);
            st->u = u;
            st->v = v;
            readout_v[c->n_readouts++] = v;
            continue;
        }
        if (delayed && st->pending) {
            if (reset == RESET_SUBTRACT) {
                if (__builtin_expect(__builtin_sub_overflow(v, h->vth, &v), 0))
                    goto slow;
            } else if (reset == RESET_ZERO) {
                v = 0;
            }
        }
        v = clip32(v);
        int held = 0;
        if (refractory) {
            const int32_t left = st->refractory_left;
            held = left > 0;
            if (held) {
                v = 0;
                st->refractory_left = left - 1;
            }
        }
        const int f = v > h->vgt;           /* fires(v, vth, flags): v is in [-(M - 1), M - 1] */
        if (__builtin_expect(f && !held, 0)) {
            const uint32_t j = (uint32_t)(st - img->neurons);
            const uint32_t pflags = img->params[j].flags;
            const int32_t vth = h->vth;
            int64_t vr = v;
            if (refractory)
                st->refractory_left = (int32_t)(pflags >> FLAG_REFRACTORY_SHIFT) & 0xFF;
            if (!delayed) {
                if (reset == RESET_ZERO)
                    vr = 0;
                else if (reset == RESET_SUBTRACT)
                    vr = (int64_t)v - vth;
            }
            st->u = u;
            st->v = vr;
            st->pending = fires(vr, vth, pflags);
            c->spikes[c->m++] = j;
            continue;
        }
        st->u = u;
        st->v = v;
        st->pending = f;
        continue;
    slow: {
            const uint32_t j = (uint32_t)(st - img->neurons);
            if (general_step(&img->params[j], st, shl64((int64_t)a, c->e), &c->n_readouts))
                c->spikes[c->m++] = j;
        }
    }
}

#define VARIANT_LOOP(v) \
    static __attribute__((noinline)) void loop_##v(const pe_image_t *img, uint32_t j0, uint32_t j1, ctx_t *c) \
    { \
        run_loop(img, j0, j1, v, c); \
    }
VARIANT_LOOP(0x00) VARIANT_LOOP(0x01) VARIANT_LOOP(0x02) VARIANT_LOOP(0x04) VARIANT_LOOP(0x05) VARIANT_LOOP(0x06)
VARIANT_LOOP(0x20) VARIANT_LOOP(0x21) VARIANT_LOOP(0x22) VARIANT_LOOP(0x24) VARIANT_LOOP(0x25) VARIANT_LOOP(0x26)
VARIANT_LOOP(0x10)

#define CASE(v) case v: loop_##v(img, j0, j1, &c); break;

uint32_t pe_update(pe_image_t *img, uint32_t *out, int record, pe_profile_t *prof)
{
    uint32_t t0 = prof ? SYST_CVR : 0;
    const uint32_t n = img->n_neurons;
    uint32_t m = 0, n_readouts = 0;
    uint32_t *spikes = out + 1;

    /* a_j = sum over groups of floor_shift(ring slot of this step, weight_exp); the slot is cleared. One group
     * with 0 <= weight_exp <= 24 is read by the neuron loops themselves; otherwise the sum is formed here in int64
     * and the neuron loops take it as an int32 when every neuron's fits one (else general_step does all). */
    ctx_t c = {drive32, 6, 0, spikes, 0, 0};
    int fast = 1, single = 0;
    if (img->n_groups == 1 && img->groups[0].weight_exp >= 0 && img->groups[0].weight_exp <= 24) {
        single = 1;
        const group_t *gr = &img->groups[0];
        c.src = (int32_t *)img->state + gr->ring_offset + (img->tick % ((uint32_t)gr->delay + 1u)) * n;
        c.e = gr->weight_exp;
        c.k = c.e + 6;
    } else {
        memset(drive, 0, sizeof drive[0] * n);
        for (uint32_t g = 0; g < img->n_groups; g++) {
            const group_t *gr = &img->groups[g];
            uint32_t d = (uint32_t)gr->delay;
            int32_t *slot = (int32_t *)img->state + gr->ring_offset + (img->tick % (d + 1u)) * n;
            int32_t e = gr->weight_exp;
            if (e >= 0) {
                for (uint32_t j = 0; j < n; j++) {
                    drive[j] += shl64(slot[j], e);
                    slot[j] = 0;
                }
            } else {
                int r = -e;
                for (uint32_t j = 0; j < n; j++) {
                    drive[j] += slot[j] >> r;
                    slot[j] = 0;
                }
            }
        }
        for (uint32_t j = 0; j < n; j++) {
            drive32[j] = (int32_t)drive[j];
            fast &= drive[j] == (int64_t)drive32[j];
        }
    }

    if (img->tick < max_start) {
        for (uint32_t j = 0; j < n; j++) {
            int64_t d = drive[j];
            if (single) {
                d = shl64(c.src[j], c.e);
                c.src[j] = 0;
            }
            if (img->tick < (uint32_t)img->params[j].start_step) {
                if (img->params[j].flags & FLAG_READOUT)
                    readout_v[n_readouts++] = 0;
            } else if (general_step(&img->params[j], &img->neurons[j], d, &n_readouts)) {
                spikes[m++] = j;
            }
        }
    } else if (fast) {
        uint32_t j0 = 0;
        for (uint32_t r = 0; r < n_runs; r++) {
            const uint32_t j1 = run_end[r];
            switch (run_variant[r]) {
                CASE(0x00) CASE(0x01) CASE(0x02) CASE(0x04) CASE(0x05) CASE(0x06)
                CASE(0x20) CASE(0x21) CASE(0x22) CASE(0x24) CASE(0x25) CASE(0x26)
                CASE(0x10)
                default:
                    for (uint32_t j = j0; j < j1; j++) {
                        const int64_t d = shl64(c.src[j], c.e);
                        c.src[j] = 0;
                        if (general_step(&img->params[j], &img->neurons[j], d, &c.n_readouts))
                            spikes[c.m++] = j;
                    }
            }
            j0 = j1;
        }
        m = c.m;
        n_readouts = c.n_readouts;
    } else {
        for (uint32_t j = 0; j < n; j++)
            if (general_step(&img->params[j], &img->neurons[j], drive[j], &n_readouts))
                spikes[m++] = j;
    }

    out[0] = m;
    uint32_t len = 1 + m;
    memcpy(out + len, readout_v, 4u * n_readouts);
    len += n_readouts;
    if (record) {
        for (uint32_t j = 0; j < n; j++)
            out[len + j] = (uint32_t)(int32_t)img->neurons[j].u;
        len += n;
        for (uint32_t j = 0; j < n; j++)
            out[len + j] = (uint32_t)(int32_t)img->neurons[j].v;
        len += n;
    }
    img->tick++;
    if (prof) {
        prof->systick_neurons += systick_since(t0);
        prof->neuron_updates += n;
        prof->ticks++;
    }
    return len;
}
