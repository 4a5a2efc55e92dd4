/* Validation of a PE data image (docs/formats/spinnaker2.md): everything the hot path relies on is checked once
 * here, so the tick loop does no bounds checks. */
#include <stddef.h>
#include <stdio.h>

#include "snm2.h"

static char reason[200];

/* [offset, offset + bytes) inside an image of `size` bytes, word aligned */
static int inside(uint32_t offset, uint64_t bytes, uint32_t size)
{
    return (offset & 3u) == 0 && (uint64_t)offset + bytes <= size;
}

#define FAIL(...) do { snprintf(reason, sizeof reason, __VA_ARGS__); return reason; } while (0)

const char *image_validate(pe_image_t *img, uint8_t *base, uint32_t size, uint32_t capacity)
{
    const uint32_t *h = (const uint32_t *)base;
    if (size < 4u * H_WORDS)
        FAIL("%lu bytes, shorter than the 64-byte header", (unsigned long)size);
    if (h[H_MAGIC] != SNM2_MAGIC)
        FAIL("bad magic 0x%08lx (expected 0x%08lx)", (unsigned long)h[H_MAGIC], (unsigned long)SNM2_MAGIC);
    if (h[H_VERSION] != SNM2_VERSION)
        FAIL("unsupported version 0x%08lx (expected 0x%08lx)", (unsigned long)h[H_VERSION],
             (unsigned long)SNM2_VERSION);
    if (h[H_IMAGE_SIZE] != size)
        FAIL("header says %lu bytes but the file has %lu", (unsigned long)h[H_IMAGE_SIZE], (unsigned long)size);
    if (size & 3u)
        FAIL("size %lu is not a multiple of 4", (unsigned long)size);

    uint32_t n = h[H_N_NEURONS], g = h[H_N_GROUPS], k = h[H_N_KEYS];
    if (n < 1 || n > MAX_NEURONS)
        FAIL("n_neurons %lu outside 1..%u", (unsigned long)n, MAX_NEURONS);
    if (g > MAX_GROUPS)   /* 0: a PE without incoming synapses (its neurons only decay and integrate biases) */
        FAIL("n_groups %lu outside 0..%u", (unsigned long)g, MAX_GROUPS);
    if (!inside(h[H_OFF_PARAMS], 32ull * n, size))
        FAIL("neuron parameters (offset %lu, %lu neurons) outside the image", (unsigned long)h[H_OFF_PARAMS],
             (unsigned long)n);
    if (!inside(h[H_OFF_GROUPS], 16ull * g, size))
        FAIL("group table (offset %lu, %lu groups) outside the image", (unsigned long)h[H_OFF_GROUPS],
             (unsigned long)g);
    if (!inside(h[H_OFF_KEYS], 16ull * k, size))
        FAIL("key table (offset %lu, %lu entries) outside the image", (unsigned long)h[H_OFF_KEYS],
             (unsigned long)k);
    if (!inside(h[H_OFF_SYNAPSES], 0, size))
        FAIL("synapse words offset %lu outside the image", (unsigned long)h[H_OFF_SYNAPSES]);

    uint64_t state_words = h[H_STATE_WORDS];
    uint64_t room = ((uint64_t)capacity - size) / 4u;
    if (state_words > room)
        FAIL("state_words %lu past the PE's memory (%lu words free after the %lu-byte image)",
             (unsigned long)state_words, (unsigned long)room, (unsigned long)size);
    uint32_t neuron_words = NEURON_STATE_WORDS * n;
    if (state_words < neuron_words)
        FAIL("state_words %lu smaller than the neuron state (%lu words)", (unsigned long)state_words,
             (unsigned long)neuron_words);

    const neuron_params_t *p = (const neuron_params_t *)(base + h[H_OFF_PARAMS]);
    uint32_t readouts = 0;
    for (uint32_t j = 0; j < n; j++) {
        if (p[j].du < -1 || p[j].du > 4095)
            FAIL("neuron %lu: du %ld outside -1..4095", (unsigned long)j, (long)p[j].du);
        if (p[j].dv < 0 || p[j].dv > 4096)
            FAIL("neuron %lu: dv %ld outside 0..4096", (unsigned long)j, (long)p[j].dv);
        if (p[j].start_step < 0)
            FAIL("neuron %lu: negative start step %ld", (unsigned long)j, (long)p[j].start_step);
        if ((p[j].flags & ~FLAG_KNOWN_BITS) || (p[j].flags & FLAG_RESET_MASK) > RESET_NONE)
            FAIL("neuron %lu: bad flags 0x%08lx", (unsigned long)j, (unsigned long)p[j].flags);
        readouts += (p[j].flags & FLAG_READOUT) != 0;
    }
    if (readouts != h[H_N_READOUTS])
        FAIL("n_readouts %lu but %lu neurons are flagged as readouts", (unsigned long)h[H_N_READOUTS],
             (unsigned long)readouts);

    const group_t *gr = (const group_t *)(base + h[H_OFF_GROUPS]);
    for (uint32_t i = 0; i < g; i++) {
        if (gr[i].delay < 1 || gr[i].delay > MAX_DELAY)
            FAIL("group %lu: delay %ld outside 1..%d", (unsigned long)i, (long)gr[i].delay, MAX_DELAY);
        if (gr[i].weight_exp < -MAX_WEIGHT_EXP || gr[i].weight_exp > MAX_WEIGHT_EXP)
            FAIL("group %lu: weight_exp %ld outside -%d..%d", (unsigned long)i, (long)gr[i].weight_exp,
                 MAX_WEIGHT_EXP, MAX_WEIGHT_EXP);
        uint64_t lo = gr[i].ring_offset, hi = lo + (uint64_t)(gr[i].delay + 1) * n;
        if (lo < neuron_words || hi > state_words)
            FAIL("group %lu: ring words %lu..%lu outside the ring area %lu..%lu of the state",
                 (unsigned long)i, (unsigned long)lo, (unsigned long)hi, (unsigned long)neuron_words,
                 (unsigned long)state_words);
        for (uint32_t o = 0; o < i; o++) {
            uint64_t olo = gr[o].ring_offset, ohi = olo + (uint64_t)(gr[o].delay + 1) * n;
            if (lo < ohi && olo < hi)
                FAIL("group %lu: ring overlaps the ring of group %lu", (unsigned long)i, (unsigned long)o);
        }
    }

    const key_entry_t *ke = (const key_entry_t *)(base + h[H_OFF_KEYS]);
    for (uint32_t e = 0; e < k; e++) {
        uint32_t span = ~ke[e].mask;           /* units - 1 */
        if (span & (span + 1u))
            FAIL("key entry %lu: mask 0x%08lx is not a prefix mask", (unsigned long)e, (unsigned long)ke[e].mask);
        if (ke[e].key & span)
            FAIL("key entry %lu: key 0x%08lx has bits outside mask 0x%08lx", (unsigned long)e,
                 (unsigned long)ke[e].key, (unsigned long)ke[e].mask);
        if (e && ke[e].key <= ke[e - 1].key + (uint64_t)~ke[e - 1].mask)
            FAIL("key entry %lu: key 0x%08lx not above entry %lu (keys must be sorted, not overlapping)",
                 (unsigned long)e, (unsigned long)ke[e].key, (unsigned long)(e - 1));
        uint64_t units = (uint64_t)span + 1u;
        if (!inside(ke[e].index_offset, 4u * (units + 1u), size))
            FAIL("key entry %lu: row index (offset %lu, one value per unit of mask 0x%08lx and one more) outside "
                 "the image", (unsigned long)e, (unsigned long)ke[e].index_offset, (unsigned long)ke[e].mask);
        if (!inside(ke[e].synapse_offset, 0, size) || ke[e].synapse_offset < h[H_OFF_SYNAPSES])
            FAIL("key entry %lu: synapse offset %lu outside the synapse words", (unsigned long)e,
                 (unsigned long)ke[e].synapse_offset);
        const uint32_t *index = (const uint32_t *)(base + ke[e].index_offset);
        const uint32_t *words = (const uint32_t *)(base + ke[e].synapse_offset);
        uint32_t avail = (size - ke[e].synapse_offset) / 4u;
        for (uint32_t u = 0; u < units; u++)
            if (index[u] > index[u + 1])
                FAIL("key entry %lu: row index decreases at unit %lu", (unsigned long)e, (unsigned long)u);
        if (index[units] > avail)
            FAIL("key entry %lu: rows end at word %lu, past the image", (unsigned long)e,
                 (unsigned long)index[units]);
        for (uint32_t s = index[0]; s < index[units]; s++) {
            uint32_t w = words[s], grp = SYN_GROUP(w);
            if (grp >= g || SYN_TARGET(w) >= n || (int32_t)SYN_DELAY_M1(w) != gr[grp].delay - 1)
                FAIL("key entry %lu: synapse word %lu (0x%08lx: group %lu, target %lu, delay %lu) does not match "
                     "the groups and neurons", (unsigned long)e, (unsigned long)s, (unsigned long)w,
                     (unsigned long)grp, (unsigned long)SYN_TARGET(w), (unsigned long)SYN_DELAY_M1(w) + 1);
        }
    }

    img->header = h;
    img->base = base;
    img->n_neurons = n;
    img->n_groups = g;
    img->n_keys = k;
    img->n_readouts = readouts;
    img->state_words = (uint32_t)state_words;
    img->image_size = size;
    img->params = p;
    img->groups = gr;
    img->keys = ke;
    img->state = (uint32_t *)(base + size);
    img->neurons = (neuron_state_t *)img->state;
    img->tick = 0;
    return NULL;
}
