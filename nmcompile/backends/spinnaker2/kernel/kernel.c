/* The hot path of the PE program: the synaptic phase (event-driven row walks into accumulator rings) and the
 * neuron phase (the integer CUBA LIF of docs/semantics.md §3.3, exactly as nmcompile.ir.kernels.IntegerNeuron).
 *
 * Integer arithmetic only. u and v are int64 like the golden model's numpy int64; products and shifts that could
 * overflow in C are done on uint64 (two's-complement wrap, as numpy). `>>` on a signed value is GCC's arithmetic
 * shift (floor). */
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

void pe_sample_start(pe_image_t *img)
{
    memset(img->state, 0, 4u * img->state_words);
    for (uint32_t j = 0; j < img->n_neurons; j++) {
        const neuron_params_t *p = &img->params[j];
        neuron_state_t *s = &img->neurons[j];
        s->u = p->u_init;
        s->v = p->v_init;
        s->pending = fires(p->v_init, p->vth, p->flags);
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

uint32_t pe_update(pe_image_t *img, uint32_t *out, int record, pe_profile_t *prof)
{
    uint32_t t0 = prof ? SYST_CVR : 0;
    const uint32_t n = img->n_neurons;

    /* a_j = sum over groups of floor_shift(ring slot of this step, weight_exp); the slot is cleared */
    for (uint32_t g = 0; g < img->n_groups; g++) {
        const group_t *gr = &img->groups[g];
        uint32_t d = (uint32_t)gr->delay;
        int32_t *slot = (int32_t *)img->state + gr->ring_offset + (img->tick % (d + 1u)) * n;
        int32_t e = gr->weight_exp;
        if (g == 0)
            memset(drive, 0, sizeof drive[0] * n);
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

    uint32_t m = 0;
    uint32_t *spikes = out + 1;
    static int32_t readout_v[MAX_NEURONS];
    uint32_t n_readouts = 0;
    for (uint32_t j = 0; j < n; j++) {
        const neuron_params_t *p = &img->params[j];
        neuron_state_t *st = &img->neurons[j];
        const uint32_t flags = p->flags;
        const int32_t vth = p->vth;

        int64_t u = decay(st->u, 4096 - (p->du + 1)) + shl64(drive[j], 6);
        if (u > M)
            u -= 2 * M;
        else if (u <= -M)
            u += 2 * M;
        st->u = u;
        int64_t v = decay(st->v, 4096 - p->dv) + u + p->bias;

        if (flags & FLAG_READOUT) {
            v = v > M - 1 ? M - 1 : (v < -(M - 1) ? -(M - 1) : v);
            st->v = v;
            readout_v[n_readouts++] = (int32_t)v;
            continue;
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
        if (s)
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
