// Simple dual-port RAM (one write port, one registered read port, read-first), inferred as block RAM.
// INIT names a $readmemh image loaded at start-up ("" = zeros). Under Verilator, +blank skips the images so
// that a network can be loaded over the UART alone.
`default_nettype none
module nmc_ram #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 1024,
    parameter         INIT  = ""
) (
    input  wire                     clk,
    input  wire                     we,
    input  wire [$clog2(DEPTH)-1:0] waddr,
    input  wire [WIDTH-1:0]         wdata,
    input  wire [$clog2(DEPTH)-1:0] raddr,
    output reg  [WIDTH-1:0]         rdata
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];

    initial begin   // memories start at zero (Verilator's default; block RAM's power-up value)
`ifdef VERILATOR
        if (INIT != "" && !$test$plusargs("blank")) $readmemh(INIT, mem);
`else
        if (INIT != "") $readmemh(INIT, mem);
`endif
    end

    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        rdata <= mem[raddr];
    end
endmodule
`default_nettype wire
