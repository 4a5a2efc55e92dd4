// Synapse memory: DEPTH bytes written one at a time and read as aligned 16-bit words (one write port with a byte
// enable per half, one registered read port, read-first), inferred as block RAM (a RAMB36 as 2K x 18 with byte
// write enables). `rbyte` is the byte at the read address (dense weights, kernels, STDP); `rword` the 16-bit word
// holding it (a CSR row pointer or synapse). INIT names a $readmemh image of DEPTH / 2 little-endian 16-bit words;
// under Verilator, +blank skips it as in nmc_ram.
`default_nettype none
module nmc_syn_ram #(
    parameter integer DEPTH = 1024,         // bytes, even
    parameter         INIT  = ""
) (
    input  wire                     clk,
    input  wire                     we,
    input  wire [$clog2(DEPTH)-1:0] waddr,
    input  wire [7:0]               wdata,
    input  wire [$clog2(DEPTH)-1:0] raddr,
    output wire [7:0]               rbyte,
    output reg  [15:0]              rword
);
    localparam integer WA = $clog2(DEPTH) - 1;
    reg [15:0] mem [0:DEPTH/2-1];
    reg        rhigh;

    initial begin   // memories start at zero (Verilator's default; block RAM's power-up value)
`ifdef VERILATOR
        if (INIT != "" && !$test$plusargs("blank")) $readmemh(INIT, mem);
`else
        if (INIT != "") $readmemh(INIT, mem);
`endif
    end

    always @(posedge clk) begin
        if (we && !waddr[0]) mem[waddr[WA:1]][7:0] <= wdata;
        if (we && waddr[0]) mem[waddr[WA:1]][15:8] <= wdata;
        rword <= mem[raddr[WA:1]];
        rhigh <= raddr[0];
    end
    assign rbyte = rhigh ? rword[15:8] : rword[7:0];
endmodule
`default_nettype wire
