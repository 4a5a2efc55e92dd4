/* The SpiNNaker 2 PE data image (docs/formats/spinnaker2.md) and the kernel's working state.
 *
 * All words are little-endian 32-bit. The image is loaded at 0xE900; the working state follows it directly (state
 * area = image start + image size, a word boundary) and must end by 0x1F000: image size + 4 * state_words <= 67,328.
 *
 * Where the format leaves details open, this kernel reads it so (an emitter must produce the same):
 *  - working state: 6 words per neuron, in neuron order: u (int64), v (int64), refractory counter, pending-reset
 *    flag; the rings follow, at the groups' ring offsets, each inside [6 * n_neurons, state_words), none
 *    overlapping. The rings have delay + 1 slots of n_neurons int32 sums.
 *  - key table: each mask is a prefix mask (~mask = 2^k - 1) and key & ~mask == 0; entries sorted by key and not
 *    overlapping. An entry covers units 0 .. ~mask, so its row index holds ~mask + 2 uint32 values (256 units of
 *    a mask 0xFFFFFF00: 257 values); a source with fewer units can use several entries with narrower masks. The
 *    index values count synapse words from the entry's synapse offset, which lies at or after header word 9.
 *  - every synapse word reachable from the key table must name a group < n_groups, a target < n_neurons and the
 *    delay of its group; words 13..15 of the header are not read.
 *  - a group's weight_exp must be in -31..31; the bias word is bias_mant << bias_exp as an int32.
 *  - INPUT may end without the end marker at a record boundary (treated as the end); a state reset happens at
 *    program start and at every new-sample marker; a marker writes no output record.
 *  - with RECORD the record carries u[0..n) then v[0..n) (int32: the low 32 bits of the int64 state). */
#ifndef SNM2_H
#define SNM2_H

#include <stdint.h>

#define SNM2_MAGIC 0x324D4E53u   /* "SNM2" */
#define SNM2_VERSION 0x00010000u

/* header words */
enum {
    H_MAGIC = 0, H_VERSION, H_SOURCE_ID, H_N_NEURONS, H_N_GROUPS, H_N_KEYS, H_OFF_PARAMS, H_OFF_GROUPS,
    H_OFF_KEYS, H_OFF_SYNAPSES, H_STATE_WORDS, H_N_READOUTS, H_IMAGE_SIZE, H_WORDS = 16
};

#define MAX_NEURONS 256u
#define MAX_GROUPS 128u
#define MAX_DELAY 8
#define MAX_WEIGHT_EXP 31       /* |weight_exp| accepted by the kernel (a left shift of an int32 sum in int64) */

/* neuron parameter flags */
#define FLAG_RESET_MASK 0x3u
#define RESET_ZERO 0u
#define RESET_SUBTRACT 1u
#define RESET_NONE 2u
#define FLAG_DELAYED (1u << 2)
#define FLAG_GE (1u << 3)
#define FLAG_READOUT (1u << 4)
#define FLAG_REFRACTORY_SHIFT 8
#define FLAG_KNOWN_BITS 0xFF1Fu

typedef struct {
    int32_t du, dv, vth, bias;
    uint32_t flags;
    int32_t u_init, v_init;
    int32_t start_step;     /* ticks before it: the neuron keeps its state, drops its input, does not spike */
} neuron_params_t;

typedef struct {
    int32_t delay, weight_exp;
    uint32_t ring_offset;   /* words from the start of the state area */
    uint32_t reserved;
} group_t;

typedef struct {
    uint32_t key, mask, index_offset, synapse_offset;
} key_entry_t;

/* int64 members on a 4-byte boundary: the state area starts wherever the image ends (a word boundary) */
typedef int64_t i64w __attribute__((aligned(4)));

/* working state of one neuron: 6 words */
typedef struct {
    i64w u, v;
    int32_t refractory_left;
    int32_t pending;        /* delayed reset: v of the previous step crossed the threshold */
} neuron_state_t;

#define NEURON_STATE_WORDS 6u

_Static_assert(sizeof(neuron_params_t) == 32, "8 parameter words per neuron");
_Static_assert(sizeof(group_t) == 16, "4 words per group");
_Static_assert(sizeof(key_entry_t) == 16, "4 words per key entry");
_Static_assert(sizeof(neuron_state_t) == 4 * NEURON_STATE_WORDS, "6 state words per neuron");

/* synapse word: weight int8 in bits 31..24, delay-1 in 23..20, group in 15..8, target in 7..0 */
#define SYN_WEIGHT(w) ((int32_t)(w) >> 24)
#define SYN_DELAY_M1(w) (((w) >> 20) & 0xFu)
#define SYN_GROUP(w) (((w) >> 8) & 0xFFu)
#define SYN_TARGET(w) ((w) & 0xFFu)

/* a validated image, with absolute pointers */
typedef struct {
    const uint32_t *header;
    uint32_t n_neurons, n_groups, n_keys, n_readouts, state_words, image_size;
    const neuron_params_t *params;
    const group_t *groups;
    const key_entry_t *keys;
    const uint8_t *base;          /* the image (offsets are relative to it) */
    uint32_t *state;              /* the working state area */
    neuron_state_t *neurons;
    uint32_t tick;                /* ticks since the sample started */
} pe_image_t;

/* image.c: check `size` bytes at `base` against the format and the data region of `capacity` bytes; on success
 * fill `img` and return NULL, else return a one-line reason. */
const char *image_validate(pe_image_t *img, uint8_t *base, uint32_t size, uint32_t capacity);

/* kernel.c */
typedef struct {
    uint64_t ticks, packets, packets_matched, synapses, neuron_updates;
    uint64_t systick_synapses, systick_neurons;
} pe_profile_t;

void pe_sample_start(pe_image_t *img);
/* the synaptic phase of a tick: add the rows of `n` arriving keys into their rings */
void pe_receive(pe_image_t *img, const uint32_t *keys, uint32_t n, pe_profile_t *prof);
/* the neuron phase: update every neuron; writes the output record (without its length word when nothing is
 * recorded) into `out` and returns its length in words */
uint32_t pe_update(pe_image_t *img, uint32_t *out, int record, pe_profile_t *prof);

#endif
