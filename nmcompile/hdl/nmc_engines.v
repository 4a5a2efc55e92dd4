// Several nmc_core engines working in parallel, with on-chip spike exchange (nmc_router.v); the same ports as one
// nmc_core, so nmc_host drives it unchanged (its sizes are the totals: N = ENGINES * N per engine, etc.).
//
// Engine e holds global neuron slots e * N .. e * N + N - 1 and its own synapse memory, projection table and
// traces: the projections into its neurons; its synapse memory is as deep as its own weights need (SYN_DEPTHS), the
// host addresses every engine's with the stride SYN_DEPTH. Every engine keeps the whole spike history (its own spikes are
// written by its neuron phase, the others' by the router before STDP and output) and its own copy of the input
// queue (the host's queue writes go to every engine). Host memory addresses: engine e owns
//   SYN [e * SYN_DEPTH, ...), PARAM / INIT / STATE [e * N, ...), PROJ [e * P, ...), TRACE [e * TRACE_DEPTH, ...);
// CONST and CONFIG writes go to every engine (reads come from engine 0). Engine 0 streams the output; a run is
// done when every engine is done. Memory images: e<k>_syn.hex, e<k>_param.hex, ... for engine k.
`default_nettype none
module nmc_engines #(
    parameter integer ENGINES     = 2,      // at most 10 (image names carry one digit)
    parameter integer N           = 64,     // neuron slots per engine (a multiple of 32)
    parameter integer IN_WORDS    = 2,
    parameter integer GROUPS      = 64,     // neuron parameter groups per engine
    parameter integer SYN_DEPTH   = 4096,   // per engine: the host's address stride (the deepest engine's)
    parameter [255:0] SYN_DEPTHS  = {8{32'd4096}},   // engine e's synapse words: bits 32e .. 32e + 31
    parameter integer P           = 8,      // projection table entries per engine
    parameter integer TRACE_DEPTH = 64,     // per engine
    parameter integer QSTEPS      = 64,
    parameter integer PARTIALS    = 1,
    parameter integer HIST_SLOTS  = 32
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         host_we,
    input  wire         host_re,
    input  wire [2:0]   host_region,
    input  wire [23:0]  host_addr,
    input  wire [191:0] host_wdata,
    output wire [191:0] host_rdata,
    output wire         host_rvalid,
    input  wire         inq_we,
    input  wire [31:0]  inq_wdata,
    input  wire         inq_commit,
    input  wire         inq_abort,
    output reg  [23:0]  inq_free_words,
    input  wire         reset_req,
    input  wire         run_req,
    input  wire [31:0]  run_steps,
    output wire         idle,
    output wire         run_done,
    output wire [63:0]  run_cycles,
    output wire [15:0]  cfg_out_len,
    output wire         out_valid,
    output wire [7:0]   out_byte,
    input  wire         out_ready
);
    localparam integer EB = (ENGINES > 1) ? $clog2(ENGINES) : 1;

    // ---- host address decoding ---------------------------------------------------------------------------
    function automatic [23:0] region_depth(input [2:0] region);
        case (region)
            3'd0: region_depth = 24'(SYN_DEPTH);
            3'd1, 3'd2, 3'd6: region_depth = 24'(N);
            3'd3: region_depth = 24'(P);
            3'd7: region_depth = 24'(TRACE_DEPTH);
            default: region_depth = 24'hFF_FFFF;        // CONST, CONFIG: every engine
        endcase
    endfunction
    wire broadcast = (host_region == 3'd4) || (host_region == 3'd5);
    reg [EB-1:0] sel;
    reg [23:0]   local_addr;
    integer j;
    always @* begin
        sel = '0;
        local_addr = host_addr;
        for (j = 1; j < ENGINES; j = j + 1)
            if (!broadcast && 32'(host_addr) >= j * 32'(region_depth(host_region))) begin
                sel = EB'(j);
                local_addr = 24'(32'(host_addr) - j * 32'(region_depth(host_region)));
            end
    end
    reg [EB-1:0] rd_sel;
    always @(posedge clk) if (host_re) rd_sel <= broadcast ? '0 : sel;

    // ---- engines ---------------------------------------------------------------------------------------------
    wire [191:0]          e_rdata [0:ENGINES-1];
    wire [ENGINES-1:0]    e_rvalid, e_idle, e_done, e_barrier, x_we;
    wire [23:0]           e_free [0:ENGINES-1];
    wire [63:0]           e_cycles [0:ENGINES-1];
    wire [15:0]           e_out_len [0:ENGINES-1];
    wire [ENGINES-1:0]    e_out_valid;
    wire [7:0]            e_out_byte [0:ENGINES-1];
    wire [4:0]            e_slot [0:ENGINES-1];
    wire [32*ENGINES-1:0] x_rdata;
    wire [23:0]           x_raddr, x_waddr;
    wire [31:0]           x_wdata;
    wire                  exchange_done;

    genvar e;
    generate
        for (e = 0; e < ENGINES; e = e + 1) begin : engine
            localparam [23:0] PREFIX = {"e", 8'(48 + e), "_"};
            nmc_core #(.N(N), .GROUPS(GROUPS), .IN_WORDS(IN_WORDS), .SYN_DEPTH(SYN_DEPTHS[32 * e +: 32]),
                       .P(P), .TRACE_DEPTH(TRACE_DEPTH),
                       .QSTEPS(QSTEPS), .PARTIALS(PARTIALS), .HIST_SLOTS(HIST_SLOTS), .ENGINES(ENGINES), .ENGINE(e),
                       .SYN_IMAGE({PREFIX, "syn.hex"}), .PARAM_IMAGE({PREFIX, "param.hex"}),
                       .INIT_IMAGE({PREFIX, "init.hex"}), .PROJ_IMAGE({PREFIX, "proj.hex"}),
                       .CONST_IMAGE({PREFIX, "const.hex"}), .CONFIG_IMAGE({PREFIX, "config.hex"})) core (
                .clk(clk), .rst(rst),
                .host_we(host_we && (broadcast || sel == EB'(e))),
                .host_re(host_re && (broadcast ? e == 0 : sel == EB'(e))),
                .host_region(host_region), .host_addr(broadcast ? host_addr : local_addr), .host_wdata(host_wdata),
                .host_rdata(e_rdata[e]), .host_rvalid(e_rvalid[e]),
                .inq_we(inq_we), .inq_wdata(inq_wdata), .inq_commit(inq_commit), .inq_abort(inq_abort),
                .inq_free_words(e_free[e]), .reset_req(reset_req), .run_req(run_req), .run_steps(run_steps),
                .idle(e_idle[e]), .run_done(e_done[e]), .run_cycles(e_cycles[e]), .cfg_out_len(e_out_len[e]),
                .out_valid(e_out_valid[e]), .out_byte(e_out_byte[e]), .out_ready(e == 0 ? out_ready : 1'b1),
                .at_barrier(e_barrier[e]), .exchange_done(exchange_done), .slot_now(e_slot[e]),
                .x_raddr(x_raddr), .x_rdata(x_rdata[32 * e +: 32]), .x_we(x_we[e]), .x_waddr(x_waddr),
                .x_wdata(x_wdata));
        end
    endgenerate

    nmc_router #(.ENGINES(ENGINES), .N(N), .IN_WORDS(IN_WORDS)) router (
        .clk(clk), .rst(rst), .at_barrier(e_barrier), .slot(e_slot[0]), .exchange_done(exchange_done),
        .x_raddr(x_raddr), .x_rdata(x_rdata), .x_we(x_we), .x_waddr(x_waddr), .x_wdata(x_wdata));

    // ---- what the host sees -------------------------------------------------------------------------------------
    assign host_rdata  = e_rdata[rd_sel];
    assign host_rvalid = |e_rvalid;
    assign idle        = &e_idle;
    assign run_done    = &e_done;
    assign run_cycles  = e_cycles[0];
    assign cfg_out_len = e_out_len[0];
    assign out_valid   = e_out_valid[0];
    assign out_byte    = e_out_byte[0];
    integer k;
    always @* begin             // the fullest queue decides what the host may still send
        inq_free_words = e_free[0];
        for (k = 1; k < ENGINES; k = k + 1) if (e_free[k] < inq_free_words) inq_free_words = e_free[k];
    end
    /* verilator lint_off UNUSEDSIGNAL */
    wire unused = ^{e_out_valid, e_slot[ENGINES - 1]};
    /* verilator lint_on UNUSEDSIGNAL */
endmodule
`default_nettype wire
