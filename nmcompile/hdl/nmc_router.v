// Spike exchange between the engines of nmc_engines.v: once every engine waits at its barrier (after its neuron
// phase of step t), the router copies each engine's spike words of step t (its N / 32 words of the history slot
// of step t) into the histories of all other engines, one word per clock cycle, then releases the barrier.
//   read:  address slot * SRC_WORDS + IN_WORDS + e * N / 32 + w of every engine's history (engine e's data used)
//   write: the word two cycles later, same address, into every history but engine e's
// Cycles per step: ENGINES * N / 32 + 4.
`default_nettype none
module nmc_router #(
    parameter integer ENGINES  = 2,
    parameter integer N        = 64,       // neuron slots per engine (a multiple of 32)
    parameter integer IN_WORDS = 2
) (
    input  wire                    clk,
    input  wire                    rst,
    input  wire [ENGINES-1:0]      at_barrier,
    input  wire [4:0]              slot,          // history slot of step t (engine 0's)
    output reg                     exchange_done,
    output reg  [23:0]             x_raddr,       // read address, the same for every engine
    input  wire [32*ENGINES-1:0]   x_rdata,
    output wire [ENGINES-1:0]      x_we,
    output wire [23:0]             x_waddr,
    output wire [31:0]             x_wdata
);
    localparam integer WORDS     = N / 32;
    localparam integer SRC_WORDS = IN_WORDS + ENGINES * WORDS;
    localparam integer EB        = (ENGINES > 1) ? $clog2(ENGINES) : 1;

    reg        running;
    reg [EB:0] src;                // engine whose words are being read (one bit more: it counts to ENGINES)
    reg [15:0] w;                  // word within its range
    reg        v1, v2;             // read issued last cycle / its data is on x_rdata now
    reg [23:0] a1, a2;
    reg [EB-1:0] s1, s2;

    assign x_we    = v2 ? ~(ENGINES'(1) << s2) : '0;
    assign x_waddr = a2;
    assign x_wdata = x_rdata[32 * s2 +: 32];

    always @(posedge clk) begin
        exchange_done <= 1'b0;
        v2 <= v1; a2 <= a1; s2 <= s1;
        v1 <= 1'b0;
        if (rst) begin
            running <= 1'b0;
            v1 <= 1'b0; v2 <= 1'b0;
        end else if (!running) begin
            if (&at_barrier && !exchange_done) begin
                running <= 1'b1;
                src <= '0;
                w <= 16'd0;
            end
        end else if (32'(src) < ENGINES) begin
            x_raddr <= 24'(32'(slot) * SRC_WORDS + IN_WORDS + 32'(src) * WORDS + 32'(w));
            a1 <= 24'(32'(slot) * SRC_WORDS + IN_WORDS + 32'(src) * WORDS + 32'(w));
            s1 <= EB'(src);
            v1 <= 1'b1;
            if (32'(w) == WORDS - 1) begin
                w <= 16'd0;
                src <= src + 1'b1;
            end else w <= w + 16'd1;
        end else if (!v1 && !v2) begin
            running <= 1'b0;
            exchange_done <= 1'b1;
        end
    end
endmodule
`default_nettype wire
