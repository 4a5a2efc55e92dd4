// nmcompile FPGA emulator engine: a time-multiplexed integer LIF network with block-structured synapse memory,
// per-projection delays and exponents, and pair-based STDP (docs/formats/fpga.md; docs/semantics.md §3).
//
// Sources are numbered 0 .. 32*IN_WORDS-1 for input channels (some of them constant sources) and
// 32*IN_WORDS + n for neuron n. A projection connects a contiguous source range to a contiguous neuron range with
// one delay (1..31 steps) and one weight exponent (-8..8); its weights are stored in one of three forms:
//   dense: a block of weights, one row per source (src_len x dst_len), read row by row
//   conv:  the kernel of a convolution and its geometry (a second table entry); the destinations and weight
//          addresses of a spike are computed by nmc_conv_addr (weights shared by every output position)
//   csr:   a row per source of (destination step, weight) pairs behind a table of row pointers, read by
//          nmc_csr_addr: a spike costs one cycle per stored synapse, not per destination
// (a projection with a delay per synapse is one projection per distinct delay, each in its own form)
// One time step t:
//   1. synapses: for every projection, every source that spiked at t - delay adds its weights into its
//      destinations: with a weight exponent e >= 0 straight into acc as w << e (exact: (sum w) << e), with e < 0
//      into a partial sum per destination that is then shifted by e (floor) and added to acc
//   2. inputs:   the next queued input bitmap (zeros if the queue is empty), OR the constant mask, becomes the
//                input channels' spikes of step t
//   3. neurons:  every neuron updates from acc (nmc_neuron), acc clears, spikes of step t are recorded; a neuron
//                whose start step (PARAM bits 72-87) is above t keeps its state and does not spike (it is held at
//                its initial state until its layer's first input arrives; docs/semantics.md, start step)
//   4. STDP:     plastic projections update their traces and weights (docs/semantics.md §3.5)
//   5. output:   the step index and the spikes of the output range are streamed to the host
// With several engines (nmc_engines.v) each runs these steps on its own neurons in parallel; between 3 and 4 it
// waits at a barrier while nmc_router.v copies the new spike words of every engine into every other history.
// Spikes are kept for HIST_SLOTS steps (a ring; the compiler makes it longer than the longest delay, at most 32), so
// a delayed read never meets the slot of step t being written.
// Neuron parameters and initial states are stored per group of consecutive slots that share them (a layer, or a
// piece of it, is one group; a network with per-neuron values has a group per neuron): group g covers the slots
// after group g - 1's up to its last slot (PARAM bits 88-103); the neuron and reset loops walk the groups in step
// with the slots, so the lookup costs no cycle.
`default_nettype none
module nmc_core #(
    parameter integer N           = 64,     // neuron slots
    parameter integer GROUPS      = 64,     // neuron parameter groups (PARAM and INIT words)
    parameter integer IN_WORDS    = 2,      // input channels / 32
    parameter integer SYN_DEPTH   = 4096,   // 8-bit weights
    parameter integer P           = 8,      // projection table entries
    parameter integer TRACE_DEPTH = 64,     // 8-bit STDP traces
    parameter integer QSTEPS      = 64,     // input queue depth, in steps
    parameter integer PARTIALS    = 1,      // 1: partial-sum memory for projections with a negative exponent
    parameter integer HIST_SLOTS  = 32,     // spike history ring, in steps: a power of two > the longest delay
    parameter integer ENGINES     = 1,      // engines of the design (nmc_engines.v), each with N neuron slots
    parameter integer ENGINE      = 0,      // this engine: its neurons are global slots ENGINE * N + n
    parameter         SYN_IMAGE   = "",
    parameter         PARAM_IMAGE = "",
    parameter         INIT_IMAGE  = "",
    parameter         PROJ_IMAGE  = "",
    parameter         CONST_IMAGE = "",
    parameter         CONFIG_IMAGE = ""
) (
    input  wire         clk,
    input  wire         rst,
    // host memory bus (only while idle): regions 0 SYN, 1 PARAM, 2 INIT, 3 PROJ, 4 CONST, 5 CONFIG, 6 STATE, 7 TRACE
    input  wire         host_we,
    input  wire         host_re,
    input  wire [2:0]   host_region,
    input  wire [23:0]  host_addr,
    input  wire [191:0] host_wdata,
    output reg  [191:0] host_rdata,
    output reg          host_rvalid,
    // input queue: words of the frame being received are staged, then committed or dropped
    input  wire         inq_we,
    input  wire [31:0]  inq_wdata,
    input  wire         inq_commit,
    input  wire         inq_abort,
    output wire [23:0]  inq_free_words,
    // control
    input  wire         reset_req,
    input  wire         run_req,
    input  wire [31:0]  run_steps,
    output wire         idle,
    output reg          run_done,
    output reg  [63:0]  run_cycles,
    output wire [15:0]  cfg_out_len,
    // output stream: per step 4 bytes of step index (LE) then ceil(out_len/8) bytes of spikes (LSB first)
    output reg          out_valid,
    output reg  [7:0]   out_byte,
    input  wire         out_ready,
    // spike exchange between engines (nmc_router.v; unused with one engine): after the neuron phase the engine
    // waits at the barrier while the router copies every engine's new spike words into every other history
    output wire         at_barrier,
    input  wire         exchange_done,
    output wire [4:0]   slot_now,
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire [23:0]  x_raddr,          // the history uses the low bits
    output wire [31:0]  x_rdata,
    input  wire         x_we,
    input  wire [23:0]  x_waddr,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire [31:0]  x_wdata
);
    // ---- sizes ------------------------------------------------------------------------------------------
    localparam integer NW32       = (ENGINES * N + 31) / 32;   // the history holds every engine's spikes
    localparam integer OWN        = ENGINE * N;                 // global slot of neuron 0 (N is a multiple of 32)
    localparam integer SRC_WORDS  = IN_WORDS + NW32;
    localparam integer HIST_DEPTH = HIST_SLOTS * SRC_WORDS;
    localparam integer SB   = $clog2(HIST_SLOTS);
    localparam integer QDEPTH     = QSTEPS * IN_WORDS;
    localparam integer NA   = $clog2(N);
    localparam integer GA   = (GROUPS > 1) ? $clog2(GROUPS) : 1;
    localparam integer SA   = $clog2(SYN_DEPTH);
    localparam integer HA   = $clog2(HIST_DEPTH);
    localparam integer QA   = $clog2(QDEPTH);
    localparam integer TA   = $clog2(TRACE_DEPTH);
    localparam integer PA   = (P > 1) ? $clog2(P) : 1;
    localparam integer CA   = (IN_WORDS > 1) ? $clog2(IN_WORDS) : 1;
    localparam [15:0] IN_PAD = 16'(32 * IN_WORDS);
    localparam [15:0] IN_OWN = 16'(32 * IN_WORDS + OWN);   // source index of this engine's neuron 0
    localparam integer PRT_DEPTH = (PARTIALS != 0) ? N : 2;
    localparam integer PRA  = $clog2(PRT_DEPTH);
    localparam [1:0] FORM_DENSE = 2'd0, FORM_CONV = 2'd1, FORM_CSR = 2'd2;
    localparam integer RESET_LEN = (HIST_DEPTH > N ? (HIST_DEPTH > TRACE_DEPTH ? HIST_DEPTH : TRACE_DEPTH)
                                                   : (N > TRACE_DEPTH ? N : TRACE_DEPTH));

    // ---- configuration registers (region 5) --------------------------------------------------------------
    reg [31:0] config_regs [0:3];        // 0 neurons in use, 1 projections in use, 2 output base, 3 output length
    reg [191:0] proj_table [0:P-1];      // region 3, 24 bytes per entry (docs/formats/fpga.md)
    reg [31:0] const_mask [0:IN_WORDS-1];// region 4: input channels that spike at every step
    initial begin
        if (CONFIG_IMAGE != "") $readmemh(CONFIG_IMAGE, config_regs);
        if (PROJ_IMAGE != "") $readmemh(PROJ_IMAGE, proj_table);
        if (CONST_IMAGE != "") $readmemh(CONST_IMAGE, const_mask);
    end
    wire [15:0] n_neurons = config_regs[0][15:0];
    wire [7:0]  n_proj    = config_regs[1][7:0];
    wire [15:0] out_base  = config_regs[2][15:0];
    wire [15:0] out_len   = config_regs[3][15:0];
    assign cfg_out_len = out_len;

    // ---- memories ---------------------------------------------------------------------------------------
    reg          syn_we;   reg [SA-1:0] syn_waddr, syn_raddr;   reg [7:0]  syn_wdata;   wire [7:0]  syn_rdata;
    wire [15:0]  syn_rword;                                     // the aligned 16-bit word (CSR pointers, pairs)
    reg          par_we;   reg [GA-1:0] par_waddr, par_raddr;   reg [103:0] par_wdata;  wire [103:0] par_rdata;
    reg          ini_we;   reg [GA-1:0] ini_waddr, ini_raddr;   reg [47:0] ini_wdata;   wire [47:0] ini_rdata;
    reg          sta_we;   reg [NA-1:0] sta_waddr, sta_raddr;   reg [52:0] sta_wdata;   wire [52:0] sta_rdata;
    reg          acc_we;   reg [NA-1:0] acc_waddr, acc_raddr;   reg [31:0] acc_wdata;   wire [31:0] acc_rdata;
    /* verilator lint_off UNUSEDSIGNAL */
    reg          prt_we;   reg [NA-1:0] prt_waddr, prt_raddr;   reg [31:0] prt_wdata;   wire [31:0] prt_rdata;   // PARTIALS = 0: low bits only
    /* verilator lint_on UNUSEDSIGNAL */
    reg          his_we;   reg [HA-1:0] his_waddr, his_raddr;   reg [31:0] his_wdata;   wire [31:0] his_rdata;
    wire         inq_wen;  reg [QA-1:0] inq_waddr, inq_raddr;                           wire [31:0] inq_rdata;
    reg          trc_we;   reg [TA-1:0] trc_waddr, trc_raddr;   reg [7:0]  trc_wdata;   wire [7:0]  trc_rdata;

    nmc_syn_ram #(.DEPTH(SYN_DEPTH), .INIT(SYN_IMAGE))             syn_ram (clk, syn_we, syn_waddr, syn_wdata, syn_raddr, syn_rdata,
                                                                            syn_rword);
    nmc_ram #(.WIDTH(104), .DEPTH(GROUPS),     .INIT(PARAM_IMAGE)) par_ram (clk, par_we, par_waddr, par_wdata, par_raddr, par_rdata);
    nmc_ram #(.WIDTH(48), .DEPTH(GROUPS),      .INIT(INIT_IMAGE))  ini_ram (clk, ini_we, ini_waddr, ini_wdata, ini_raddr, ini_rdata);
    nmc_ram #(.WIDTH(53), .DEPTH(N))                               sta_ram (clk, sta_we, sta_waddr, sta_wdata, sta_raddr, sta_rdata);
    nmc_ram #(.WIDTH(32), .DEPTH(N))                               acc_ram (clk, acc_we, acc_waddr, acc_wdata, acc_raddr, acc_rdata);
    nmc_ram #(.WIDTH(32), .DEPTH(PRT_DEPTH))                       prt_ram (clk, prt_we, prt_waddr[PRA-1:0], prt_wdata,
                                                                            prt_raddr[PRA-1:0], prt_rdata);
    nmc_ram #(.WIDTH(32), .DEPTH(HIST_DEPTH))                      his_ram (clk, his_we, his_waddr, his_wdata, his_raddr, his_rdata);
    nmc_ram #(.WIDTH(32), .DEPTH(QDEPTH))                          inq_ram (clk, inq_wen, inq_waddr, inq_wdata, inq_raddr, inq_rdata);
    nmc_ram #(.WIDTH(8),  .DEPTH(TRACE_DEPTH))                     trc_ram (clk, trc_we, trc_waddr, trc_wdata, trc_raddr, trc_rdata);

    // ---- input queue pointers -----------------------------------------------------------------------------
    reg [QA-1:0] q_head, q_tail, q_stage;   // word pointers: oldest queued, end of committed, end of staged
    reg [23:0]   q_fill, q_staged;           // committed words, staged words
    assign inq_free_words = 24'(QDEPTH) - q_fill - q_staged;
    assign inq_wen = inq_we && (inq_free_words != 0);
    always @* inq_waddr = q_stage;

    function automatic [QA-1:0] q_next(input [QA-1:0] ptr, input [QA:0] by);
        reg [QA:0] sum;
        begin
            sum = {1'b0, ptr} + by;
            q_next = (sum >= (QA+1)'(QDEPTH)) ? QA'(sum - (QA+1)'(QDEPTH)) : QA'(sum);
        end
    endfunction

    // ---- engine state ---------------------------------------------------------------------------------------
    localparam [5:0]
        E_IDLE = 6'd0,  E_RESET = 6'd1,  E_STEP = 6'd2,  E_PROJ = 6'd3,  E_SCAN_RD = 6'd4,  E_SCAN_WAIT = 6'd5,
        E_SCAN_BITS = 6'd6,  E_ACC = 6'd7,  E_FLUSH = 6'd8,  E_INPUT = 6'd9,  E_NEURON = 6'd10,
        E_STDP = 6'd11, E_PRE_RD = 6'd12, E_PRE_WR = 6'd13, E_LTD_RD = 6'd14, E_LTD_WR = 6'd15,
        E_LTP_RD = 6'd16, E_LTP_WR = 6'd17, E_POST_RD = 6'd18, E_POST_WR = 6'd19,
        E_OUT_INDEX = 6'd20, E_OUT_RD = 6'd21, E_OUT_WAIT = 6'd22, E_OUT_BITS = 6'd23, E_OUT_SEND = 6'd24,
        E_NEXT = 6'd25, E_RESET_WR = 6'd26, E_CONV = 6'd27, E_BARRIER = 6'd28, E_CSR = 6'd29;
    localparam [1:0] SCAN_ACC = 2'd0, SCAN_LTD = 2'd1, SCAN_LTP = 2'd2;

    reg [5:0]  state;
    reg [31:0] t;                 // current step
    reg [31:0] steps_left;
    reg [23:0] k;                 // loop counter (reset, input words, neurons, STDP loops)
    reg [7:0]  p;                 // projection being processed

    assign idle = (state == E_IDLE);
    assign at_barrier = (state == E_BARRIER);
    assign x_rdata = his_rdata;
    wire [SB-1:0] slot = t[SB-1:0];
    assign slot_now = 5'(slot);

    // latched projection entry
    reg [15:0] e_src_base, e_src_len, e_dst_base, e_dst_len, e_tbase;
    reg [23:0] e_w_base;
    /* verilator lint_off UNUSEDSIGNAL */
    reg [4:0]  e_delay;           // the ring uses the low bits
    /* verilator lint_on UNUSEDSIGNAL */
    reg signed [7:0] e_exp, e_wmin, e_wmax;
    reg [1:0]  e_form;
    reg        e_chain;           // the partial sums continue in the next entry: no flush yet
    reg [191:0] e_geom;           // a conv projection's geometry: the table entry after it
    reg [7:0]  e_a_pre, e_a_post;
    reg [2:0]  e_k_pre, e_k_post, e_ltp, e_ltd;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [191:0] entry = proj_table[p[PA-1:0]];   // reserved bits are ignored
    wire [191:0] entry_next = proj_table[PA'(p + 8'd1)];
    wire [7:0] entry_width = (entry[95:94] == FORM_CONV) ? 8'd2 : 8'd1;   // table entries of projection p
    wire e_direct = !e_exp[7];    // exponent >= 0: accumulate w << e into acc
    /* verilator lint_on UNUSEDSIGNAL */
    wire [SB-1:0] pre_slot = slot - SB'(e_delay);

    // scanner: walks the set bits of a source range in one spike slot
    reg [1:0]  sc_use;            // what a set bit starts: synaptic accumulation, depression or potentiation
    reg [SB-1:0] sc_slot;
    reg [15:0] sc_base, sc_len;   // source index range
    reg [10:0] sc_w, sc_wlast;    // word index within the slot
    reg [31:0] sc_word;
    wire [15:0] hit = 16'({sc_w, lowest_bit(sc_word)}) - sc_base;   // offset of the lowest set bit in the range

    function automatic [4:0] lowest_bit(input [31:0] word);
        integer b;
        begin
            lowest_bit = 5'd0;
            for (b = 31; b >= 0; b = b - 1) if (word[b]) lowest_bit = 5'(b);
        end
    endfunction

    function automatic [31:0] range_mask(input [10:0] w, input [15:0] base, input [15:0] len);
        reg [15:0] last;
        reg [4:0]  lo, hi;
        begin
            last = base + len - 16'd1;
            lo = (w == 11'(base >> 5)) ? base[4:0] : 5'd0;
            hi = (w == 11'(last >> 5)) ? last[4:0] : 5'd31;
            range_mask = (32'hFFFF_FFFF << lo) & (32'hFFFF_FFFF >> (5'd31 - hi));
        end
    endfunction

    // synaptic accumulation pipeline (one synapse per cycle, with forwarding for back-to-back equal addresses)
    reg [23:0] row_base;
    reg [15:0] i_issue;
    reg        s1_valid, s1_fwd;
    reg [NA-1:0] s1_addr;
    reg signed [31:0] last_sum;
    reg [7:0]  s1_csr_weight;     // a CSR synapse's weight comes with its destination, a cycle before s1
    wire [7:0] s1_weight = (e_form == FORM_CSR) ? s1_csr_weight : syn_rdata;
    wire signed [31:0] weight_in = e_direct ? (32'($signed(s1_weight)) <<< e_exp[3:0]) : 32'($signed(s1_weight));
    wire signed [31:0] acc_sum = (s1_fwd ? last_sum : $signed(e_direct ? acc_rdata : prt_rdata)) + weight_in;

    // convolution address generator: it takes the next spike of the scanned word while it issues this one's pairs
    wire        conv_valid, conv_ready, conv_busy;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [23:0] conv_w_addr;      // the design's memories use the low bits
    wire [15:0] conv_dst;
    /* verilator lint_on UNUSEDSIGNAL */
    wire        conv_start = (state == E_SCAN_BITS || state == E_CONV) && (sc_use == SCAN_ACC)
                             && (sc_word != 32'd0) && (e_form == FORM_CONV) && conv_ready;
    nmc_conv_addr conv_addr (
        .clk(clk), .rst(rst), .start(conv_start), .index(hit), .geometry(e_geom), .w_base(e_w_base),
        .dst_base(e_dst_base), .valid(conv_valid), .w_addr(conv_w_addr), .dst_addr(conv_dst), .ready(conv_ready),
        .busy(conv_busy));

    // CSR address generator
    wire        csr_valid, csr_done;
    /* verilator lint_off UNUSEDSIGNAL */
    wire        csr_busy;
    wire [23:0] csr_rd_addr;      // the design's memories use the low bits
    wire [15:0] csr_dst;
    /* verilator lint_on UNUSEDSIGNAL */
    wire [7:0]  csr_weight;
    wire        csr_start = (state == E_SCAN_BITS) && (sc_use == SCAN_ACC) && (sc_word != 32'd0)
                            && (e_form == FORM_CSR);
    nmc_csr_addr csr_addr (
        .clk(clk), .rst(rst), .start(csr_start), .index(hit), .src_len(e_src_len), .w_base(e_w_base),
        .dst_base(e_dst_base), .rd_addr(csr_rd_addr), .rd_word(syn_rword), .valid(csr_valid), .dst_addr(csr_dst),
        .weight(csr_weight), .done(csr_done), .busy(csr_busy));

    // flush pipeline
    reg        f1_valid;
    reg [NA-1:0] f1_addr;
    wire signed [31:0] shifted = e_exp[7] ? ($signed(prt_rdata) >>> 5'(-e_exp)) : ($signed(prt_rdata) <<< 5'(e_exp));

    // neuron pipeline: read at k, update at k - 1
    reg        n1_valid;
    reg [NA-1:0] n1_addr;
    reg [31:0] spike_word;
    wire [24:0] u_next;
    wire [23:0] v_next;
    wire [3:0] rc_next;
    wire       fired;
    nmc_neuron neuron (
        .a(acc_rdata), .u(sta_rdata[24:0]), .v(sta_rdata[48:25]), .rc(sta_rdata[52:49]),
        .ku(par_rdata[12:0]), .kv(par_rdata[25:13]), .vth({par_rdata[71], par_rdata[42:26]}), .bias(par_rdata[63:43]),
        .refractory(par_rdata[67:64]), .subtract(par_rdata[68]), .cmp_ge(par_rdata[69]),
        .delayed(par_rdata[70]),
        .u_next(u_next), .v_next(v_next), .rc_next(rc_next), .spike(fired));
    // start step: before step start_step the neuron's state is not written, its input is dropped, it does not spike
    wire       waiting = t < 32'(par_rdata[87:72]);
    wire       spike = fired && !waiting;

    // neuron parameter groups: par_rdata holds group `grp` (the group of the slot issued last); slot k is in the
    // next group once k is past its last slot (groups are never empty; the last one ends at slot 65,535)
    reg [GA-1:0] grp;
    wire [GA-1:0] grp_of_k = (k[15:0] > par_rdata[103:88]) ? grp + GA'(1) : grp;

    // input load pipeline
    reg        i1_valid;
    reg [CA-1:0] i1_word;
    reg        q_has_step;

    // STDP working registers
    reg [15:0] j_loop;            // source offset (potentiation) or destination offset (depression)
    reg [15:0] fixed_index;       // the spiking source (depression) or destination (potentiation)
    reg [4:0]  bit_pos;

    // output
    reg [15:0] out_k;             // output bits sent
    reg [15:0] out_n;             // source index of the next output bit
    reg [7:0]  out_shift;
    reg [3:0]  out_bits;
    reg [1:0]  index_byte;
    reg [31:0] out_word;


    // trace arithmetic: min(x - (x >> k) + a * s, 255)
    function automatic [7:0] trace_next(input [7:0] x, input [2:0] kshift, input [7:0] inc, input s);
        reg [9:0] sum;
        begin
            sum = {2'b0, x} - {2'b0, x >> kshift} + (s ? {2'b0, inc} : 10'd0);
            trace_next = (sum > 10'd255) ? 8'd255 : sum[7:0];
        end
    endfunction

    // ---- memory port multiplexing (combinational) ----------------------------------------------------------
    reg [2:0]  rd_region;        // host read in flight
    /* verilator lint_off UNUSEDSIGNAL */
    reg [23:0] rd_addr;          // small regions use the low bits
    /* verilator lint_on UNUSEDSIGNAL */
    always @* begin
        syn_we = 1'b0; syn_waddr = '0; syn_wdata = '0; syn_raddr = '0;
        par_we = 1'b0; par_waddr = '0; par_wdata = '0; par_raddr = '0;
        ini_we = 1'b0; ini_waddr = '0; ini_wdata = '0; ini_raddr = '0;
        sta_we = 1'b0; sta_waddr = '0; sta_wdata = '0; sta_raddr = '0;
        acc_we = 1'b0; acc_waddr = '0; acc_wdata = '0; acc_raddr = '0;
        prt_we = 1'b0; prt_waddr = '0; prt_wdata = '0; prt_raddr = '0;
        his_we = 1'b0; his_waddr = '0; his_wdata = '0; his_raddr = '0;
        trc_we = 1'b0; trc_waddr = '0; trc_wdata = '0; trc_raddr = '0;
        inq_raddr = q_head;
        // completions that do not depend on the state register
        if (s1_valid) begin
            if (e_direct) begin acc_we = 1'b1; acc_waddr = s1_addr; acc_wdata = acc_sum; end
            else begin prt_we = 1'b1; prt_waddr = s1_addr; prt_wdata = acc_sum; end
        end
        if (f1_valid) begin
            acc_we = 1'b1; acc_waddr = f1_addr; acc_wdata = $signed(acc_rdata) + shifted;
            prt_we = 1'b1; prt_waddr = f1_addr; prt_wdata = 32'd0;
        end
        if (n1_valid) begin
            sta_we = !waiting; sta_waddr = n1_addr; sta_wdata = {rc_next, v_next, u_next};
            acc_we = 1'b1; acc_waddr = n1_addr; acc_wdata = 32'd0;
        end
        case (state)
            E_IDLE: begin
                syn_raddr = SA'(host_addr); par_raddr = reset_req ? '0 : GA'(host_addr);
                ini_raddr = GA'(host_addr);
                sta_raddr = NA'(host_addr); trc_raddr = TA'(host_addr);
                if (host_we) begin
                    case (host_region)
                        3'd0: begin syn_we = 1'b1; syn_waddr = SA'(host_addr); syn_wdata = host_wdata[7:0]; end
                        3'd1: begin par_we = 1'b1; par_waddr = GA'(host_addr); par_wdata = host_wdata[103:0]; end
                        3'd2: begin ini_we = 1'b1; ini_waddr = GA'(host_addr); ini_wdata = host_wdata[47:0]; end
                        3'd7: begin trc_we = 1'b1; trc_waddr = TA'(host_addr); trc_wdata = host_wdata[7:0]; end
                        default: ;
                    endcase
                end
            end
            E_RESET: begin
                par_raddr = grp_of_k; ini_raddr = grp_of_k;
            end
            E_RESET_WR: begin
                par_raddr = grp; ini_raddr = grp;
                if (k < 24'(N)) begin
                    sta_we = 1'b1; sta_waddr = NA'(k);
                    sta_wdata = {4'd0, ini_rdata[47:24], {ini_rdata[23], ini_rdata[23:0]}};
                    acc_we = 1'b1; acc_waddr = NA'(k); acc_wdata = 32'd0;
                    prt_we = 1'b1; prt_waddr = NA'(k); prt_wdata = 32'd0;
                end
                if (k < 24'(HIST_DEPTH)) begin his_we = 1'b1; his_waddr = HA'(k); his_wdata = 32'd0; end
                if (k < 24'(TRACE_DEPTH)) begin trc_we = 1'b1; trc_waddr = TA'(k); trc_wdata = 8'd0; end
            end
            E_SCAN_RD: his_raddr = HA'(sc_slot * SRC_WORDS + 32'(sc_w));
            E_ACC: begin
                syn_raddr = SA'(row_base + 24'(i_issue));
                if (e_direct) acc_raddr = NA'(e_dst_base + i_issue);
                else prt_raddr = NA'(e_dst_base + i_issue);
            end
            E_CONV: begin
                syn_raddr = SA'(conv_w_addr);
                if (e_direct) acc_raddr = NA'(conv_dst);
                else prt_raddr = NA'(conv_dst);
            end
            E_CSR: begin
                syn_raddr = SA'(csr_rd_addr);
                if (e_direct) acc_raddr = NA'(csr_dst);
                else prt_raddr = NA'(csr_dst);
            end
            E_FLUSH: begin
                prt_raddr = NA'(e_dst_base + k[15:0]);
                acc_raddr = NA'(e_dst_base + k[15:0]);
            end
            E_INPUT: begin                        // group 0's parameters are read for the first neuron
                inq_raddr = q_next(q_head, (QA+1)'(k));
                if (i1_valid) begin
                    his_we = 1'b1; his_waddr = HA'(slot * SRC_WORDS + 32'(i1_word));
                    his_wdata = (q_has_step ? inq_rdata : 32'd0) | const_mask[i1_word];
                end
            end
            E_NEURON: begin
                par_raddr = (k[15:0] != n_neurons) ? grp_of_k : grp; sta_raddr = NA'(k); acc_raddr = NA'(k);
                if (n1_valid && (n1_addr[4:0] == 5'd31 || 16'(n1_addr) == n_neurons - 16'd1)) begin
                    his_we = 1'b1; his_waddr = HA'(slot * SRC_WORDS + IN_WORDS + OWN / 32 + 32'(n1_addr) / 32);
                    his_wdata = spike_word | (32'(spike) << n1_addr[4:0]);
                end
            end
            E_PRE_RD: begin
                his_raddr = HA'(pre_slot * SRC_WORDS + 32'(16'(e_src_base + j_loop)) / 32);
                trc_raddr = TA'(e_tbase + j_loop);
            end
            E_PRE_WR: begin
                trc_we = 1'b1; trc_waddr = TA'(e_tbase + j_loop);
                trc_wdata = trace_next(trc_rdata, e_k_pre, e_a_pre, his_rdata[bit_pos]);
            end
            E_LTD_RD: begin   // synapse (fixed_index -> j_loop): w -= y_post >> ltd
                syn_raddr = SA'(e_w_base + 24'(fixed_index) * 24'(e_dst_len) + 24'(j_loop));
                trc_raddr = TA'(e_tbase + e_src_len + j_loop);
            end
            E_LTD_WR: begin
                syn_we = 1'b1; syn_waddr = SA'(e_w_base + 24'(fixed_index) * 24'(e_dst_len) + 24'(j_loop));
                syn_wdata = depress($signed(syn_rdata), trc_rdata, e_ltd, e_wmin);
            end
            E_LTP_RD: begin   // synapse (j_loop -> fixed_index): w += x_pre >> ltp
                syn_raddr = SA'(e_w_base + 24'(j_loop) * 24'(e_dst_len) + 24'(fixed_index));
                trc_raddr = TA'(e_tbase + j_loop);
            end
            E_LTP_WR: begin
                syn_we = 1'b1; syn_waddr = SA'(e_w_base + 24'(j_loop) * 24'(e_dst_len) + 24'(fixed_index));
                syn_wdata = potentiate($signed(syn_rdata), trc_rdata, e_ltp, e_wmax);
            end
            E_BARRIER: begin
                his_raddr = HA'(x_raddr);
                his_we = x_we; his_waddr = HA'(x_waddr); his_wdata = x_wdata;
            end
            E_POST_RD: begin
                his_raddr = HA'(slot * SRC_WORDS + 32'(16'(IN_OWN + e_dst_base + j_loop)) / 32);
                trc_raddr = TA'(e_tbase + e_src_len + j_loop);
            end
            E_POST_WR: begin
                trc_we = 1'b1; trc_waddr = TA'(e_tbase + e_src_len + j_loop);
                trc_wdata = trace_next(trc_rdata, e_k_post, e_a_post, his_rdata[bit_pos]);
            end
            E_OUT_RD: his_raddr = HA'(slot * SRC_WORDS + 32'(out_n) / 32);
            default: ;
        endcase
    end

    function automatic [7:0] depress(input signed [7:0] w, input [7:0] y, input [2:0] shift, input signed [7:0] lo);
        reg signed [9:0] d;
        begin
            d = 10'(w) - $signed({2'b0, y >> shift});
            depress = (d < 10'(lo)) ? lo : d[7:0];
        end
    endfunction

    function automatic [7:0] potentiate(input signed [7:0] w, input [7:0] x, input [2:0] shift,
                                        input signed [7:0] hi);
        reg signed [9:0] s;
        begin
            s = 10'(w) + $signed({2'b0, x >> shift});
            potentiate = (s > 10'(hi)) ? hi : s[7:0];
        end
    endfunction

    // ---- host reads: data one cycle after the request --------------------------------------------------------
    always @* begin
        case (rd_region)
            3'd0: host_rdata = {184'd0, syn_rdata};
            3'd1: host_rdata = {88'd0, par_rdata};
            3'd2: host_rdata = {144'd0, ini_rdata};
            3'd3: host_rdata = proj_table[rd_addr[PA-1:0]];
            3'd4: host_rdata = {160'd0, const_mask[rd_addr[CA-1:0]]};
            3'd5: host_rdata = {160'd0, config_regs[rd_addr[1:0]]};
            3'd6: host_rdata = {139'd0, sta_rdata};
            default: host_rdata = {184'd0, trc_rdata};
        endcase
    end

    // the projection entry p, field by field (docs/formats/fpga.md)
    task automatic latch_entry;
        begin
            e_src_base <= entry[15:0];    e_src_len <= entry[31:16];
            e_dst_base <= entry[47:32];   e_dst_len <= entry[63:48];
            e_w_base   <= entry[87:64];   e_delay   <= entry[92:88];
            e_exp      <= entry[103:96];
            e_a_pre    <= entry[119:112]; e_a_post  <= entry[127:120];
            e_k_pre    <= entry[130:128]; e_k_post  <= entry[138:136];
            e_ltp      <= entry[146:144]; e_ltd     <= entry[154:152];
            e_wmin     <= entry[167:160]; e_wmax    <= entry[175:168];
            e_tbase    <= entry[191:176];
            e_form     <= entry[95:94];
            e_chain    <= entry[105];
            e_geom     <= entry_next;
        end
    endtask

    // ---- sequential control ------------------------------------------------------------------------------------
    always @(posedge clk) begin
        host_rvalid <= 1'b0;
        if (host_re && state == E_IDLE) begin
            host_rvalid <= 1'b1;
            rd_region <= host_region;
            rd_addr <= host_addr;
        end
        if (host_we && state == E_IDLE) begin
            case (host_region)
                3'd3: proj_table[host_addr[PA-1:0]] <= host_wdata;
                3'd4: const_mask[host_addr[CA-1:0]] <= host_wdata[31:0];
                3'd5: config_regs[host_addr[1:0]] <= host_wdata[31:0];
                default: ;
            endcase
        end
        // input queue bookkeeping (host side)
        if (inq_abort) begin
            q_stage <= q_tail;
            q_staged <= 24'd0;
        end else if (inq_commit) begin
            q_tail <= q_stage;
        end else if (inq_wen) begin
            q_stage <= q_next(q_stage, (QA+1)'(1));
            q_staged <= q_staged + 24'd1;
        end

        if (rst) begin
            state <= E_IDLE;
            run_done <= 1'b0;
            out_valid <= 1'b0;
            s1_valid <= 1'b0; f1_valid <= 1'b0; n1_valid <= 1'b0; i1_valid <= 1'b0;
            q_head <= '0; q_tail <= '0; q_stage <= '0; q_fill <= 24'd0; q_staged <= 24'd0;
            t <= 32'd0;
        end else begin
            if (inq_commit && !inq_abort) begin
                q_fill <= q_fill + q_staged - ((state == E_INPUT && k == 24'(IN_WORDS) && q_has_step)
                                               ? 24'(IN_WORDS) : 24'd0);
                q_staged <= 24'd0;
            end else if (state == E_INPUT && k == 24'(IN_WORDS) && q_has_step) begin
                q_fill <= q_fill - 24'(IN_WORDS);
            end
            if (state != E_IDLE && !(state == E_OUT_SEND && !out_ready) && !(state == E_OUT_INDEX && !out_ready))
                run_cycles <= run_cycles + 64'd1;
            s1_valid <= 1'b0;
            f1_valid <= 1'b0;
            n1_valid <= 1'b0;
            i1_valid <= 1'b0;
            case (state)
                E_IDLE: begin
                    if (reset_req) begin
                        state <= E_RESET;
                        k <= 24'd0;
                        grp <= '0;
                    end else if (run_req) begin
                        run_done <= 1'b0;
                        run_cycles <= 64'd0;
                        if (run_steps != 32'd0) begin
                            steps_left <= run_steps;
                            state <= E_STEP;
                        end else run_done <= 1'b1;
                    end
                end
                E_RESET: begin                         // init word of neuron k is read
                    grp <= grp_of_k;
                    state <= E_RESET_WR;
                end
                E_RESET_WR: begin
                    if (k == 24'(RESET_LEN - 1)) begin
                        state <= E_IDLE;
                        t <= 32'd0;
                        q_head <= q_tail;
                        q_fill <= 24'd0;
                    end else begin
                        k <= k + 24'd1;
                        state <= E_RESET;
                    end
                end
                E_STEP: begin
                    p <= 8'd0;
                    state <= E_PROJ;
                end
                // ---- 1. synapses ------------------------------------------------------------------------
                E_PROJ: begin
                    if (p == n_proj) begin
                        state <= E_INPUT;
                        k <= 24'd0;
                        grp <= '0;
                        q_has_step <= (q_fill != 24'd0);
                    end else begin
                        latch_entry();
                        sc_use  <= SCAN_ACC;
                        sc_slot <= slot - SB'(entry[92:88]);
                        sc_base <= entry[15:0];
                        sc_len  <= entry[31:16];
                        sc_w    <= 11'(entry[15:0] >> 5);
                        sc_wlast <= 11'((entry[15:0] + entry[31:16] - 16'd1) >> 5);
                        state <= (entry[31:16] == 16'd0 || entry[63:48] == 16'd0) ? E_FLUSH : E_SCAN_RD;
                        k <= 24'd0;
                    end
                end
                E_SCAN_RD: state <= E_SCAN_WAIT;
                E_SCAN_WAIT: begin
                    sc_word <= his_rdata & range_mask(sc_w, sc_base, sc_len);
                    state <= E_SCAN_BITS;
                end
                E_SCAN_BITS: begin
                    if (sc_word == 32'd0) begin
                        if (sc_w == sc_wlast) begin
                            case (sc_use)
                                SCAN_ACC: begin state <= E_FLUSH; k <= 24'd0; end
                                SCAN_LTD: begin   // potentiation: scan the post spikes of step t
                                    sc_use <= SCAN_LTP;
                                    sc_slot <= slot;
                                    sc_base <= IN_OWN + e_dst_base;
                                    sc_len <= e_dst_len;
                                    sc_w <= 11'((IN_OWN + e_dst_base) >> 5);
                                    sc_wlast <= 11'((IN_OWN + e_dst_base + e_dst_len - 16'd1) >> 5);
                                    state <= E_SCAN_RD;
                                end
                                default: begin state <= E_POST_RD; j_loop <= 16'd0; end
                            endcase
                        end else begin
                            sc_w <= sc_w + 11'd1;
                            state <= E_SCAN_RD;
                        end
                    end else begin
                        sc_word <= sc_word & (sc_word - 32'd1);           // clear the lowest set bit
                        case (sc_use)
                            SCAN_ACC: begin          // conv, csr: conv_start / csr_start hand `hit` over
                                row_base <= e_w_base + 24'(hit) * 24'(e_dst_len);
                                i_issue <= 16'd0;
                                state <= (e_form == FORM_CONV) ? E_CONV : (e_form == FORM_CSR) ? E_CSR : E_ACC;
                            end
                            SCAN_LTD: begin fixed_index <= hit; j_loop <= 16'd0; state <= E_LTD_RD; end
                            default:  begin fixed_index <= hit; j_loop <= 16'd0; state <= E_LTP_RD; end
                        endcase
                    end
                end
                E_ACC: begin
                    if (i_issue != e_dst_len) begin
                        s1_valid <= 1'b1;
                        s1_addr  <= NA'(e_dst_base + i_issue);
                        s1_fwd   <= s1_valid && (s1_addr == NA'(e_dst_base + i_issue));
                        last_sum <= acc_sum;
                        i_issue  <= i_issue + 16'd1;
                    end else state <= E_SCAN_BITS;
                end
                E_CONV: begin
                    if (conv_valid) begin
                        s1_valid <= 1'b1;
                        s1_addr  <= NA'(conv_dst);
                        s1_fwd   <= s1_valid && (s1_addr == NA'(conv_dst));
                        last_sum <= acc_sum;
                    end
                    if (conv_start) sc_word <= sc_word & (sc_word - 32'd1);       // handed to the generator
                    else if (sc_word == 32'd0 && !conv_busy) state <= E_SCAN_BITS;
                end
                E_CSR: begin
                    if (csr_valid) begin
                        s1_valid <= 1'b1;
                        s1_addr  <= NA'(csr_dst);
                        s1_fwd   <= s1_valid && (s1_addr == NA'(csr_dst));
                        s1_csr_weight <= csr_weight;
                        last_sum <= acc_sum;
                    end
                    if (csr_done) state <= E_SCAN_BITS;
                end
                E_FLUSH: begin
                    if (!e_direct && !e_chain && k[15:0] != e_dst_len) begin
                        f1_valid <= 1'b1;
                        f1_addr <= NA'(e_dst_base + k[15:0]);
                        k <= k + 24'd1;
                    end else begin
                        p <= p + ((e_form == FORM_CONV) ? 8'd2 : 8'd1);
                        state <= E_PROJ;
                    end
                end
                // ---- 2. inputs ---------------------------------------------------------------------------------
                E_INPUT: begin
                    if (k != 24'(IN_WORDS)) begin
                        i1_valid <= 1'b1;
                        i1_word <= CA'(k);
                        k <= k + 24'd1;
                    end else begin
                        if (q_has_step) q_head <= q_next(q_head, (QA+1)'(IN_WORDS));
                        state <= E_NEURON;
                        k <= 24'd0;
                        spike_word <= 32'd0;
                    end
                end
                // ---- 3. neurons ----------------------------------------------------------------------------
                E_NEURON: begin
                    if (n1_valid) begin
                        if (n1_addr[4:0] == 5'd31) spike_word <= 32'd0;
                        else spike_word <= spike_word | (32'(spike) << n1_addr[4:0]);
                    end
                    if (k[15:0] != n_neurons) begin
                        n1_valid <= 1'b1;
                        n1_addr <= NA'(k);
                        k <= k + 24'd1;
                        grp <= grp_of_k;
                    end else if (!n1_valid) begin
                        state <= (ENGINES > 1) ? E_BARRIER : E_STDP;
                        p <= 8'd0;
                    end
                end
                E_BARRIER: if (exchange_done) state <= E_STDP;   // the other engines' spikes of step t are in
                // ---- 4. STDP -----------------------------------------------------------------------------
                E_STDP: begin
                    if (p == n_proj) begin
                        state <= (ENGINE == 0) ? E_OUT_INDEX : E_NEXT;   // engine 0 streams the output
                        index_byte <= 2'd0;
                    end else if (!entry[104] || entry[95:94] != FORM_DENSE) begin
                        p <= p + entry_width;
                    end else begin
                        latch_entry();
                        j_loop <= 16'd0;
                        state <= E_PRE_RD;
                    end
                end
                E_PRE_RD: begin
                    bit_pos <= 5'(e_src_base + j_loop);
                    state <= E_PRE_WR;
                end
                E_PRE_WR: begin
                    if (j_loop == e_src_len - 16'd1) begin   // pre traces done: depression for every pre spike
                        sc_use <= SCAN_LTD;
                        sc_slot <= pre_slot;
                        sc_base <= e_src_base;
                        sc_len <= e_src_len;
                        sc_w <= 11'(e_src_base >> 5);
                        sc_wlast <= 11'((e_src_base + e_src_len - 16'd1) >> 5);
                        state <= E_SCAN_RD;
                    end else begin
                        j_loop <= j_loop + 16'd1;
                        state <= E_PRE_RD;
                    end
                end
                E_LTD_RD: state <= E_LTD_WR;
                E_LTD_WR: begin
                    if (j_loop == e_dst_len - 16'd1) state <= E_SCAN_BITS;
                    else begin j_loop <= j_loop + 16'd1; state <= E_LTD_RD; end
                end
                E_LTP_RD: state <= E_LTP_WR;
                E_LTP_WR: begin
                    if (j_loop == e_src_len - 16'd1) state <= E_SCAN_BITS;
                    else begin j_loop <= j_loop + 16'd1; state <= E_LTP_RD; end
                end
                E_POST_RD: begin
                    bit_pos <= 5'(IN_OWN + e_dst_base + j_loop);
                    state <= E_POST_WR;
                end
                E_POST_WR: begin
                    if (j_loop == e_dst_len - 16'd1) begin
                        p <= p + 8'd1;
                        state <= E_STDP;
                    end else begin
                        j_loop <= j_loop + 16'd1;
                        state <= E_POST_RD;
                    end
                end
                // ---- 5. output ---------------------------------------------------------------------------
                E_OUT_INDEX: begin
                    if (!out_valid) begin
                        out_valid <= 1'b1;
                        out_byte <= t[8 * index_byte +: 8];
                    end else if (out_ready) begin
                        out_valid <= 1'b0;
                        index_byte <= index_byte + 2'd1;
                        if (index_byte == 2'd3) begin
                            out_k <= 16'd0;
                            out_n <= IN_PAD + out_base;
                            out_bits <= 4'd0;
                            out_shift <= 8'd0;
                            state <= (out_len == 16'd0) ? E_NEXT : E_OUT_RD;
                        end
                    end
                end
                E_OUT_RD: state <= E_OUT_WAIT;
                E_OUT_WAIT: begin
                    out_word <= his_rdata;
                    state <= E_OUT_BITS;
                end
                E_OUT_BITS: begin
                    out_shift <= out_shift | (8'(out_word[out_n[4:0]]) << out_bits[2:0]);
                    out_bits <= out_bits + 4'd1;
                    out_k <= out_k + 16'd1;
                    out_n <= out_n + 16'd1;
                    if (out_bits == 4'd7 || out_k == out_len - 16'd1) begin
                        out_valid <= 1'b1;
                        out_byte <= out_shift | (8'(out_word[out_n[4:0]]) << out_bits[2:0]);
                        state <= E_OUT_SEND;
                    end else if (out_n[4:0] == 5'd31) state <= E_OUT_RD;
                end
                E_OUT_SEND: begin
                    if (out_ready) begin
                        out_valid <= 1'b0;
                        out_bits <= 4'd0;
                        out_shift <= 8'd0;
                        if (out_k == out_len) state <= E_NEXT;
                        else if (out_n[4:0] == 5'd0) state <= E_OUT_RD;
                        else state <= E_OUT_BITS;
                    end
                end
                E_NEXT: begin
                    t <= t + 32'd1;
                    if (steps_left == 32'd1) begin
                        run_done <= 1'b1;
                        state <= E_IDLE;
                    end else begin
                        steps_left <= steps_left - 32'd1;
                        state <= E_STEP;
                    end
                end
                default: state <= E_IDLE;
            endcase
        end
    end
endmodule
`default_nettype wire
